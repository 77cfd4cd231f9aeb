"""Configuration of diffusion training (`ganprint train-diffusion`): typed dataclasses and named presets.

The UNet is diffusers' `UNet2DModel`; `UNetConfig` names the few choices that matter (channels and attention
per level, residual blocks per level, dropout) and `NoiseConfig` the DDPM forward process. The paper-sized preset
`ddpm-32` is the DDPM CIFAR-10 model (Ho et al. 2020: 128 channels x (1, 2, 2, 2), two residual blocks per level,
attention at 16 px, dropout 0.1, 1000 linear-beta steps, Adam 2e-4 with 5000 warm-up steps, batch 128, EMA 0.9999).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field, fields

from ganprint.core import bounds
from ganprint.core.artifacts import check_config_keys
from ganprint.core.bounds import Bound, BoundError, optional
from ganprint.core.errors import GanprintError
from ganprint.training.config import apply_overrides, check_bounds, read_config_file


@dataclass
class UNetConfig:
    resolution: int = 32  # image side in pixels
    channels: tuple[int, ...] = (64, 128, 128)  # output channels of each resolution level
    attention: tuple[bool, ...] = (False, True, False)  # self-attention blocks at each level
    layers_per_block: int = 1  # residual blocks per level
    dropout: float = 0.0
    norm_groups: int = 32  # GroupNorm groups; must divide every channel count
    head_dim: int | None = 64  # attention head size; None: one head as wide as its level (diffusers' null)
    # Settings of released diffusers UNets (the DDPM ports use False, 1, 0 and 1e-6); the defaults are diffusers'.
    flip_sin_to_cos: bool = True  # timestep embedding: cos half first
    freq_shift: int = 0  # timestep embedding: frequency shift
    downsample_padding: int = 1  # padding of the strided down-sampling convolutions
    norm_eps: float = 1e-5  # GroupNorm epsilon
    in_channels: int = 3  # channels in and out: 3 for pixels, the autoencoder's latent channels for latent diffusion

    def validate(self) -> UNetConfig:
        """Raise ValueError on impossible combinations."""
        check_bounds(self, {"resolution": bounds.RESOLUTION, "norm_groups": _WIDTH, "head_dim": optional(_WIDTH),
                            "layers_per_block": Bound(1, 64, integer=True), "dropout": Bound(0, 1, hi_open=True),
                            "freq_shift": Bound(0, 64, integer=True), "downsample_padding": Bound(0, 8, integer=True),
                            "norm_eps": Bound(0, 1, lo_open=True), "in_channels": Bound(1, 64, integer=True)})
        if not all(_WIDTH.problem(c) is None for c in self.channels):
            raise BoundError(f"unet.channels must be whole numbers in [1, 4096], got {self.channels!r}")
        if len(self.channels) != len(self.attention) or not self.channels:
            raise ValueError("unet.channels and unet.attention need one entry per level")
        if self.resolution % (2 ** (len(self.channels) - 1)):
            raise ValueError(f"resolution {self.resolution} is not divisible by 2^(levels-1) = "
                             f"{2 ** (len(self.channels) - 1)}")
        if any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"every unet channel count must be a multiple of norm_groups {self.norm_groups}")
        attended = [c for c, a in zip(self.channels, self.attention) if a] + [self.channels[-1]]
        if self.head_dim is not None and any(c % self.head_dim for c in attended):
            raise ValueError(f"unet.head_dim {self.head_dim} must divide the channels of the attention levels and "
                             "of the last level (the middle block attends)")
        if self.layers_per_block < 1 or not 0 <= self.dropout < 1:
            raise ValueError("unet.layers_per_block must be >= 1 and unet.dropout in [0, 1)")
        return self

    def to_dict(self) -> dict:
        """Plain JSON types; the settings added for released diffusers UNets only where they differ from their
        defaults, so that run folders and exports written before them keep their identity."""
        d = {**asdict(self), "channels": list(self.channels), "attention": list(self.attention)}
        return {k: v for k, v in d.items() if k not in _LATER or v != _LATER[k]}

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        d = dict(d)
        check_config_keys(cls, d)
        for k in ("channels", "attention"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d).validate()


@dataclass
class NoiseConfig:
    timesteps: int = 1000  # steps of the forward (noising) process
    beta_schedule: str = "linear"  # diffusers beta_schedule: linear, scaled_linear, squaredcos_cap_v2
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"  # what the UNet predicts: epsilon or v_prediction

    def validate(self) -> NoiseConfig:
        """Raise ValueError on impossible values."""
        check_bounds(self, {"timesteps": Bound(2, 100000, integer=True), "beta_start": _BETA, "beta_end": _BETA})
        if self.beta_start >= self.beta_end:
            raise BoundError(f"noise.beta_start {self.beta_start} must be below noise.beta_end {self.beta_end}")
        if self.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(f"noise.beta_schedule {self.beta_schedule!r} is not linear, scaled_linear or "
                             "squaredcos_cap_v2")
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"noise.prediction_type {self.prediction_type!r} is not epsilon or v_prediction")
        return self

    def scheduler_kwargs(self) -> dict:
        """Keyword arguments shared by diffusers' DDPM, DDIM and DPM-Solver schedulers."""
        return {"num_train_timesteps": self.timesteps, "beta_schedule": self.beta_schedule,
                "beta_start": self.beta_start, "beta_end": self.beta_end, "prediction_type": self.prediction_type}


@dataclass
class DiffusionTrainConfig:
    preset: str = "cpu-32"  # name of the preset this config started from
    data: str = ""  # folder of images or packed data set, used when train_diffusion() is given no `data`
    unet: UNetConfig = field(default_factory=UNetConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    batch_size: int = 32  # total over all processes
    total_kimg: float = 100.0  # training length in thousands of images
    kimg_per_tick: float = 1.0  # one status line + stats.jsonl row per tick
    snapshot_kimg: float = 10.0  # sample grid, EMA export and training state every this many kimg
    seed: int = 0  # everything random is a function of (seed, rank, cur_nimg)
    lr: float = 2e-4  # Adam learning rate after warm-up
    warmup_kimg: float = 5.0  # linear learning-rate warm-up
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    ema_kimg: float = 10.0  # half-life of the EMA UNet in kimg
    ema_rampup: float | None = 0.05  # half-life <= cur_nimg * rampup early in training; None = no ramp
    mirror: bool = False  # random x-flips (off: a flip would mirror the fingerprint too)
    amp: bool = True  # bf16 autocast on CUDA (CPU always trains in float32)
    grid_seeds: int = 16  # seeds 0..n-1 in the snapshot grids (as `ganprint generate`)
    grid_steps: int = 25  # DDIM steps of the snapshot grids

    def validate(self) -> DiffusionTrainConfig:
        """Raise ValueError on impossible combinations."""
        self.unet.validate()
        self.noise.validate()
        check_bounds(self, _BOUNDS)
        return self

    @property
    def resolution(self) -> int:
        return self.unet.resolution

    def to_dict(self) -> dict:
        """Plain JSON types only."""
        return {**asdict(self), "unet": self.unet.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> DiffusionTrainConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError."""
        d = dict(d)
        check_config_keys(cls, d)
        d["unet"] = UNetConfig.from_dict(d.get("unet", {}))
        d["noise"] = NoiseConfig(**d.get("noise", {}))
        return cls(**d).validate()


_WIDTH = Bound(1, 4096, integer=True)  # channel counts, groups, head sizes
_LATER = {f.name: f.default for f in fields(UNetConfig)
          if f.name in ("flip_sin_to_cos", "freq_shift", "downsample_padding", "norm_eps", "in_channels")}
_BETA = Bound(0, 1, lo_open=True, hi_open=True)  # the forward process's noise variances per step
_BOUNDS = {
    "batch_size": bounds.BATCH, "total_kimg": bounds.KIMG,
    "kimg_per_tick": bounds.KIMG_POS, "snapshot_kimg": bounds.KIMG_POS,
    "seed": bounds.SEED, "lr": bounds.LR, "warmup_kimg": bounds.KIMG,
    "grad_clip": bounds.WEIGHT, "ema_kimg": bounds.KIMG,
    "ema_rampup": optional(bounds.FRACTION), "grid_seeds": Bound(0, 1024, integer=True),
    "grid_steps": bounds.SAMPLER_STEPS,
}


PRESETS: dict[str, DiffusionTrainConfig] = {
    # Test-sized: a 16-px UNet with two 32-channel levels; trains a few hundred images in seconds.
    "tiny-16": DiffusionTrainConfig(
        preset="tiny-16", unet=UNetConfig(16, (32, 32), (False, False), 1, head_dim=32), batch_size=8, total_kimg=0.1,
        kimg_per_tick=0.05, snapshot_kimg=0.05, warmup_kimg=0.0, ema_kimg=0.05, grid_seeds=4, grid_steps=4),
    # 2-CPU-core preset: 32 px, three levels of 32/64/64 channels (1.1 M parameters), attention at 8 px only, one
    # residual block per level. Batch 16: in a run this short, more updates matter more than less noisy ones (a
    # larger batch costs little less per image on CPU). Its length follows an hour's budget on 2 cores.
    "cpu-32": DiffusionTrainConfig(
        preset="cpu-32", unet=UNetConfig(32, (32, 64, 64), (False, False, True), 1, head_dim=32), batch_size=16,
        total_kimg=20.0, kimg_per_tick=0.5, snapshot_kimg=2.5, lr=3e-4, warmup_kimg=0.5, ema_kimg=1.0),
    # DDPM CIFAR-10 (35.7 M parameters) for GPUs.
    "ddpm-32": DiffusionTrainConfig(
        preset="ddpm-32", unet=UNetConfig(32, (128, 256, 256, 256), (False, True, False, False), 2, dropout=0.1),
        batch_size=128, total_kimg=100000.0, kimg_per_tick=10.0, snapshot_kimg=500.0, lr=2e-4, warmup_kimg=640.0,
        ema_kimg=887.0, grid_seeds=64, grid_steps=50),
}


# Fields that may change when a run is resumed (re-running with a longer `total_kimg` continues the run).
RUNTIME_FIELDS = ("total_kimg", "kimg_per_tick", "snapshot_kimg")


def resolve_config(preset: str | None, resolution: int | None, config_file: str | os.PathLike | None = None,
                   **overrides) -> DiffusionTrainConfig:
    """Start from a preset (default: cpu-32), or from the config a run's config.json holds (`config_file`; its
    `data` and `resume_from` are the run's, not the config's), and apply the non-None overrides (top-level fields);
    `resolution` replaces the image side (its UNet is the same at any size that 2^(levels-1) divides).

    Raises GanprintError naming the field when the preset is unknown or `resolution` does not fit its UNet.
    """
    base = (read_config_file(config_file, DiffusionTrainConfig, ("data", "resume_from"))
            if config_file is not None else None)
    cfg = apply_overrides(preset, PRESETS, "cpu-32", base, **overrides)
    if resolution is not None and resolution != cfg.resolution:
        bounds.RESOLUTION.check(resolution, "`resolution`")
        levels = len(cfg.unet.channels)
        if resolution % 2 ** (levels - 1):
            raise GanprintError(f"`resolution` {resolution} does not fit `preset` {cfg.preset}: its UNet halves the "
                                f"image {levels - 1} times, so the side must be a multiple of {2 ** (levels - 1)}")
        cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, resolution=int(resolution)))
    try:
        return cfg.validate()
    except (ValueError, TypeError) as e:
        raise GanprintError(f"invalid training options: {e}") from None
