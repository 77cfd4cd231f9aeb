"""The public API: one call per thing ganprint does, whatever the kind of model (re-exported by `ganprint`).

Each function dispatches to the package that implements it; this is the one module that knows them all, so
that the packages below stay independent of each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ganprint.artificial.config import TrainConfig
from ganprint.artificial.config import resolve_config as _artificial_config
from ganprint.artificial.detect import DetectSpec, detect
from ganprint.artificial.register import embed_registered
from ganprint.artificial.train import train_stega
from ganprint.core import bounds
from ganprint.core.artifacts import load_export, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.seeds import check_seed_list
from ganprint.data.samples import write_samples as samples
from ganprint.diffusion import generate as diffusion_generate  # also registers the diffusion-unet kind for load()
from ganprint.diffusion.config import DiffusionTrainConfig
from ganprint.diffusion.config import resolve_config as _diffusion_config
from ganprint.diffusion.train import train_diffusion
from ganprint.evaluation.evaluate import EvaluateSpec, run_evaluate
from ganprint.gan.config import GanTrainConfig
from ganprint.gan.config import resolve_config as _gan_config
from ganprint.gan.generate import generate_images
from ganprint.gan.train import train_gan
from ganprint.scalable import generate as scalable_generate
from ganprint.scalable.attribute import AttributeSpec
from ganprint.scalable.attribute import attribute_images as attribute
from ganprint.scalable.config import ScalableTrainConfig
from ganprint.scalable.config import resolve_config as _scalable_config
from ganprint.scalable.issue import issue_model as issue
from ganprint.scalable.train import train_scalable

__all__ = ["AttributeSpec", "DetectSpec", "attribute", "config", "detect", "embed", "evaluate", "generate", "issue", "load",
           "samples", "train"]

_SCALABLE_ONLY = ("fingerprint", "identical_latent", "identical_fingerprint")


def embed(model: str | os.PathLike, data: str | os.PathLike, outdir: str | os.PathLike,
          registry: str | os.PathLike | None = None, name: str | None = None, **kwargs: Any) -> dict:
    """`ganprint.artificial.embed.embed` (same arguments); with `registry` and `name`, an `identical` data set's
    fingerprint is then recorded in that registry (`ganprint.artificial.register`), so that `ganprint serve`
    detects it. Returns embed's summary, with the registry record under "registered"."""
    return embed_registered(model, data, outdir, registry, name, **kwargs)


def evaluate(spec: EvaluateSpec | None = None, **kwargs: Any) -> dict:
    """`ganprint evaluate`: the robustness report of an `EvaluateSpec`, given as one or as its fields
    (`evaluate(model=..., data=..., outdir=..., fingerprint=...)`), or a spec with some fields replaced. Returns
    the report's eval.json as a dict."""
    return run_evaluate(EvaluateSpec.of(spec, **kwargs))


def load(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None,
         device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict, dict[str, str]]:
    """Any ganprint export -> (module in eval mode, its config, the file's metadata). Never runs code."""
    return load_export(path, kind=kind, device=device)


_CONFIGS = {"artificial": _artificial_config, "gan": _gan_config, "scalable": _scalable_config,
            "diffusion": lambda preset=None, **kw: _diffusion_config(preset, kw.pop("resolution", None), **kw)}


TrainingConfig = TrainConfig | GanTrainConfig | ScalableTrainConfig | DiffusionTrainConfig


def config(system: str, preset: str | None = None, **overrides: Any) -> TrainingConfig:
    """The typed training config of `system` (artificial, gan, scalable or diffusion): `preset` with `overrides`
    applied, validated, as the CLI's `--preset` and flags resolve it; pass it to `train`."""
    if system not in _CONFIGS:
        raise GanprintError(f"config(): system must be one of {', '.join(_CONFIGS)}, got {system!r}")
    return _CONFIGS[system](preset, **overrides)


def train(config: TrainingConfig, outdir: str | os.PathLike,
          **kwargs: Any) -> Any:
    """Train the model that `config` describes into `outdir` (re-running the same call resumes).

    Every trainer takes `data` (a path or a Dataset; default: the config's), `device` and `checkpoint_minutes`;
    the others are the trainer's own (see train_stega, train_gan, train_scalable).
    """
    if isinstance(config, TrainConfig):
        return train_stega(config, outdir, **kwargs)
    if isinstance(config, GanTrainConfig):
        return train_gan(config, outdir, **kwargs)
    if isinstance(config, ScalableTrainConfig):
        return train_scalable(config, outdir, **kwargs)
    if isinstance(config, DiffusionTrainConfig):
        return train_diffusion(config, outdir, **kwargs)
    raise GanprintError(f"train() takes a config from ganprint.config(...), got {type(config)}")


def generate(model: str | os.PathLike, seeds: list[int], outdir: str | os.PathLike, batch_size: int = 16,
             grid: bool = False, device: str = "auto", psi: float = 1.0, precision: str = "float64",
             sampler: str | None = None, steps: int | None = None, **scalable: Any) -> list[Path]:
    """Write one PNG per seed from any generator export; `scalable` takes the flags of scalable generators
    (fingerprint, identical_latent, identical_fingerprint); `sampler` (ddim, ddpm, dpm; default ddim) and `steps`
    (default 50) are for diffusion-unet models."""
    bounds.BATCH.check(batch_size, "--batch-size")
    bounds.TRUNCATION.check(psi, "--trunc")
    seeds = check_seed_list(seeds)
    if not seeds:
        raise GanprintError("--seeds selects no seeds")
    unknown = set(scalable) - set(_SCALABLE_ONLY)
    if unknown:
        raise TypeError(f"generate() got unexpected arguments {sorted(unknown)}")
    kind = read_metadata(model)["ganprint.kind"]
    if kind == diffusion_generate.EXPORT_KIND:
        used = ["--" + k.replace("_", "-") for k, v in scalable.items() if v] + (["--trunc"] if psi != 1 else [])
        if used:
            raise GanprintError(f"{model} is a diffusion model: drop {', '.join(used)} (GAN-only flags)")
        return diffusion_generate.generate_images(model, seeds, outdir, batch_size=batch_size, grid=grid,
                                                  device=device, sampler=sampler or "ddim", steps=steps or 50,
                                                  precision=precision)
    if sampler is not None or steps is not None:
        raise GanprintError(f"--sampler and --steps are for diffusion models; {model} is a '{kind}' generator: "
                            "drop them")
    if kind.startswith("scalable"):
        if psi != 1:
            raise GanprintError(f"--trunc applies to stylegan2-G generators; {model} is '{kind}': drop --trunc")
        return scalable_generate.generate(model, seeds, outdir, batch_size, grid, device=device, **scalable)
    used = ["--" + k.replace("_", "-") for k, v in scalable.items() if v]
    if used:
        raise GanprintError(f"{model} is a '{kind}' generator, which takes no fingerprint: drop "
                            f"{', '.join(used)} (those flags are for scalable-G models)")
    return generate_images(model, seeds, outdir, batch_size=batch_size, grid=grid, device=device, psi=psi,
                           precision=precision)
