"""Configuration of fingerprint fine-tuning of a latent autoencoder's decoder (`ganprint train-latent-fingerprint`).

One typed dataclass and named presets. The modulation fields are those of `ganprint.latent.modulated.
ModulationConfig`; the rest say what is trained and with which losses. "lfp-smoke" is for tests (seconds on a
16-px autoencoder), "lfp-32" the 2-core CPU setting of the runs in
benchmarks/experiments/latent/RESULTS-latent.md (which could not yet settle its augmentation and modulation
choices), "lfp-64" and "lfp-256" the same recipe with the batches and lengths of a GPU.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass

from ganprint.core import bounds
from ganprint.core.bounds import Bound
from ganprint.core.errors import GanprintError
from ganprint.latent.modulated import LAYER_CHOICES, ModulationConfig
from ganprint.perturb.augment import build_augment
from ganprint.training.config import apply_overrides, check_bounds, read_config_file


@dataclass
class LatentFingerprintConfig:
    """Everything that decides what a `train-latent-fingerprint` run computes (defaults: the "lfp-32" preset)."""

    preset: str = "lfp-32"  # name of the preset this config started from
    # The modulation (ganprint.latent.modulated.ModulationConfig).
    # K bits: 64 is 8 bytes (faiss's fast path); 48 bits cannot tell 1M holders apart (RESULTS-latent.md)
    fingerprint_length: int = 64
    w_dim: int = 128
    mapping_layers: int = 2
    layers: str = "all"  # which decoder convolutions the fingerprint modulates: all, or up (the up blocks only)
    demodulate: bool = False
    style_gain: float = 0.1  # scale of the affine layers' initial weights
    # What is trained: the mapping + affine layers and the fingerprint decoder always; the autoencoder's decoder
    # weights too when `train_decoder` (at `decoder_lr`).
    train_decoder: bool = False
    kimg: float = 20.0  # thousands of training images decoded with a fingerprint
    batch_size: int = 32  # total over ranks
    lr: float = 1e-3  # Adam, the fingerprint decoder
    mapping_lr: float = 1e-2  # Adam, the mapping + affine layers (faster: they start far from a readable code)
    decoder_lr: float = 1e-4  # Adam, the autoencoder's decoder weights (with `train_decoder`)
    # The loss: bit_weight BCE(decoder(aug(x_c)), c) + img_weight MSE(x_c, x_0) + ssim_weight (1 - SSIM(x_c, x_0)).
    bit_weight: float = 1.0
    img_weight: float = 10.0  # lambda_img; images in [-1, 1]
    ssim_weight: float = 0.0  # kornia's SSIM (11-px window); 0 = off
    # The fingerprint gate: the image terms wait until the running training bit accuracy reaches `img_gate_acc`
    # (or `img_gate_kimg` passes), then ramp in linearly over `img_rampup_kimg`. From the start they pull the
    # styles back to 1 faster than the randomly initialised fingerprint decoder learns to read them (measured).
    img_gate_acc: float = 0.9
    img_gate_kimg: float = 12.0
    img_rampup_kimg: float = 2.0
    latent_noise: float = 0.0  # std of Gaussian noise added to the (scaled) latents, as a denoiser's are inexact
    # Robustness: the fingerprint decoder also reads a perturbed copy of every image (ganprint.perturb.augment spec),
    # strength ramped in over the first half of the run.
    augment: str | None = "jpeg,resize,crop,noise,blur"
    augment_skew: float = 1.0
    seed: int = 0  # every random draw is a function of (seed, rank, step)
    device: str = "auto"
    # Reporting: a stats.jsonl row per tick with the held-out figures (`eval_images` images kept out of training).
    tick_kimg: float = 1.0
    snapshot_kimg: float = 5.0  # both exports and a training state
    eval_images: int = 64

    def modulation(self) -> ModulationConfig:
        return ModulationConfig(fingerprint_length=self.fingerprint_length, w_dim=self.w_dim,
                                mapping_layers=self.mapping_layers, layers=self.layers, demodulate=self.demodulate,
                                style_gain=self.style_gain).validate()

    def validate(self) -> LatentFingerprintConfig:
        """Raise GanprintError naming the field for impossible values; returns self."""
        check_bounds(self, _BOUNDS)
        if self.layers not in LAYER_CHOICES:
            raise GanprintError(f"`layers` {self.layers!r} is unknown; choose one of {', '.join(LAYER_CHOICES)}")
        self.modulation()
        if self.augment:
            build_augment(self.augment, skew=self.augment_skew)  # a bad spec is refused before any write
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LatentFingerprintConfig:
        return cls(**d).validate()


_BOUNDS = {
    "fingerprint_length": bounds.BITS, "w_dim": Bound(1, 4096, integer=True),
    "mapping_layers": Bound(1, 16, integer=True), "style_gain": Bound(0, 10, lo_open=True),
    "kimg": bounds.KIMG_POS, "batch_size": bounds.BATCH, "lr": bounds.LR, "mapping_lr": bounds.LR,
    "decoder_lr": bounds.LR, "bit_weight": bounds.WEIGHT_POS, "img_weight": bounds.WEIGHT,
    "ssim_weight": bounds.WEIGHT, "img_rampup_kimg": bounds.KIMG, "img_gate_acc": bounds.GATE_ACC,
    "img_gate_kimg": bounds.KIMG,
    "latent_noise": Bound(0, 10), "augment_skew": bounds.SKEW, "seed": bounds.SEED,
    "tick_kimg": bounds.KIMG_POS, "snapshot_kimg": bounds.KIMG_POS, "eval_images": Bound(1, 100000, integer=True),
}

PRESETS: dict[str, LatentFingerprintConfig] = {
    # Tests: a few steps of batch 8 on a 16-px autoencoder; no augmentation (it needs more steps to pay off).
    "lfp-smoke": LatentFingerprintConfig(
        preset="lfp-smoke", fingerprint_length=16, w_dim=32, style_gain=0.3, kimg=0.4, batch_size=8, mapping_lr=3e-3,
        img_weight=1.0, img_gate_acc=0.6, img_gate_kimg=0.8, img_rampup_kimg=0.2, augment=None, tick_kimg=0.1,
        snapshot_kimg=0.2, eval_images=8),
    "lfp-32": LatentFingerprintConfig(),
    "lfp-64": LatentFingerprintConfig(preset="lfp-64", kimg=100.0, batch_size=32, tick_kimg=2.0, snapshot_kimg=10.0),
    "lfp-256": LatentFingerprintConfig(preset="lfp-256", kimg=200.0, batch_size=16, tick_kimg=2.0,
                                       snapshot_kimg=20.0, eval_images=32),
}

# Fields that may differ between a run and its resumption: its length, where it runs and how often it reports.
RUNTIME_FIELDS = ("kimg", "device", "tick_kimg", "snapshot_kimg")


def resolve_config(preset: str | None = None, config_file: str | os.PathLike | None = None,
                   **overrides) -> LatentFingerprintConfig:
    """The preset (default "lfp-32"), or the config a run's config.json holds (`config_file`), with every override
    that is not None applied, validated."""
    base = (read_config_file(config_file, LatentFingerprintConfig, ("data", "autoencoder"))
            if config_file is not None else None)
    name = preset or (base.preset if base is not None else "lfp-32")
    cfg = apply_overrides(preset if base is not None else name, PRESETS, "lfp-32", base, **overrides)
    try:
        return dataclasses.replace(cfg, preset=name).validate()
    except (TypeError, ValueError) as e:
        if isinstance(e, GanprintError):
            raise
        raise GanprintError(f"invalid training options: {e}") from None
