"""Autoencoder training: the loss falls, resume equals an uninterrupted run, fine-tuning, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("diffusers")

from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_jsonl
from ganprint.data.folders import open_image_dataset
from ganprint.latent.train_autoencoder import psnr, train_autoencoder
from tests.latent.conftest import tiny_ae_config


def test_training_writes_its_outputs_and_the_export_reloads(tiny_autoencoder_export):
    run = tiny_autoencoder_export.parent
    for name in ("config.json", "log.txt", "stats.jsonl", "snapshots/reconstructions-00000004.png",
                 "network-000000016.safetensors", "training-state-00000004.pt"):
        assert (run / name).is_file(), name
    rows = read_jsonl(run / "stats.jsonl")
    assert [r["kimg"] for r in rows] == [0.008, 0.016]
    assert all(r["loss"] > 0 and r["kl"] > 0 and 0 < r["psnr_held_out"] < 100 for r in rows)
    vae, cfg, meta = load_export(tiny_autoencoder_export)
    assert meta["ganprint.kind"] == "latent-autoencoder" and cfg["autoencoder"]["resolution"] == 16
    assert vae.encode(torch.zeros(1, 3, 16, 16)).latent_dist.mean.shape == (1, 4, 8, 8)


def test_the_reconstruction_loss_falls(tmp_path, sample_folder):
    data = open_image_dataset(sample_folder, 16)
    cfg = tiny_ae_config(total_kimg=0.16, batch_size=8, kimg_per_tick=0.032, snapshot_kimg=0.16, lr=5e-4)
    out = train_autoencoder(cfg, tmp_path / "run", data, device="cpu")
    rows = read_jsonl(tmp_path / "run" / "stats.jsonl")
    assert out["step"] == 20 and len(rows) == 5
    first, last = rows[0], rows[-1]
    assert last["loss"] < 0.9 * first["loss"] and last["psnr_held_out"] > first["psnr_held_out"] + 1, rows


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, sample_folder):
    data = open_image_dataset(sample_folder, 16)
    cfg = dict(kimg_per_tick=0.008, snapshot_kimg=0.008)
    train_autoencoder(tiny_ae_config(total_kimg=0.024, **cfg), tmp_path / "straight", data, device="cpu")
    train_autoencoder(tiny_ae_config(total_kimg=0.008, **cfg), tmp_path / "resumed", data, device="cpu")
    out = train_autoencoder(tiny_ae_config(total_kimg=0.024, **cfg), tmp_path / "resumed", data, device="cpu")
    assert out["cur_nimg"] == 24
    a = load_file(tmp_path / "straight" / "latent-autoencoder.safetensors")
    b = load_file(tmp_path / "resumed" / "latent-autoencoder.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [read_jsonl(tmp_path / d / "stats.jsonl") for d in ("straight", "resumed")]
    strip = [[{k: v for k, v in r.items() if k not in ("sec_per_kimg", "elapsed_s")} for r in rs] for rs in rows]
    assert strip[0] == strip[1]


def test_fine_tuning_starts_from_an_export_or_a_diffusers_folder(tmp_path, sample_folder, tiny_autoencoder_export):
    data = open_image_dataset(sample_folder, 16)
    vae, _, _ = load_export(tiny_autoencoder_export)
    vae.save_pretrained(tmp_path / "released", safe_serialization=True)
    for name, start in (("ft-export", tiny_autoencoder_export), ("ft-folder", tmp_path / "released")):
        out = train_autoencoder(tiny_ae_config(total_kimg=0.0), tmp_path / name, data, device="cpu",
                                resume_from=start)
        assert all(torch.equal(v, vae.state_dict()[k]) for k, v in out["ema"].state_dict().items())
        assert json.loads((tmp_path / name / "config.json").read_text())["resume_from"] == str(start)


def test_clear_errors(tmp_path, sample_folder, tiny_stega_model):
    data = open_image_dataset(sample_folder, 16)
    with pytest.raises(GanprintError, match="`holdout` keeps 24 out of training"):
        train_autoencoder(tiny_ae_config(holdout=24), tmp_path / "a", data, device="cpu")
    with pytest.raises(GanprintError, match="`resume_from` .* holds a 'stega' model"):
        train_autoencoder(tiny_ae_config(), tmp_path / "b", data, device="cpu", resume_from=tiny_stega_model)
    with pytest.raises(GanprintError, match=r"training images are \(3, 16, 16\), expected \(3, 32, 32\)"):
        cfg = tiny_ae_config()
        train_autoencoder(cfg.__class__(**{**cfg.__dict__, "autoencoder": cfg.autoencoder.__class__(
            **{**cfg.autoencoder.__dict__, "resolution": 32})}), tmp_path / "c", data, device="cpu")


def test_psnr_of_8_bit_images():
    a = -torch.ones(1, 3, 4, 4)  # level 0
    assert psnr(a, a) > 99
    b = a + 2 / 255  # one grey level
    assert abs(psnr(a, b) - 20 * torch.log10(torch.tensor(255.0)).item()) < 1e-4


def test_norm_groups_sets_the_architecture():
    from click.testing import CliRunner

    from ganprint.cli import main

    r = CliRunner().invoke(main, ["train-autoencoder", "--data", "d", "--outdir", "o", "--norm-groups", "8",
                                  "--dry-run"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["autoencoder"]["norm_groups"] == 8
