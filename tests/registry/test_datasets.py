"""Registered data sets: the registry stores what it is given (it knows no method); the artificial method checks
that its stega model reads the fingerprint before recording it. Tokens in the same registry."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ganprint.artificial.register import register_dataset
from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.registry.datasets import record_dataset
from ganprint.registry.errors import RegistryConflict
from ganprint.registry.store import Registry
from tests.registry.kit import tiny_generator


def test_datasets_and_tokens(url, tmp_path, tiny_stega_model):
    bits = "0x5a"  # the tiny stega model reads 8 bits
    row = register_dataset(url, "faces-v1", bits, tiny_stega_model)
    assert row["bits_hex"] == "0x5a" and row["fingerprint_length"] == 8
    assert register_dataset(url, "faces-v1", bits, tiny_stega_model)["ds_id"] == row["ds_id"]  # idempotent
    with pytest.raises(RegistryConflict, match="already has a data set named"):
        register_dataset(url, "faces-v1", "0x00", tiny_stega_model)
    with pytest.raises(GanprintError, match="does not exist"):
        register_dataset(url, "x", bits, tmp_path / "missing.safetensors")
    with pytest.raises(GanprintError, match="more than the 8 bits"):
        register_dataset(url, "x", "0x" + "ab" * 2, tiny_stega_model)
    with pytest.raises(GanprintError, match="not valid hex"):  # one check, in parse_bits: no bare ValueError
        register_dataset(url, "x", "0xzz", tiny_stega_model)
    with pytest.raises(GanprintError, match="'scalable-G' model"):
        register_dataset(url, "x", bits, tiny_generator(tmp_path))
    r = CliRunner().invoke(main, ["registry", "add-dataset", url, "--name", "cli-set", "--model",
                                  str(tiny_stega_model), "--fingerprint", "1" * 8])
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[-1])["bits_hex"] == "0xff", r.output
    reg = Registry(url, create=False)
    assert [d.name for d in reg.datasets()] == ["faces-v1", "cli-set"] and reg.revision()[2:] == (2, 2)
    token = reg.create_token("issuer-a")
    assert reg.token_owner(token) == "issuer-a" and reg.token_owner(token + "x") is None
    assert token not in json.dumps(reg.export())


def test_the_registry_records_any_decoder_the_caller_vouches_for(tmp_path):
    """record_dataset checks no kind: any file is a decoder to the registry (the method checks its own kinds)."""
    decoder = tmp_path / "any.bin"
    decoder.write_bytes(b"a decoder of some method")
    row = record_dataset(tmp_path / "r.sqlite", "set", torch.tensor([1.0, 0, 1, 0]), decoder, notes="n")
    assert row["bits_hex"] == "0xa" and row["fingerprint_length"] == 4 and row["decoder_path"] == str(decoder)
    with pytest.raises(GanprintError, match="does not exist"):
        record_dataset(tmp_path / "r.sqlite", "other", torch.ones(4), tmp_path / "none.bin")
    with pytest.raises(GanprintError, match="`registry` .* is `model` .*; choose another `registry`"):
        record_dataset(decoder, "self", torch.ones(4), decoder)  # the registry file is never the decoder
    assert [d.name for d in Registry(tmp_path / "r.sqlite").datasets()] == ["set"]
