"""The autoencoder of a latent diffusion model: diffusers' `AutoencoderKL`, built from a typed config.

A latent diffusion model denoises in the autoencoder's latent space and its decoder makes the pixels; ganprint's
per-user fingerprints live in that decoder (`ganprint.latent.modulated`). `diffusers` is optional (the `diffusion`
extra) and imported only when a model is built. An export (kind "latent-autoencoder") holds
{"autoencoder": AutoencoderConfig fields}; a diffusers `save_pretrained` folder of an `AutoencoderKL` can be read as
a starting point (JSON and safetensors only, so nothing in the folder runs).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ganprint.core import bounds
from ganprint.core.artifacts import check_config_keys, register_kind
from ganprint.core.bounds import Bound, BoundError
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_input_json, sha256_file
from ganprint.diffusion.model import require_diffusers
from ganprint.training.config import check_bounds

EXPORT_KIND = "latent-autoencoder"
# An autoencoder whose decoder has a user's fingerprint folded into its weights (ganprint.latent's issuing): the same
# architecture and config, so it loads, encodes and decodes as a plain one does.
ISSUED_KIND = "latent-autoencoder-issued"
DECODER_KINDS = (EXPORT_KIND, ISSUED_KIND)
_WIDTH = Bound(1, 4096, integer=True)
WEIGHTS = "diffusion_pytorch_model.safetensors"


@dataclass
class AutoencoderConfig:
    resolution: int = 32  # image side in pixels
    channels: tuple[int, ...] = (32, 64, 64)  # width of each level; the latent side is resolution / 2^(levels-1)
    layers_per_block: int = 1  # residual blocks per encoder level (the decoder has one more, as in diffusers)
    latent_channels: int = 4
    norm_groups: int = 32  # GroupNorm groups; must divide every width
    mid_attention: bool = True  # self-attention in the middle blocks
    scaling_factor: float = 0.18215  # latents are multiplied by it before denoising (Stable Diffusion's value)

    @property
    def latent_resolution(self) -> int:
        return self.resolution // 2 ** (len(self.channels) - 1)

    def validate(self) -> AutoencoderConfig:
        check_bounds(self, {"resolution": bounds.RESOLUTION, "layers_per_block": Bound(1, 16, integer=True),
                            "latent_channels": Bound(1, 64, integer=True), "norm_groups": _WIDTH,
                            "scaling_factor": Bound(0, 100, lo_open=True)})
        if not self.channels or not all(_WIDTH.problem(c) is None for c in self.channels):
            raise BoundError(f"autoencoder.channels must be whole numbers in [1, 4096], got {self.channels!r}")
        if any(c % self.norm_groups for c in self.channels):
            raise BoundError(f"every autoencoder width {list(self.channels)} must be a multiple of norm_groups "
                             f"{self.norm_groups}")
        if self.resolution % 2 ** (len(self.channels) - 1):
            raise BoundError(f"resolution {self.resolution} is not divisible by 2^(levels-1) = "
                             f"{2 ** (len(self.channels) - 1)}; use fewer autoencoder.channels levels")
        return self

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict) -> AutoencoderConfig:
        d = dict(d)
        check_config_keys(cls, d)
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**d).validate()


def build_autoencoder(cfg: AutoencoderConfig) -> torch.nn.Module:
    """A freshly initialised `AutoencoderKL` of `cfg` (its weights follow torch's global RNG)."""
    cfg.validate()
    diffusers = require_diffusers()
    levels = len(cfg.channels)
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(cfg.channels),
        layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_groups,
        sample_size=cfg.resolution, scaling_factor=cfg.scaling_factor, mid_block_add_attention=cfg.mid_attention)


def export_config(cfg: AutoencoderConfig) -> dict:
    return {"autoencoder": cfg.to_dict()}


def parse_export_config(config: dict) -> AutoencoderConfig:
    try:
        return AutoencoderConfig.from_dict(config["autoencoder"])
    except (KeyError, TypeError, ValueError) as e:
        raise GanprintError(f"a {EXPORT_KIND} export has an unusable config: {e}") from None


@register_kind(EXPORT_KIND)
@register_kind(ISSUED_KIND)
def _build_from_export(config: dict) -> torch.nn.Module:
    return build_autoencoder(parse_export_config(config))


def encode(vae: torch.nn.Module, images: torch.Tensor, sample: bool = False,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Images [N, 3, R, R] in [-1, 1] -> scaled latents [N, C, r, r] (the posterior's mean unless `sample`)."""
    dist = vae.encode(images).latent_dist
    z = dist.sample(generator) if sample else dist.mean
    return z * vae.config.scaling_factor


def decode(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> images [N, 3, R, R] in ~[-1, 1] (not clamped)."""
    return vae.decode(latents / vae.config.scaling_factor).sample


# diffusers AutoencoderKL settings that ganprint's build fixes; a folder that sets another value is refused.
_FIXED = {"in_channels": 3, "out_channels": 3, "act_fn": "silu", "shift_factor": None, "latents_mean": None,
          "latents_std": None, "use_quant_conv": True, "use_post_quant_conv": True}


def read_diffusers_autoencoder(path: str | os.PathLike, name: str = "autoencoder"
                               ) -> tuple[AutoencoderConfig, torch.nn.Module]:
    """(config, model with its weights) of an `AutoencoderKL.save_pretrained` folder (or a pipeline's vae/)."""
    p = Path(path)
    if (p / "vae").is_dir():
        p = p / "vae"
    where = f"`{name}` {p}"
    raw = read_input_json(p / "config.json", f"`{name}`'s autoencoder config")
    if not isinstance(raw, dict) or raw.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        got = raw.get("_class_name") if isinstance(raw, dict) else type(raw).__name__
        raise GanprintError(f"{where}/config.json describes a {got}, not an AutoencoderKL; give the folder that "
                            "AutoencoderKL.save_pretrained wrote (or a pipeline folder with vae/)")
    for key, want in _FIXED.items():
        if key in raw and raw[key] != want:
            raise GanprintError(f"{where} sets `{key}` to {raw[key]!r}; ganprint builds {want!r}")
    for key in ("down_block_types", "up_block_types"):
        kinds = set(raw.get(key) or ())
        if kinds - {"DownEncoderBlock2D", "UpDecoderBlock2D"}:
            raise GanprintError(f"{where} sets `{key}` to {sorted(kinds)}; ganprint builds DownEncoderBlock2D / "
                                "UpDecoderBlock2D levels")
    size = raw.get("sample_size", 32)
    size = size[0] if isinstance(size, list) else size
    try:
        cfg = AutoencoderConfig(
            resolution=int(size), channels=tuple(raw.get("block_out_channels", (64,))),
            layers_per_block=int(raw.get("layers_per_block", 1)), latent_channels=int(raw.get("latent_channels", 4)),
            norm_groups=int(raw.get("norm_num_groups", 32)), mid_attention=bool(raw.get("mid_block_add_attention", True)),
            scaling_factor=float(raw.get("scaling_factor", 0.18215))).validate()
    except (TypeError, ValueError) as e:
        raise GanprintError(f"{where} describes an autoencoder ganprint cannot build: {e}") from None
    vae = build_autoencoder(cfg)
    weights = p / WEIGHTS
    if not weights.is_file():
        raise GanprintError(f"{where} has no {WEIGHTS} (weights only as a pickle are refused: loading one could run "
                            "code); save it again with safe_serialization=True")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise GanprintError(f"{weights} cannot be read: {e}") from None
    check_state_fits(vae, state, f"{weights}")
    vae.load_state_dict(state)
    return cfg, vae.eval()


def autoencoder_sha256(path: str | os.PathLike) -> str:
    """The digest a run records of its autoencoder: the export's sha256, or for a diffusers folder (or a pipeline's
    vae/) the sha256 of its config's and weights' digests, so that a retrained model at the same path is noticed."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    p = p / "vae" if (p / "vae").is_dir() else p
    parts = [sha256_file(f) if f.is_file() else "-" for f in (p / "config.json", p / WEIGHTS)]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()


def check_state_fits(model: torch.nn.Module, state: dict, where: str) -> None:
    """Refuse (GanprintError naming `where`) weights whose names or shapes are not the model's, or not finite:
    load_state_dict would raise a bare RuntimeError on a shape and take NaNs silently."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise GanprintError(f"{where} does not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, t in state.items():
        if tuple(t.shape) != tuple(own[name].shape):
            raise GanprintError(f"{where} does not fit its config: {name} is {tuple(t.shape)}, the config makes "
                                f"{tuple(own[name].shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise GanprintError(f"{where} holds non-finite weights ({name}); it is damaged: export it again")
