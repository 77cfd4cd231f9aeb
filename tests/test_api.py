"""The public API: `import ganprint` is light, every name resolves, configs come from presets."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ganprint
from ganprint.artificial.config import TrainConfig
from ganprint.core.errors import GanprintError
from ganprint.diffusion.config import DiffusionTrainConfig
from ganprint.gan.config import GanTrainConfig
from ganprint.scalable.config import ScalableTrainConfig


def test_import_ganprint_loads_no_torch():
    code = "import sys, ganprint; assert 'torch' not in sys.modules; print(ganprint.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ganprint.__version__


def test_every_public_name_resolves():
    for name in ganprint.__all__:
        assert callable(getattr(ganprint, name)), name
    with pytest.raises(AttributeError):
        ganprint.not_a_function  # noqa: B018


def test_config_resolves_presets_with_overrides():
    c = ganprint.config("artificial", "demo-32", data="photos/", steps=10)
    assert isinstance(c, TrainConfig) and c.steps == 10 and c.data == "photos/"
    assert isinstance(ganprint.config("gan", resolution=32), GanTrainConfig)
    assert isinstance(ganprint.config("scalable", "small"), ScalableTrainConfig)
    assert isinstance(ganprint.config("diffusion", "tiny-16"), DiffusionTrainConfig)
    with pytest.raises(GanprintError, match="system"):
        ganprint.config("vae")
    with pytest.raises(GanprintError, match="preset"):
        ganprint.config("artificial", "no-such-preset")


def test_embed_registers_the_data_set_fingerprint(tiny_stega_model, image_folder, tmp_path):
    from ganprint.scalable.registry import Registry

    reg = tmp_path / "reg.sqlite"
    with pytest.raises(GanprintError, match="add `identical`"):
        ganprint.embed(tiny_stega_model, image_folder, tmp_path / "x", registry=reg, name="photos", device="cpu")
    with pytest.raises(GanprintError, match="`name`"):
        ganprint.embed(tiny_stega_model, image_folder, tmp_path / "y", registry=reg, identical=True, device="cpu")
    out = ganprint.embed(tiny_stega_model, image_folder, tmp_path / "out", registry=reg, name="photos",
                         identical=True, seed=3, device="cpu")
    (ds,) = Registry(reg).datasets()
    assert ds.name == "photos" and out["registered"]["name"] == "photos"
    assert "".join(str(int(b)) for b in ds.bits) == out["fingerprint"]
