"""Training configuration of the fingerprint autoencoder (`ganprint train`): one typed dataclass plus named presets.

Fields are plain JSON types so that `config.json` round-trips losslessly; overrides replace a preset's value only
when given (`resolve_config`).
"""

from __future__ import annotations

import os

import dataclasses
from dataclasses import asdict, dataclass

from ganprint.core import bounds
from ganprint.core.bounds import optional
from ganprint.core.errors import GanprintError
from ganprint.training.config import apply_overrides, check_bounds, read_config_file


class ConfigError(GanprintError):
    """A training configuration that cannot be used (bad flag value or combination)."""


@dataclass
class TrainConfig:
    """Everything that decides what a `ganprint train` run computes, plus the device it runs on."""

    data: str = ""  # image folder / archive; "" when a dataset object is passed to train_stega()
    resolution: int = 32  # image side in pixels; a power of two >= 16
    celeba: bool = False  # the original CelebA preprocessing (CenterCrop 148 -> Resize 128)
    fingerprint_length: int = 100  # K, bits per fingerprint
    batch_size: int = 64  # images per step, summed over all ranks
    epochs: int = 20  # passes over the data; ignored when `steps` is set
    steps: int | None = None  # total optimiser steps; None = derived from `epochs` and the data size
    lr: float = 1e-4  # Adam learning rate
    lr_warmup: int = 0  # steps of linear lr warm-up from 0 (0 = none)
    # "constant" (the original), or "cosine": the lr anneals to `lr_min_ratio` x lr over the main phase, and again
    # over the decoder polish, which restarts at `lr` (annealing sharpens both bits and PSNR at the end of a phase).
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.05
    # Image-loss (L2) schedule. "gated" is the original's: weight 0 until a batch bit accuracy first exceeds
    # `l2_threshold`, then 0 for `l2_await` steps, then a linear ramp over `l2_ramp` steps to `l2_weight`.
    # "psnr" is ours: the same gate, then the weight is steered so that the batch PSNR holds `target_psnr`
    # while the batch bit accuracy stays above `psnr_acc_floor` (a multiplicative controller on the
    # log-weight; `l2_weight` is its starting value).
    l2_schedule: str = "gated"  # "gated" | "psnr"
    l2_threshold: float = 0.9  # batch bit accuracy that switches the image loss on
    l2_await: int = 1000  # steps between the switch and the start of the ramp ("gated")
    l2_ramp: int = 3000  # ramp length in steps ("gated")
    l2_weight: float = 10.0  # final weight ("gated") or starting weight ("psnr")
    target_psnr: float = 33.0  # dB held by the "psnr" schedule
    psnr_acc_floor: float = 0.98  # "psnr": below this batch bit accuracy the weight falls (bits come first)
    psnr_rate: float = 0.002  # "psnr": log-weight change per step and dB of PSNR error
    bce_weight: float = 1.0  # weight of the bit loss (BCE with logits)
    init: str = "torch"  # "torch" (PyTorch default, as the original) | "he" (He-normal, zero biases)
    identity_warmup: int = 0  # steps training the encoder alone to reproduce its input image (0 = none)
    decoder_polish: int = 0  # final steps training the decoder alone on 8-bit-rounded fingerprinted images (0 = none)
    amp: bool = False  # mixed precision: bf16 autocast on CPU; on CUDA bf16 (or fp16 + loss scaling)
    augment: str | None = None  # ganprint.perturb.augment spec applied to fingerprinted images before the decoder
    augment_skew: float = 1.0  # augmentation strength u = U(0,1) ** (1/skew): >1 trains more near the maxima
    seed: int = 0  # every random draw is a function of (seed, rank, step)
    device: str = "auto"  # "auto" | "cpu" | "cuda"; a run may resume on another device (not compared)

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the field for impossible values; returns self."""
        bounds.RESOLUTION.check(self.resolution, "`resolution`")
        r = self.resolution
        if r < 16 or r & (r - 1):
            raise ConfigError(f"`resolution` must be a power of two >= 16 (16, 32, 64, 128, 256), got {r}")
        if self.celeba and r != 128:
            raise ConfigError(f"`celeba` preprocessing produces 128 px images; use `resolution` 128 (got {r})")
        check_bounds(self, _BOUNDS)
        checks = [
            ("`l2_schedule`", self.l2_schedule in ("gated", "psnr"), "must be 'gated' or 'psnr'"),
            ("`init`", self.init in ("torch", "he"), "must be 'torch' or 'he'"),
            ("`lr_schedule`", self.lr_schedule in ("constant", "cosine"), "must be 'constant' or 'cosine'"),
            ("`device`", self.device in ("auto", "cpu", "cuda"), "must be auto, cpu or cuda"),
        ]
        for flag, ok, what in checks:
            if not ok:
                raise ConfigError(f"{flag} {what}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# The numeric fields and their bounds (ganprint.core.bounds; the CLI's flags check the same ones).
_BOUNDS = {
    "fingerprint_length": bounds.BITS, "batch_size": bounds.BATCH,
    "epochs": bounds.STEPS, "steps": optional(bounds.STEPS), "lr": bounds.LR,
    "lr_warmup": bounds.STEPS0, "lr_min_ratio": bounds.FRACTION,
    "l2_threshold": bounds.FRACTION, "l2_await": bounds.STEPS0,
    "l2_ramp": bounds.STEPS0, "l2_weight": bounds.WEIGHT,
    "target_psnr": bounds.PSNR, "psnr_acc_floor": bounds.FRACTION,
    "psnr_rate": bounds.RATE, "bce_weight": bounds.WEIGHT_POS,
    "identity_warmup": bounds.STEPS0, "decoder_polish": bounds.STEPS0,
    "augment_skew": bounds.SKEW, "seed": bounds.SEED,
}


# Named presets. `agf-original` reproduces the original train.py (PyTorch default init, accuracy-gated L2 ramp).
# `default` keeps the original's flags and defaults but adds the convergence fixes (measured in
# benchmarks/experiments/stega-training/RESULTS-train.md): He init (the default init starves the bit gradient) and,
# once the bits are learned, an L2 weight steered to a target PSNR instead of a fixed ramp. `demo-32` is the demo's
# fast setting.
PRESETS: dict[str, TrainConfig] = {
    "agf-original": TrainConfig(),
    "default": TrainConfig(init="he", l2_schedule="psnr", l2_await=0, l2_weight=1.0),
    "demo-32": TrainConfig(resolution=32, fingerprint_length=64, batch_size=64, steps=2800, lr=5e-4, lr_warmup=200,
                           init="he", l2_schedule="psnr", l2_await=0, l2_weight=1.0, amp=True, target_psnr=31.5,
                           psnr_acc_floor=0.98, psnr_rate=0.003, decoder_polish=400),
}
# `robust-32`: demo-32 immunized against image edits (JPEG, blur, noise, crop, resize, colour). Strengths are skewed
# toward the maxima, JPEG is `jpegd` (real codec forward, differentiable-JPEG gradient), and training is longer,
# since the decoder must also learn to read perturbed copies (measured in
# benchmarks/experiments/robustness/RESULTS-eval.md).
PRESETS["robust-32"] = dataclasses.replace(PRESETS["demo-32"], steps=12000, target_psnr=31.0, augment_skew=2.0,
                                           augment="jpegd:40,blur:1.5,noise:0.08,crop:0.7,resize:0.5,color:0.3")


# Fields that may differ between a run and its resumption (the step count is not one: the lr schedule and the
# decoder polish depend on it).
RUNTIME_FIELDS = ("device",)


def resolve_config(preset: str | None = None, config_file: str | os.PathLike | None = None,
                   **overrides) -> TrainConfig:
    """The preset (default: "default"), or the config a run's config.json holds (`config_file`), with every
    override that is not None applied, validated."""
    base = read_config_file(config_file, TrainConfig) if config_file is not None else None
    cfg = apply_overrides(preset, PRESETS, "default", base, **overrides)
    if overrides.get("epochs") is not None and overrides.get("steps") is None:
        cfg = dataclasses.replace(cfg, steps=None)  # an explicit `epochs` wins over a preset's step count
    return cfg.validate()
