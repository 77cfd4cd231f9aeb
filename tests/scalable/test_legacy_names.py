"""Exports and run folders written before `fingerprint_bits` became `fingerprint_length` still work."""

import json

import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from ganprint.cli import main
from ganprint.core.artifacts import load_export, read_metadata
from ganprint.core.paths import RECORD
from ganprint.nets.scalable import ScalableConfig, ScalableGenerator, fingerprint_length_of
from tests.scalable.test_scalable import _packed_data, _train_args

CFG = ScalableConfig(resolution=16, fingerprint_length=12, z_dim=8, w_dim=16, mapping_layers=2, channel_base=128,
                     channel_max=16, modulated_res=[4, 8, 16])


def test_an_export_naming_fingerprint_bits_loads(tmp_path):
    from ganprint.core.artifacts import save_export

    torch.manual_seed(0)
    G = ScalableGenerator(CFG)
    new = save_export(tmp_path / "new.safetensors", G, "scalable-G", CFG.to_dict())
    assert "fingerprint_length" in json.loads(read_metadata(new)["ganprint.config"])
    # The same file as an older ganprint wrote it: the length under its old name.
    meta = read_metadata(new)
    old_cfg = {("fingerprint_bits" if k == "fingerprint_length" else k): v
               for k, v in json.loads(meta["ganprint.config"]).items()}
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(new)), str(old), metadata={**meta, "ganprint.config": json.dumps(old_cfg)})
    model, cfg, _ = load_export(old, kind="scalable-G")
    assert fingerprint_length_of(cfg) == 12 and model.fingerprint_length == 12
    z, c = torch.randn(2, 8), torch.randint(0, 2, (2, 12)).float()
    with torch.no_grad():
        assert torch.equal(model(z, c, noise_mode="const"), G(z, c, noise_mode="const"))
    r = CliRunner().invoke(main, ["generate", "--model", str(old), "--seeds", "0-1", "--outdir", str(tmp_path / "g"),
                                  "--device", "cpu", "--fingerprint", "0x" + "a" * 3])
    assert r.exit_code == 0, r.output


def test_a_run_recorded_with_fingerprint_bits_resumes(tmp_path):
    data, out = _packed_data(tmp_path), tmp_path / "run"
    r = CliRunner().invoke(main, _train_args(data, out, 0.004))
    assert r.exit_code == 0, r.output
    for name in (RECORD, "config.json"):  # as an older ganprint recorded the run
        path = out / name
        path.write_text(path.read_text().replace('"fingerprint_length"', '"fingerprint_bits"'))
    r = CliRunner().invoke(main, _train_args(data, out, 0.008))
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["fingerprint_length"] == 12
    # The old flag still works, with a warning naming the new one.
    args = [("--fingerprint-bits" if a == "--fingerprint-length" else a) for a in _train_args(data, out, 0.008)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "--fingerprint-length" in r.output, r.output
