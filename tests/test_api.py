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
    from ganprint.registry.store import Registry

    reg = tmp_path / "reg.sqlite"
    with pytest.raises(GanprintError, match="add `identical`"):
        ganprint.embed(tiny_stega_model, image_folder, tmp_path / "x", registry=reg, name="photos", device="cpu")
    with pytest.raises(GanprintError, match="`registry` and `name` go together"):
        ganprint.embed(tiny_stega_model, image_folder, tmp_path / "y", registry=reg, identical=True, device="cpu")
    out = ganprint.embed(tiny_stega_model, image_folder, tmp_path / "out", registry=reg, name="photos",
                         identical=True, seed=3, device="cpu")
    (ds,) = Registry(reg).datasets()
    assert ds.name == "photos" and out["registered"]["name"] == "photos"
    assert "".join(str(int(b)) for b in ds.bits) == out["fingerprint"]


def test_evaluate_takes_a_spec_or_its_fields(tiny_stega_model, image_folder, tmp_path):
    from ganprint.api import EvaluateSpec

    kw = dict(model=tiny_stega_model, data=image_folder, fingerprint="0x5a", attacks="none", device="cpu")
    by_fields = ganprint.evaluate(outdir=tmp_path / "a", **kw)
    by_spec = ganprint.evaluate(EvaluateSpec(outdir=tmp_path / "b", **kw))
    assert by_fields["images"] == 6 and by_fields["summary"] == by_spec["summary"]
    assert ganprint.evaluate(EvaluateSpec(outdir=tmp_path / "a", **kw), outdir=tmp_path / "c")["images"] == 6
    with pytest.raises(GanprintError, match="no field `outdirs`"):
        ganprint.evaluate(outdirs=tmp_path / "d", **kw)


def test_diffusion_config_takes_data_and_train_returns_the_export_path(sample_folder, tmp_path):
    cfg = ganprint.config("diffusion", "tiny-16", data=str(sample_folder), total_kimg=0.008, snapshot_kimg=0.008,
                          kimg_per_tick=0.008, grid_seeds=2, grid_steps=1)
    assert cfg.data == str(sample_folder)
    assert ganprint.config("diffusion", "tiny-16", resolution=32).resolution == 32  # the preset's UNet at 32 px
    with pytest.raises(GanprintError, match="`resolution` 25 does not fit"):
        ganprint.config("diffusion", "tiny-16", resolution=25)
    path = ganprint.train(cfg, tmp_path / "diff", device="cpu")  # no `data`: the config's
    assert path == tmp_path / "diff" / "network-final.safetensors" and path.is_file()
    assert ganprint.load(path)[2]["ganprint.kind"] == "diffusion-unet"


def test_stega_train_returns_the_export_path(sample_folder, tmp_path):
    cfg = ganprint.config("artificial", "demo-32", data=str(sample_folder), fingerprint_length=8, steps=2,
                          batch_size=4, decoder_polish=0)
    path = ganprint.train(cfg, tmp_path / "fp", device="cpu", progress=False)
    assert path == tmp_path / "fp" / "model.safetensors" and path.is_file()
    assert ganprint.train(cfg, tmp_path / "fp", device="cpu", progress=False) == path  # finished: the same path


def test_old_argument_names_work_with_a_deprecation_warning(tiny_stega_model, image_folder, tmp_path):
    with pytest.warns(DeprecationWarning, match="`num_workers` is the old name of `workers`"):
        new = ganprint.detect(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "a", num_workers=0,
                              device="cpu")
    assert new["images"] == 6
    with pytest.raises(GanprintError, match="give `workers` only"):
        ganprint.detect(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "b", num_workers=0, workers=0)
    with pytest.warns(DeprecationWarning, match="`decoder` is the old name of `model`"), \
            pytest.raises(GanprintError, match="attribute needs `registry`"):
        ganprint.attribute(decoder=tiny_stega_model, input=image_folder, outdir=tmp_path / "c")
    with pytest.raises(GanprintError, match="issue\\(\\) needs `registry`, `models_dir`"):
        ganprint.issue(tiny_stega_model)
