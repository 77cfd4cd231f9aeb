"""Configuration of StyleGAN2 training (`ganprint train-gan`): typed dataclasses and named presets.

Hyperparameters follow StyleGAN2 / StyleGAN2-ADA config F (Adam lr 0.0025, betas (0, 0.99), lazy R1 every 16
minibatches, path-length regularisation every 4, EMA half-life in kimg with a ramp), scaled by resolution.
"""

from __future__ import annotations

import os

from dataclasses import asdict, dataclass, field

from ganprint.core import bounds
from ganprint.core.artifacts import check_config_keys
from ganprint.core.bounds import Bound, BoundError, optional
from ganprint.core.errors import GanprintError
from ganprint.nets.stylegan2 import DiscriminatorConfig, GeneratorConfig
from ganprint.training.config import apply_overrides, check_bounds, read_config_file


@dataclass
class GanTrainConfig:
    preset: str = "small"  # name of the preset this config started from
    data: str = ""  # folder of images or packed data set; "" when a Dataset is passed to train_gan()
    G: GeneratorConfig = field(default_factory=GeneratorConfig)  # generator architecture
    D: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # discriminator architecture
    batch_size: int = 32  # total over all processes
    total_kimg: float = 100.0  # training length in thousands of real images shown to D
    kimg_per_tick: float = 1.0  # one status line + stats.jsonl row per tick
    snapshot_kimg: float = 10.0  # sample grid, EMA export and training state every this many kimg
    seed: int = 0  # everything random is a function of (seed, rank, cur_nimg)
    mirror: bool = False  # random x-flips of real images
    G_lr: float = 0.0025  # Adam learning rate of G (before the lazy-regularisation adjustment)
    D_lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)  # Adam (beta1, beta2) before the lazy adjustment
    eps: float = 1e-8
    r1_gamma: float = 0.01  # R1 weight; the penalty is gamma / 2 * ||grad D(real)||^2
    r1_interval: int = 16  # lazy R1: every this many minibatches, scaled by the interval
    pl_weight: float = 2.0  # path-length regularisation weight; 0 disables it
    pl_interval: int = 4
    pl_batch_shrink: int = 2  # the path-length batch is batch_gpu / this
    pl_decay: float = 0.01  # decay of the running mean of path lengths
    style_mixing_prob: float = 0.9  # probability of mixing two latents at a random layer cut; 0 disables
    ema_kimg: float = 10.0  # half-life of the EMA generator in kimg
    ema_rampup: float | None = 0.05  # half-life <= cur_nimg * rampup early in training; None = no ramp
    fused_modconv: bool = False  # grouped-conv modulated conv (True) or scale-conv-scale (False; faster on CPU)
    grid_seeds: int = 64  # number of fixed seeds in the fakes grids (seeds 0..n-1, as `ganprint generate`)

    def validate(self) -> "GanTrainConfig":
        """Raise ValueError on impossible combinations."""
        self.G.validate()
        self.D.validate()
        if self.G.img_resolution != self.D.img_resolution:
            raise ValueError("G and D resolutions differ")
        check_bounds(self, _BOUNDS)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise BoundError(f"`betas` must be two numbers (beta1, beta2), got {self.betas!r}")
        for i, b in enumerate(self.betas):
            _BETA.check(b, f"`betas`[{i}]")
        return self

    @property
    def resolution(self) -> int:
        return self.G.img_resolution

    def to_dict(self) -> dict:
        """Plain JSON types only."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GanTrainConfig":
        """Inverse of `to_dict`; unknown keys raise ValueError."""
        d = dict(d)
        check_config_keys(cls, d)
        d["G"] = GeneratorConfig.from_dict(d.get("G", {}))
        d["D"] = DiscriminatorConfig.from_dict(d.get("D", {}))
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d).validate()


_BETA = Bound(0, 1, hi_open=True)  # Adam's betas
_BOUNDS = {
    "batch_size": bounds.BATCH, "total_kimg": bounds.KIMG,
    "kimg_per_tick": bounds.KIMG_POS, "snapshot_kimg": bounds.KIMG_POS,
    "seed": bounds.SEED, "G_lr": bounds.LR, "D_lr": bounds.LR,
    "eps": Bound(0, 1, lo_open=True), "r1_gamma": bounds.WEIGHT, "r1_interval": bounds.STEPS,
    "pl_weight": bounds.WEIGHT, "pl_interval": bounds.STEPS, "pl_batch_shrink": bounds.BATCH,
    "pl_decay": bounds.FRACTION, "style_mixing_prob": bounds.FRACTION,
    "ema_kimg": bounds.KIMG, "ema_rampup": optional(bounds.FRACTION),
    "grid_seeds": Bound(0, 1024, integer=True),
}


def _preset(name: str, res: int, *, z: int = 512, mapping: int = 8, cbase: int = 16384, cmax: int = 512,
            batch: int, gamma: float, **kw) -> GanTrainConfig:
    return GanTrainConfig(
        preset=name,
        G=GeneratorConfig(img_resolution=res, z_dim=z, w_dim=z, mapping_layers=mapping, channel_base=cbase,
                          channel_max=cmax),
        D=DiscriminatorConfig(img_resolution=res, channel_base=cbase, channel_max=cmax),
        batch_size=batch, r1_gamma=gamma, ema_kimg=batch * 10 / 32, **kw)


# R1 gamma follows the StyleGAN2-ADA heuristic 0.0002 * res^2 / batch, rounded to a convenient value.
PRESETS: dict[str, GanTrainConfig] = {
    # 2-CPU-core preset: 32 px, 128/64 channels, 2-layer mapping, no path-length reg or style mixing (as the
    # StyleGAN2-ADA CIFAR config); its speed: benchmarks/experiments/gan-transfer/RESULTS-gan.md.
    "small": _preset("small", 32, z=128, mapping=2, cbase=2048, cmax=128, batch=32, gamma=0.01, pl_weight=0.0,
                     style_mixing_prob=0.0, kimg_per_tick=1.0, snapshot_kimg=5.0, total_kimg=50.0),
    "32": _preset("32", 32, batch=64, gamma=0.01, total_kimg=25000.0, kimg_per_tick=4.0, snapshot_kimg=200.0),
    "64": _preset("64", 64, batch=64, gamma=0.05, total_kimg=25000.0, kimg_per_tick=4.0, snapshot_kimg=200.0),
    "128": _preset("128", 128, batch=32, gamma=0.1, total_kimg=25000.0, kimg_per_tick=4.0, snapshot_kimg=200.0),
    "256": _preset("256", 256, batch=32, gamma=1.0, total_kimg=25000.0, kimg_per_tick=4.0, snapshot_kimg=200.0),
}


# Fields that may differ between a run and its resumption: the length (a run may be extended) and how often it
# reports; none of them changes what a step computes.
RUNTIME_FIELDS = ("total_kimg", "kimg_per_tick", "snapshot_kimg")


def resolve_config(preset: str | None = None, resolution: int | None = None,
                   config_file: str | os.PathLike | None = None, **overrides) -> GanTrainConfig:
    """Start from a preset (default: the one named by the resolution), or from the config a run's config.json holds
    (`config_file`), and apply the non-None overrides.

    Raises GanprintError naming the field when the preset is unknown or disagrees with `resolution`.
    """
    base = read_config_file(config_file, GanTrainConfig) if config_file is not None else None
    if preset is None and base is None:
        if resolution is None:
            raise GanprintError("give `resolution` (32, 64, 128, 256) or `preset`")
        preset = str(resolution)
    cfg = apply_overrides(preset, PRESETS, "small", base, **overrides)
    if resolution is not None and resolution != cfg.resolution:
        raise GanprintError(f"`resolution` {resolution} disagrees with `preset` {preset} "
                            f"({cfg.resolution} px); drop one of them")
    try:
        return cfg.validate()
    except ValueError as e:
        raise GanprintError(f"invalid training options: {e}") from None
