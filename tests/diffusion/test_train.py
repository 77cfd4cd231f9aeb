"""Diffusion training: outputs, exact resume, fine-tuning from an export, and clear errors."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("diffusers")

import ganprint
from ganprint.core.artifacts import latest_training_state
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_jsonl
from ganprint.data.folders import open_image_dataset
from ganprint.diffusion.train import train_diffusion
from tests.diffusion.conftest import tiny_config


def _tiny(**kw):
    # 16 px, batch 8, one tick and one snapshot every 3 steps, no sample grid (speed).
    return tiny_config(16, snapshot_kimg=0.024, kimg_per_tick=0.024, grid_seeds=0, **kw)


def test_training_writes_its_outputs(tmp_path, sample_folder, tiny_diffusion_export):
    run = tiny_diffusion_export.parent
    # The run folder of every trainer; states and grids are numbered by step (16 images = 2 steps of 8).
    for name in ("config.json", "log.txt", "stats.jsonl", "snapshots/reals.png", "snapshots/fakes-00000002.png",
                 "network-000000016.safetensors", "training-state-00000002.pt"):
        assert (run / name).is_file(), name
    rows = read_jsonl(run / "stats.jsonl")
    assert [r["kimg"] for r in rows] == [0.008, 0.016] and all(r["loss"] > 0 for r in rows)
    unet, cfg, meta = ganprint.load(tiny_diffusion_export)  # the kind is registered: no kind argument needed
    assert meta["ganprint.kind"] == "diffusion-unet" and cfg["unet"]["resolution"] == 32
    assert unet(torch.zeros(1, 3, 32, 32), 10).sample.shape == (1, 3, 32, 32)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, sample_folder):
    data = open_image_dataset(sample_folder, 16)
    train_diffusion(_tiny(total_kimg=0.048), tmp_path / "straight", data, device="cpu")
    train_diffusion(_tiny(total_kimg=0.024), tmp_path / "resumed", data, device="cpu")
    assert not (tmp_path / "resumed" / "network-000000048.safetensors").exists()
    out = train_diffusion(_tiny(total_kimg=0.048), tmp_path / "resumed", data, device="cpu")
    assert out["cur_nimg"] == 48
    a = load_file(tmp_path / "straight" / "network-final.safetensors")
    b = load_file(tmp_path / "resumed" / "network-final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = [r["loss"] for r in read_jsonl(tmp_path / "straight" / "stats.jsonl")]
    sb = [r["loss"] for r in read_jsonl(tmp_path / "resumed" / "stats.jsonl")]
    assert sa == sb


def test_a_run_folder_of_the_trainer_before_the_kit_resumes(tmp_path, sample_folder):
    # Before the training kit, states were numbered by images seen and held cur_nimg / cur_tick.
    data = open_image_dataset(sample_folder, 16)
    train_diffusion(_tiny(total_kimg=0.048), tmp_path / "straight", data, device="cpu")
    old = tmp_path / "old"
    train_diffusion(_tiny(total_kimg=0.024), old, data, device="cpu")
    kit = latest_training_state(old)
    st = torch.load(kit, weights_only=True)
    legacy = {"unet": st["unet"], "ema": st["ema"], "opt": st["opt"], "cur_nimg": st["nimg"],
              "cur_tick": st["counters"]["tick"], "elapsed": st["elapsed"]}
    kit.unlink()
    torch.save(legacy, old / "training-state-00000024.pt")
    train_diffusion(_tiny(total_kimg=0.048), old, data, device="cpu")
    assert sorted(p.name for p in old.glob("training-state-*.pt")) == ["training-state-00000003.pt",
                                                                       "training-state-00000006.pt"]
    a = load_file(tmp_path / "straight" / "network-final.safetensors")
    b = load_file(old / "network-final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["tick"] for r in read_jsonl(old / "stats.jsonl")] == [1, 2]


def test_resume_refuses_another_architecture(tmp_path, sample_folder):
    data = open_image_dataset(sample_folder, 16)
    train_diffusion(_tiny(total_kimg=0.0), tmp_path / "run", data, device="cpu")
    with pytest.raises(GanprintError, match="different config .batch_size: 8 -> 4"):
        train_diffusion(_tiny(total_kimg=0.0, batch_size=4), tmp_path / "run", data, device="cpu")


def test_a_resumed_run_keeps_its_data_and_a_run_that_did_not_record_it_still_resumes(tmp_path, sample_folder):
    other, run = tmp_path / "other", tmp_path / "run"
    shutil.copytree(sample_folder, other)
    train_diffusion(_tiny(total_kimg=0.008), run, sample_folder, device="cpu")
    with pytest.raises(GanprintError, match=re.escape(f"different config (data: '{sample_folder}' -> '{other}')")):
        train_diffusion(_tiny(total_kimg=0.016), run, other, device="cpu")
    # config.json as the trainer wrote it before it recorded --data (and before run folders had a record, which
    # then holds the run's identity): the run resumes, and stays unrecorded.
    old = json.loads((run / "config.json").read_text())
    del old["data"]
    (run / "config.json").write_text(json.dumps(old))
    (run / ".ganprint.json").unlink()
    assert train_diffusion(_tiny(total_kimg=0.016), run, other, device="cpu")["cur_nimg"] == 16
    assert [r["tick"] for r in read_jsonl(run / "stats.jsonl")] == [1, 2]
    assert "data" not in json.loads((run / "config.json").read_text())


def test_fine_tune_starts_from_the_export(tmp_path, sample_folder, tiny_diffusion_export):
    data = open_image_dataset(sample_folder, 32)
    # Zero kimg: the run's export is the starting point itself.
    cfg = tiny_config(32, total_kimg=0.0, grid_seeds=0, lr=1e-3)
    train_diffusion(cfg, tmp_path / "ft0", data, device="cpu", resume_from=tiny_diffusion_export)
    src = load_file(tiny_diffusion_export)
    start = load_file(tmp_path / "ft0" / "network-final.safetensors")
    assert all(torch.equal(src[k], start[k]) for k in src)
    out = train_diffusion(tiny_config(32, total_kimg=0.016, grid_seeds=0, lr=1e-3), tmp_path / "ft", data,
                          device="cpu", resume_from=tiny_diffusion_export)
    assert out["cur_nimg"] == 16
    tuned = load_file(tmp_path / "ft" / "network-final.safetensors")
    assert any(not torch.equal(src[k], tuned[k]) for k in src)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["resume_from"] == str(tiny_diffusion_export)


def test_fine_tune_errors(tmp_path, sample_folder, tiny_diffusion_export, tiny_stega_model):
    data = open_image_dataset(sample_folder, 16)
    with pytest.raises(GanprintError, match="is a 32-px model"):
        train_diffusion(_tiny(total_kimg=0.0), tmp_path / "a", data, device="cpu", resume_from=tiny_diffusion_export)
    with pytest.raises(GanprintError, match="holds a 'stega' model"):
        train_diffusion(_tiny(total_kimg=0.0), tmp_path / "b", data, device="cpu", resume_from=tiny_stega_model)


def test_wrong_data_resolution_is_a_clear_error(tmp_path, sample_folder):
    with pytest.raises(GanprintError, match="check `resolution`"):
        train_diffusion(_tiny(total_kimg=0.008), tmp_path / "run", open_image_dataset(sample_folder, 32),
                        device="cpu")


def test_without_diffusers_the_failed_start_leaves_no_folder_and_the_fix_runs(tmp_path, monkeypatch):
    import sys

    from click.testing import CliRunner

    from ganprint.cli import main
    from tests.training.test_trainers import _write_images

    out, data = tmp_path / "run", _write_images(tmp_path / "data", res=16)
    args = ["train-diffusion", "--preset", "tiny-16", "--kimg", "0.016", "--data", str(data), "--outdir",
            str(out), "--device", "cpu"]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "diffusers", None)  # `import diffusers` fails, as where the extra is not installed
        r = CliRunner().invoke(main, args)
    assert r.exit_code != 0 and "models need the diffusers package" in r.output, r.output
    assert not out.exists()
    r = CliRunner().invoke(main, [*args, "--seed", "1"])  # even another config: nothing of the failed start refuses it
    assert r.exit_code == 0, r.output
    assert (out / "network-final.safetensors").is_file() and (out / "curves.png").is_file()


def test_a_preset_trains_at_64_px(tmp_path):
    from ganprint.data.samples import write_samples
    from ganprint.diffusion.config import resolve_config

    write_samples(tmp_path / "data", resolution=64, count=8, seed=0)
    cfg = resolve_config("tiny-16", 64, total_kimg=0.008, kimg_per_tick=0.008, snapshot_kimg=0.008, grid_seeds=0)
    train_diffusion(cfg, tmp_path / "run", tmp_path / "data", device="cpu")
    unet, config, _ = ganprint.load(tmp_path / "run" / "network-final.safetensors")
    assert config["unet"]["resolution"] == 64 and unet.config.sample_size == 64
    assert unet(torch.zeros(1, 3, 64, 64), 10).sample.shape == (1, 3, 64, 64)
