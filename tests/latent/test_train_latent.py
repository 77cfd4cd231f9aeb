"""Latent diffusion training: one export of UNet and autoencoder, exact resume, fine-tuning, clear errors."""

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
from ganprint.diffusion.config import UNetConfig
from ganprint.diffusion.model import build_unet
from ganprint.latent.autoencoder import encode
from ganprint.latent.train_latent import train_latent
from tests.latent.conftest import tiny_ldm_config


def test_the_export_holds_the_unet_and_the_frozen_autoencoder(tiny_latent_export, tiny_autoencoder_export):
    run = tiny_latent_export.parent
    for name in ("config.json", "stats.jsonl", "snapshots/reals.png", "snapshots/fakes-00000004.png",
                 "network-000000016.safetensors", "training-state-00000004.pt"):
        assert (run / name).is_file(), name
    model, cfg, meta = load_export(tiny_latent_export)
    assert meta["ganprint.kind"] == "latent-diffusion" and set(cfg) == {"unet", "noise", "autoencoder"}
    assert cfg["unet"]["resolution"] == 8 and cfg["unet"]["in_channels"] == 4  # the autoencoder's latents
    keys = load_file(tiny_latent_export).keys()
    assert {k.split(".")[0] for k in keys} == {"unet", "autoencoder"}
    vae, _, _ = load_export(tiny_autoencoder_export)  # frozen: the export carries it unchanged
    assert all(torch.equal(v, model.autoencoder.state_dict()[k]) for k, v in vae.state_dict().items())
    z = encode(model.autoencoder, torch.zeros(1, 3, 16, 16))
    assert model.unet(z, 10).sample.shape == z.shape
    record = json.loads((run / "config.json").read_text())
    assert record["autoencoder"] == str(tiny_autoencoder_export) and len(record["autoencoder_sha256"]) == 64


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, sample_folder, tiny_autoencoder_export):
    data = open_image_dataset(sample_folder, 16)

    def run(name, kimg):
        cfg = tiny_ldm_config(total_kimg=kimg, kimg_per_tick=0.008, snapshot_kimg=0.008, grid_seeds=0)
        return train_latent(cfg, tmp_path / name, data, tiny_autoencoder_export, device="cpu")

    run("straight", 0.016)
    run("resumed", 0.008)
    assert run("resumed", 0.016)["cur_nimg"] == 16
    a = load_file(tmp_path / "straight" / "latent-diffusion.safetensors")
    b = load_file(tmp_path / "resumed" / "latent-diffusion.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in read_jsonl(tmp_path / d / "stats.jsonl")] for d in ("straight", "resumed")]
    assert losses[0] == losses[1] and len(losses[0]) == 2


def test_fine_tuning_from_an_export_or_a_diffusers_unet_folder(tmp_path, sample_folder, tiny_latent_export,
                                                              tiny_autoencoder_export):
    data = open_image_dataset(sample_folder, 16)
    model, _, _ = load_export(tiny_latent_export)
    model.unet.save_pretrained(tmp_path / "released", safe_serialization=True)
    for name, start in (("ft-export", tiny_latent_export), ("ft-folder", tmp_path / "released")):
        out = train_latent(tiny_ldm_config(total_kimg=0.0, grid_seeds=0), tmp_path / name, data,
                           tiny_autoencoder_export, device="cpu", resume_from=start)
        assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in out["ema"].state_dict().items())


def test_clear_errors(tmp_path, sample_folder, tiny_autoencoder_export, tiny_latent_export, tiny_stega_model):
    data = open_image_dataset(sample_folder, 16)
    cfg = tiny_ldm_config(total_kimg=0.0, grid_seeds=0)
    with pytest.raises(GanprintError, match="`autoencoder` .* holds a 'latent-diffusion' model"):
        train_latent(cfg, tmp_path / "a", data, tiny_latent_export, device="cpu")
    with pytest.raises(GanprintError, match="`resume_from` .* holds a 'stega' model"):
        train_latent(cfg, tmp_path / "b", data, tiny_autoencoder_export, device="cpu", resume_from=tiny_stega_model)
    build_unet(UNetConfig(8, (32, 32), (False, False), 1, head_dim=32)).save_pretrained(tmp_path / "rgb")
    with pytest.raises(GanprintError, match=r"rgb/config.json sets `in_channels` to 3; this model needs 4"):
        train_latent(cfg, tmp_path / "c", data, tiny_autoencoder_export, device="cpu", resume_from=tmp_path / "rgb")
    build_unet(UNetConfig(16, (32, 32), (False, False), 1, head_dim=32, in_channels=4)).save_pretrained(
        tmp_path / "big")
    with pytest.raises(GanprintError, match=r"big denoises 4 x 16 x 16 inputs, but the autoencoder's latents are "
                                            r"4 x 8 x 8"):
        train_latent(cfg, tmp_path / "d", data, tiny_autoencoder_export, device="cpu", resume_from=tmp_path / "big")
    with pytest.raises(GanprintError, match=r"training images are \(3, 32, 32\), expected \(3, 16, 16\)"):
        train_latent(cfg, tmp_path / "e", open_image_dataset(sample_folder, 32), tiny_autoencoder_export,
                     device="cpu")
