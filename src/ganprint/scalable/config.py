"""Configuration of scalable fingerprinting training (`ganprint train-scalable`): one typed dataclass and presets.

Presets set model widths and loss weights. "paper" follows config-e-Gskip-Dresnet and the released defaults;
"authors-celeba" is the authors' own CelebA run (consistency weight 0.2); "small" learns on 2 CPU
cores (narrow, shallow mapping with a faster learning-rate multiplier, no path-length term, batch 8, bit-loss
weight 10) and gates the consistency, latent and adversarial terms until the fingerprint is learned (measured in
benchmarks/experiments/scalable/RESULTS-scalable.md); "tiny" is for tests.
"""

from __future__ import annotations

import os

import dataclasses
from dataclasses import asdict, dataclass

from ganprint.core import bounds
from ganprint.core.bounds import Bound
from ganprint.core.errors import GanprintError
from ganprint.nets.scalable import ScalableConfig, parse_res_range
from ganprint.training.config import apply_overrides, check_bounds, read_config_file


@dataclass
class ScalableTrainConfig:
    """Everything that decides what a `ganprint train-scalable` run computes (defaults: the "small" preset)."""

    preset: str = "small"  # name of the preset this config started from
    data: str = ""  # image folder or packed data set
    resolution: int = 32  # image side, a power of two >= 8
    fingerprint_length: int = 128  # K, bits per fingerprint
    modulated_res: str = "4-128"  # resolutions whose convs the fingerprint modulates (A-B)
    kimg: float = 100.0  # total thousands of real images shown to D (summed over ranks)
    seed: int = 0  # every random draw is a function of (seed, rank, step)
    device: str = "auto"  # a run may resume on another device
    # Model.
    z_dim: int = 32
    w_dim: int = 128
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 1.0
    channel_base: int = 1024
    channel_max: int = 128
    # Optimisation and losses.
    batch_size: int = 8  # total over ranks
    lr: float = 0.002  # Adam, for G, the decoder E and D (before the lazy-regularisation correction)
    consistency_weight: float = 2.0  # ||G(z,c) - G(z,c')||^2
    latent_weight: float = 1.0  # ||z - E_z(G(z,c))||^2
    bit_weight: float = 10.0  # BCE(E_c(G(z,c)), c)
    r1_gamma: float = 1.0
    r1_interval: int = 16
    pl_weight: float = 0.0  # path length, taken wrt the fingerprint-derived styles; 0 = off
    pl_interval: int = 4
    ema_kimg: float = 1.0  # half-life of G_ema, ramped up over the first 5 % of images
    # The fingerprint gate: weight 0 until the running training bit accuracy reaches `consistency_gate_acc` (or
    # `consistency_gate_kimg` passes), then a linear ramp over `consistency_rampup_kimg`; the latent and adversarial
    # terms (and D's training) wait for the same gate when `gate_latent` / `gate_adversarial` are on.
    consistency_rampup_kimg: float = 10.0
    consistency_gate_acc: float = 0.9
    consistency_gate_kimg: float = 40.0
    gate_latent: bool = True
    gate_adversarial: bool = True
    # Reporting.
    tick_kimg: float = 0.5  # a stats.jsonl row
    snapshot_kimg: float = 5.0  # grids, exports and a training state
    metric_kimg: float = 2.0  # bit accuracy of G_ema on fresh fingerprints
    metric_images: int = 256
    # Immunized training (ganprint.perturb.augment spec, e.g. "jpegd,blur,noise,crop"): the decoder also reads a
    # perturbed copy of each generated image; strength ramps in with training progress.
    augment: str | None = None
    augment_skew: float = 1.0
    # The decoder reads each generated image as saved: clipped and rounded to 8 bits (straight-through gradient).
    quantize_read: bool = False

    def validate(self) -> ScalableTrainConfig:
        """Raise GanprintError naming the field for impossible values; returns self."""
        bounds.RESOLUTION.check(self.resolution, "`resolution`")
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise GanprintError(f"`resolution` must be a power of two >= 8 (8, 16, 32, ...), got {r}")
        check_bounds(self, _BOUNDS)
        self.model_config()  # checks `modulated_res` against the resolution
        return self

    def model_config(self) -> ScalableConfig:
        """The generator/decoder/discriminator architecture this config trains."""
        return ScalableConfig(resolution=self.resolution, fingerprint_length=self.fingerprint_length, z_dim=self.z_dim,
                              w_dim=self.w_dim, mapping_layers=self.mapping_layers,
                              mapping_lr_multiplier=self.mapping_lr_multiplier, channel_base=self.channel_base,
                              channel_max=self.channel_max,
                              modulated_res=parse_res_range(self.modulated_res, self.resolution)).validate()

    def to_dict(self) -> dict:
        return asdict(self)


_WIDTH = Bound(1, 4096, integer=True)  # latent sizes and channel counts
_BOUNDS = {
    "fingerprint_length": bounds.BITS, "kimg": bounds.KIMG_POS,
    "seed": bounds.SEED, "batch_size": bounds.BATCH, "lr": bounds.LR,
    "consistency_weight": bounds.WEIGHT, "latent_weight": bounds.WEIGHT,
    "bit_weight": bounds.WEIGHT, "r1_gamma": bounds.WEIGHT, "pl_weight": bounds.WEIGHT,
    "r1_interval": bounds.STEPS, "pl_interval": bounds.STEPS, "ema_kimg": bounds.KIMG,
    "consistency_rampup_kimg": bounds.KIMG,
    "consistency_gate_acc": bounds.GATE_ACC, "consistency_gate_kimg": bounds.KIMG,
    "tick_kimg": bounds.KIMG_POS, "snapshot_kimg": bounds.KIMG_POS,
    "metric_kimg": bounds.KIMG_POS, "metric_images": bounds.IMAGES,
    "augment_skew": bounds.SKEW, "z_dim": _WIDTH, "w_dim": _WIDTH,
    "mapping_layers": Bound(1, 64, integer=True), "mapping_lr_multiplier": bounds.LR,
    "channel_base": Bound(1, 1 << 20, integer=True), "channel_max": _WIDTH,
}

_PAPER = ScalableTrainConfig(
    preset="paper", z_dim=512, w_dim=512, mapping_layers=8, mapping_lr_multiplier=0.01, channel_base=16384,
    channel_max=512, batch_size=16, bit_weight=2.0, r1_gamma=100.0, pl_weight=2.0, ema_kimg=10.0,
    consistency_rampup_kimg=0.0, consistency_gate_acc=0.0, consistency_gate_kimg=0.0, gate_latent=False,
    gate_adversarial=False, tick_kimg=4.0, snapshot_kimg=120.0, metric_kimg=120.0, metric_images=2000)

PRESETS: dict[str, ScalableTrainConfig] = {
    "paper": _PAPER,
    "authors-celeba": dataclasses.replace(_PAPER, preset="authors-celeba", consistency_weight=0.2),
    "small": ScalableTrainConfig(),
    "tiny": ScalableTrainConfig(
        preset="tiny", z_dim=16, w_dim=32, mapping_layers=2, mapping_lr_multiplier=0.1, channel_base=128,
        channel_max=16, batch_size=4, bit_weight=2.0, r1_gamma=1.0, r1_interval=2, pl_weight=2.0, pl_interval=2,
        ema_kimg=0.01, consistency_rampup_kimg=0.008, consistency_gate_acc=0.0, consistency_gate_kimg=0.0,
        gate_latent=False, gate_adversarial=False, tick_kimg=0.008, snapshot_kimg=0.016, metric_kimg=0.016,
        metric_images=8),
}

# Fields that may differ between a run and its resumption: the length (a run may be extended), the device and how
# often it reports; none of them changes what a step computes.
RUNTIME_FIELDS = ("kimg", "device", "tick_kimg", "snapshot_kimg", "metric_kimg", "metric_images")


def resolve_config(preset: str | None = None, config_file: str | os.PathLike | None = None,
                   **overrides) -> ScalableTrainConfig:
    """The preset (default "small"), or the config a run's config.json holds (`config_file`), with every override
    that is not None applied, validated."""
    base = read_config_file(config_file, ScalableTrainConfig) if config_file is not None else None
    name = preset or (base.preset if base is not None else "small")
    cfg = apply_overrides(preset if base is not None else name, PRESETS, "small", base, **overrides)
    return dataclasses.replace(cfg, preset=name).validate()
