"""ganprint.core.artifacts: hand-edited or broken model files give one ArtifactError naming the file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganprint.core.artifacts import ArtifactError, load_export, read_metadata


def _rewrite(src, dst, meta=None, tensors=None):
    """Copy the export `src` to `dst` with its metadata and tensors changed as a hand edit would."""
    m = {**read_metadata(src), **(meta or {})}
    t = load_file(str(src))
    if tensors is not None:
        t = tensors(t)
    save_file(t, str(dst), metadata=m)
    return dst


def _first_float(t: dict) -> str:
    return next(k for k, v in t.items() if v.is_floating_point())


def test_loads_the_untouched_export(tiny_stega_model):
    module, config, meta = load_export(tiny_stega_model)
    assert config["fingerprint_length"] == 8 and meta["ganprint.kind"] == "stega"


@pytest.mark.parametrize("edit,message", [
    (dict(meta={"ganprint.format": "abc"}), "ganprint.format"),
    (dict(meta={"ganprint.config": "{not json"}), "not a JSON object"),
    (dict(meta={"ganprint.config": "[1, 2]"}), "not a JSON object"),
    (dict(meta={"ganprint.config": json.dumps({"resolution": "x"})}), "does not describe"),
    (dict(tensors=lambda t: {k: v for k, v in t.items() if k != sorted(t)[0]}), "missing tensors"),
    (dict(tensors=lambda t: {**t, "extra.weight": torch.zeros(2)}), "unexpected tensors"),
    (dict(tensors=lambda t: {**t, _first_float(t): torch.zeros(3, 1)}), "shapes do not fit"),
    (dict(tensors=lambda t: {**t, _first_float(t): torch.full_like(t[_first_float(t)], float("nan"))}), "NaN"),
    (dict(tensors=lambda t: {**t, _first_float(t): torch.full_like(t[_first_float(t)], float("inf"))}), "infinite"),
])
def test_edited_exports_are_refused_naming_the_file(tiny_stega_model, tmp_path, edit, message):
    bad = _rewrite(tiny_stega_model, tmp_path / "edited.safetensors", **edit)
    with pytest.raises(ArtifactError, match=message) as e:
        load_export(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_truncated_export_is_refused(tiny_stega_model, tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(tiny_stega_model.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="cut.safetensors"):
        load_export(bad)
