"""The autoencoder's model half: diffusers save_pretrained folders in, exports of both autoencoder kinds out."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

pytest.importorskip("diffusers")

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.latent.autoencoder import (AutoencoderConfig, build_autoencoder, decode, encode, export_config,
                                         read_diffusers_autoencoder)

CFG = AutoencoderConfig(16, (32, 32), 1, 4, 32, mid_attention=False)


def test_a_save_pretrained_folder_round_trips(tmp_path):
    torch.manual_seed(1)
    vae = build_autoencoder(CFG)
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    cfg, read = read_diffusers_autoencoder(tmp_path / "vae")
    assert cfg == CFG
    a, b = vae.state_dict(), read.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(decode(vae.eval(), encode(vae, x)), decode(read, encode(read, x)))


def test_a_pickle_only_folder_and_another_class_are_refused_naming_the_file(tmp_path):
    build_autoencoder(CFG).save_pretrained(tmp_path / "pk", safe_serialization=True)
    (tmp_path / "pk" / "diffusion_pytorch_model.safetensors").unlink()
    (tmp_path / "pk" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(GanprintError, match=r"pk has no diffusion_pytorch_model.safetensors .*pickle"):
        read_diffusers_autoencoder(tmp_path / "pk")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(GanprintError, match=r"unet/config.json describes a UNet2DModel, not an AutoencoderKL"):
        read_diffusers_autoencoder(tmp_path / "unet")


def test_an_issued_autoencoder_loads_as_the_same_architecture(tmp_path):
    torch.manual_seed(2)
    vae = build_autoencoder(CFG)
    for kind in ("latent-autoencoder", "latent-autoencoder-issued"):
        path = save_export(tmp_path / f"{kind}.safetensors", vae, kind, export_config(CFG))
        back, config, meta = load_export(path)
        assert meta["ganprint.kind"] == kind and config == {"autoencoder": CFG.to_dict()}
        assert all(torch.equal(v, back.state_dict()[k]) for k, v in vae.state_dict().items())


def test_weights_of_another_shape_or_not_finite_are_refused_naming_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    build_autoencoder(CFG).save_pretrained(tmp_path / "vae", safe_serialization=True)
    weights = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    wide = build_autoencoder(AutoencoderConfig(16, (64, 64), 1, 4, 32, mid_attention=False)).state_dict()
    save_file({k: wide[k].contiguous() for k in state}, str(weights))  # config says 32 wide, weights are 64
    with pytest.raises(GanprintError, match=r"diffusion_pytorch_model.safetensors does not fit its config: .* is "):
        read_diffusers_autoencoder(tmp_path / "vae")
    state["decoder.conv_out.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, str(weights))
    with pytest.raises(GanprintError, match=r"non-finite weights \(decoder.conv_out.weight\)"):
        read_diffusers_autoencoder(tmp_path / "vae")
