"""Diffusion training configs: presets resolve, round-trip, and bad options name their flag."""

from __future__ import annotations

import json

import pytest

from ganprint.core.errors import GanprintError
from ganprint.diffusion.config import PRESETS, DiffusionTrainConfig, UNetConfig, resolve_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_round_trip(name):
    cfg = resolve_config(name, None)
    assert cfg.preset == name
    again = DiffusionTrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_default_preset_and_overrides():
    cfg = resolve_config(None, 32, total_kimg=2.0, lr=1e-3, batch_size=None)
    assert cfg.preset == "cpu-32" and cfg.total_kimg == 2.0 and cfg.lr == 1e-3
    assert cfg.batch_size == PRESETS["cpu-32"].batch_size
    assert resolve_config("ddpm-32", None).unet.channels == (128, 256, 256, 256)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(preset="nope", resolution=None), "`preset` 'nope' is unknown"),
    (dict(preset="cpu-32", resolution=62), "`resolution` 62 does not fit `preset` cpu-32: its UNet halves the image 2 "
                                            "times, so the side must be a multiple of 4"),
    (dict(preset="cpu-32", resolution=0), "`resolution` must be"),
    (dict(preset="cpu-32", resolution=None, lr=-1.0), "`lr` must be"),
    (dict(preset="cpu-32", resolution=None, batch_size=0), "`batch_size` must be"),
])
def test_bad_options_name_the_flag(kwargs, needle):
    with pytest.raises(GanprintError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(**kwargs)


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_resolution_64_and_above_keeps_the_presets_unet(resolution):
    cfg = resolve_config("tiny-16", resolution)
    assert cfg.resolution == resolution and cfg.unet.channels == PRESETS["tiny-16"].unet.channels
    assert DiffusionTrainConfig.from_dict(cfg.to_dict()) == cfg


def test_settings_of_released_unets_are_written_only_when_set():
    # Run folders and exports written before these settings existed keep their identity.
    plain = PRESETS["tiny-16"].unet
    assert not {"flip_sin_to_cos", "freq_shift", "downsample_padding", "norm_eps", "in_channels"} & set(plain.to_dict())
    latent = UNetConfig(8, (32, 32), (False, False), head_dim=32, in_channels=4).validate()  # a latent UNet's
    assert latent.to_dict()["in_channels"] == 4 and UNetConfig.from_dict(latent.to_dict()) == latent
    ddpm = UNetConfig(32, (32, 64), (False, True), head_dim=None, flip_sin_to_cos=False, freq_shift=1,
                      downsample_padding=0, norm_eps=1e-6).validate()
    d = ddpm.to_dict()
    assert d["flip_sin_to_cos"] is False and d["freq_shift"] == 1 and d["norm_eps"] == 1e-6 and d["head_dim"] is None
    assert UNetConfig.from_dict(d) == ddpm
    with pytest.raises(GanprintError, match="`norm_eps` must be"):
        UNetConfig(32, (32, 32), (False, False), head_dim=32, norm_eps=0.0).validate()


def test_unet_config_rejects_impossible_shapes():
    with pytest.raises(ValueError, match="one entry per level"):
        UNetConfig(32, (32, 64), (False,)).validate()
    with pytest.raises(ValueError, match="multiple of norm_groups"):
        UNetConfig(32, (48, 64), (False, False), norm_groups=32).validate()
    with pytest.raises(ValueError, match="head_dim"):
        UNetConfig(32, (32, 32), (False, False), head_dim=64).validate()
    with pytest.raises(ValueError, match="unknown"):
        DiffusionTrainConfig.from_dict({"bogus": 1})


def test_cli_dry_run_and_bad_flags(tmp_path):
    from click.testing import CliRunner

    from ganprint.cli import main

    runner = CliRunner()
    ok = runner.invoke(main, ["train-diffusion", "--data", str(tmp_path), "--outdir", str(tmp_path / "o"),
                              "--preset", "ddpm-32", "--kimg", "5", "--warmup-kimg", "1", "--dry-run"])
    assert ok.exit_code == 0, ok.output
    printed = json.loads(ok.output)  # what config.json will hold: the config, --data and --resume-from
    assert printed.pop("data") == str(tmp_path) and printed.pop("resume_from") is None
    cfg = DiffusionTrainConfig.from_dict(printed)
    assert cfg.preset == "ddpm-32" and cfg.total_kimg == 5 and cfg.warmup_kimg == 1
    for args, needle in ((["--preset", "huge"], "--preset 'huge' is unknown"),
                         (["--resolution", "34"], "--resolution 34 does not fit --preset cpu-32"),
                         (["--kimg", "-1"], "Invalid value for '--kimg'")):
        bad = runner.invoke(main, ["train-diffusion", "--data", str(tmp_path), "--outdir", str(tmp_path / "o"), *args])
        assert bad.exit_code == (2 if "Invalid" in needle else 1), bad.output  # 2: click's check of the flag
        assert needle in bad.output and "Traceback" not in bad.output
    with pytest.raises(GanprintError, match=r"`total_kimg` must be a finite number"):  # the API: the same bound
        resolve_config("cpu-32", None, total_kimg=float("inf"))
    empty = runner.invoke(main, ["train-diffusion", "--data", str(tmp_path), "--outdir", str(tmp_path / "o"),
                                 "--preset", "tiny-16"])
    assert empty.exit_code == 1 and "Traceback" not in empty.output
