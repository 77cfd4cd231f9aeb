"""Configuration of the latent diffusion trainers: `ganprint train-autoencoder` and `ganprint train-latent`.

`AutoencoderTrainConfig` trains the autoencoder (ganprint.latent.autoencoder) on images. `train-latent` trains
the diffusion trainer's config (`DiffusionTrainConfig`) on the latents of a frozen autoencoder, so its presets
(`LATENT_PRESETS`) are diffusion configs whose UNet side and channels the autoencoder sets at training time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from ganprint.core import bounds
from ganprint.core.artifacts import check_config_keys
from ganprint.core.bounds import optional
from ganprint.core.errors import GanprintError
from ganprint.diffusion.config import DiffusionTrainConfig, NoiseConfig, UNetConfig
from ganprint.latent.autoencoder import AutoencoderConfig
from ganprint.training.config import apply_overrides, check_bounds

LOSSES = ("l1", "l2")


@dataclass
class AutoencoderTrainConfig:
    preset: str = "ae-32"  # name of the preset this config started from
    data: str = ""  # folder of images or packed data set, used when no `data` is given
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    batch_size: int = 16  # total over all processes
    total_kimg: float = 20.0  # training length in thousands of images
    kimg_per_tick: float = 0.5  # one status line + stats.jsonl row (with the held-out PSNR) per tick
    snapshot_kimg: float = 2.5  # reconstruction grid, EMA export and training state every this many kimg
    seed: int = 0  # everything random is a function of (seed, rank, images seen)
    lr: float = 2e-4  # Adam learning rate after warm-up
    warmup_kimg: float = 0.5  # linear learning-rate warm-up
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    ema_kimg: float = 1.0  # half-life of the EMA autoencoder in kimg
    ema_rampup: float | None = 0.05  # half-life <= images seen * rampup early in training; None = no ramp
    loss: str = "l1"  # reconstruction loss: l1 or l2
    kl_weight: float = 1e-6  # weight of the posterior's KL divergence to N(0, I), per element as the loss
    holdout: int = 16  # the data set's last images, never trained on: the PSNR of their reconstructions is logged
    mirror: bool = False  # random x-flips of the training images
    amp: bool = True  # bf16 autocast on CUDA (CPU always trains in float32)

    def validate(self) -> AutoencoderTrainConfig:
        """Raise ValueError (a BoundError names the field) on impossible values."""
        self.autoencoder.validate()
        check_bounds(self, _BOUNDS)
        if self.loss not in LOSSES:
            raise ValueError(f"`loss` {self.loss!r} is not {' or '.join(LOSSES)}")
        return self

    @property
    def resolution(self) -> int:
        return self.autoencoder.resolution

    def to_dict(self) -> dict:
        return {**asdict(self), "autoencoder": self.autoencoder.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> AutoencoderTrainConfig:
        d = dict(d)
        check_config_keys(cls, d)
        d["autoencoder"] = AutoencoderConfig.from_dict(d.get("autoencoder", {}))
        return cls(**d).validate()


_BOUNDS = {
    "batch_size": bounds.BATCH, "total_kimg": bounds.KIMG, "kimg_per_tick": bounds.KIMG_POS,
    "snapshot_kimg": bounds.KIMG_POS, "seed": bounds.SEED, "lr": bounds.LR, "warmup_kimg": bounds.KIMG,
    "grad_clip": bounds.WEIGHT, "ema_kimg": bounds.KIMG, "ema_rampup": optional(bounds.FRACTION),
    "kl_weight": bounds.WEIGHT, "holdout": bounds.IMAGES,
}

# Fields that may change when a run is resumed (re-running with a longer `total_kimg` continues the run).
RUNTIME_FIELDS = ("total_kimg", "kimg_per_tick", "snapshot_kimg")

AUTOENCODER_PRESETS: dict[str, AutoencoderTrainConfig] = {
    # Test-sized: 16 px, two 32-wide levels (latents 4 x 8 x 8), no attention; trains in seconds.
    "ae-smoke": AutoencoderTrainConfig(
        preset="ae-smoke", autoencoder=AutoencoderConfig(16, (32, 32), 1, 4, 32, mid_attention=False), batch_size=4,
        total_kimg=0.016, kimg_per_tick=0.008, snapshot_kimg=0.008, warmup_kimg=0.0, ema_kimg=0.01, holdout=2),
    # CPU presets: three levels (a factor 4 per side, as Stable Diffusion's f=8 is at 512 px), 4 latent channels:
    # latents 4 x 8 x 8 at 32 px and 4 x 16 x 16 at 64 px.
    "ae-32": AutoencoderTrainConfig(preset="ae-32", autoencoder=AutoencoderConfig(32, (32, 64, 64), 1, 4)),
    "ae-64": AutoencoderTrainConfig(preset="ae-64", autoencoder=AutoencoderConfig(64, (32, 64, 64), 1, 4),
                                    batch_size=8),
    # GPU: Stable Diffusion's layout (four levels, f = 8, 4 latent channels) at half its widths: latents 4 x 32 x 32.
    "ae-256": AutoencoderTrainConfig(preset="ae-256", autoencoder=AutoencoderConfig(256, (64, 128, 256, 256), 2, 4),
                                     batch_size=16, total_kimg=100.0, kimg_per_tick=2.0, snapshot_kimg=10.0),
}

# Stable Diffusion's forward process (scaled_linear, 0.00085 .. 0.012), made for latents of about unit variance.
_LATENT_NOISE = NoiseConfig(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)

LATENT_PRESETS: dict[str, DiffusionTrainConfig] = {
    # Test-sized: a two-level 32-wide UNet on ae-smoke's 8 x 8 latents.
    "ldm-smoke": DiffusionTrainConfig(
        preset="ldm-smoke", unet=UNetConfig(8, (32, 32), (False, False), 1, head_dim=32), noise=_LATENT_NOISE,
        batch_size=4, total_kimg=0.016, kimg_per_tick=0.008, snapshot_kimg=0.008, warmup_kimg=0.0, ema_kimg=0.01,
        grid_seeds=4, grid_steps=4),
    # ae-32's 8 x 8 latents: 8 and 4 px levels, attention at 4 px.
    "ldm-32": DiffusionTrainConfig(
        preset="ldm-32", unet=UNetConfig(8, (64, 128), (False, True), 1, head_dim=32), noise=_LATENT_NOISE,
        batch_size=16, total_kimg=20.0, kimg_per_tick=0.5, snapshot_kimg=2.5, lr=3e-4, warmup_kimg=0.5,
        ema_kimg=1.0),
    # ae-64's 16 x 16 latents: 16, 8 and 4 px levels, attention at 8 and 4 px.
    "ldm-64": DiffusionTrainConfig(
        preset="ldm-64", unet=UNetConfig(16, (64, 128, 128), (False, True, True), 1, head_dim=32),
        noise=_LATENT_NOISE, batch_size=16, total_kimg=20.0, kimg_per_tick=0.5, snapshot_kimg=2.5, lr=3e-4,
        warmup_kimg=0.5, ema_kimg=1.0),
    # GPU: ae-256's 32 x 32 latents: 32, 16 and 8 px levels, attention at 16 and 8 px.
    "ldm-256": DiffusionTrainConfig(
        preset="ldm-256", unet=UNetConfig(32, (128, 256, 256), (False, True, True), 2, head_dim=32),
        noise=_LATENT_NOISE, batch_size=64, total_kimg=200.0, kimg_per_tick=2.0, snapshot_kimg=20.0, lr=2e-4,
        warmup_kimg=2.0, ema_kimg=10.0),
}


def resolve_autoencoder_config(preset: str | None, norm_groups: int | None = None,
                               **overrides) -> AutoencoderTrainConfig:
    """A preset (default: ae-32) with the non-None overrides (top-level fields) applied, and `norm_groups` (the
    architecture's GroupNorm groups) when given, validated.

    Raises GanprintError naming the field when the preset is unknown or a value is out of bounds.
    """
    cfg = apply_overrides(preset, AUTOENCODER_PRESETS, "ae-32", **overrides)
    if norm_groups is not None:
        cfg = dataclasses.replace(cfg, autoencoder=dataclasses.replace(cfg.autoencoder, norm_groups=norm_groups))
    try:
        return cfg.validate()
    except (ValueError, TypeError) as e:
        raise GanprintError(f"invalid training options: {e}") from None


def fit_to_autoencoder(cfg: DiffusionTrainConfig, ae: AutoencoderConfig) -> DiffusionTrainConfig:
    """`cfg` with its UNet's side and channels those of `ae`'s latents, validated."""
    unet = dataclasses.replace(cfg.unet, resolution=ae.latent_resolution, in_channels=ae.latent_channels)
    try:
        return dataclasses.replace(cfg, unet=unet).validate()
    except (ValueError, TypeError) as e:
        raise GanprintError(f"invalid training options for latents of {ae.latent_channels} x {ae.latent_resolution} "
                            f"x {ae.latent_resolution}: {e}") from None


def resolve_latent_config(preset: str | None, ae: AutoencoderConfig, **overrides) -> DiffusionTrainConfig:
    """A latent preset (default: ldm-32) with the non-None overrides applied, its UNet fitted to `ae`'s latents."""
    return fit_to_autoencoder(apply_overrides(preset, LATENT_PRESETS, "ldm-32", **overrides), ae)
