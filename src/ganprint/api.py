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
from ganprint.artificial.embed import EmbedSpec
from ganprint.artificial.register import embed_registered
from ganprint.artificial.train import train_stega
from ganprint.core.artifacts import load_export, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.specs import spec_of_call
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
from ganprint.inference.generation import GenerateSpec
from ganprint.scalable import generate as scalable_generate
from ganprint.scalable.attribute import AttributeSpec
from ganprint.scalable.attribute import attribute_images as attribute
from ganprint.scalable.config import ScalableTrainConfig
from ganprint.scalable.config import resolve_config as _scalable_config
from ganprint.scalable.issue import issue_model as issue
from ganprint.scalable.train import train_scalable

__all__ = ["AttributeSpec", "DetectSpec", "EmbedSpec", "EvaluateSpec", "GenerateSpec", "attribute", "config",
           "detect", "embed", "evaluate", "generate", "issue", "load", "samples", "train"]

def embed(*args: Any, spec: EmbedSpec | None = None, registry: str | os.PathLike | None = None,
          name: str | None = None, **kwargs: Any) -> dict:
    """`ganprint.artificial.embed.embed`: an `EmbedSpec` or its fields (`model`, `data`, `outdir` also by
    position); with `registry` and `name`, an `identical` data set's fingerprint is then recorded in that registry
    (SQLite path or postgresql:// URL), so that `ganprint serve` detects it. Returns embed's summary, with the
    registry record under "registered"."""
    return embed_registered(spec_of_call(EmbedSpec, ("model", "data", "outdir"), args, spec, kwargs), registry, name)


def evaluate(*args: Any, spec: EvaluateSpec | None = None, **kwargs: Any) -> dict:
    """`ganprint evaluate`: the robustness report of an `EvaluateSpec`, given as one or as its fields (`model`,
    `data`, `outdir` also by position: `evaluate(model, data, outdir, fingerprint=...)`), or a spec with some fields
    replaced. Returns the report's eval.json as a dict."""
    return run_evaluate(spec_of_call(EvaluateSpec, ("model", "data", "outdir"), args, spec, kwargs))


def load(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None,
         device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict, dict[str, str]]:
    """Any ganprint export -> (module in eval mode, its config, the file's metadata). Never runs code."""
    return load_export(path, kind=kind, device=device)


_CONFIGS = {"artificial": _artificial_config, "gan": _gan_config, "scalable": _scalable_config,
            "diffusion": lambda preset=None, config_file=None, **kw: _diffusion_config(
                preset, kw.pop("resolution", None), config_file, **kw)}


TrainingConfig = TrainConfig | GanTrainConfig | ScalableTrainConfig | DiffusionTrainConfig


def config(system: str, preset: str | None = None, config_file: str | os.PathLike | None = None,
           **overrides: Any) -> TrainingConfig:
    """The typed training config of `system` (artificial, gan, scalable or diffusion): `preset`, or the config that
    a run's config.json holds (`config_file`, e.g. "runs/a/config.json"), with `overrides` applied, validated, as
    the command line resolves its preset, config file and flags; pass it to `train`."""
    if system not in _CONFIGS:
        raise GanprintError(f"config(): system must be one of {', '.join(_CONFIGS)}, got {system!r}")
    return _CONFIGS[system](preset, config_file=config_file, **overrides)


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


def generate(*args: Any, spec: GenerateSpec | None = None, **kwargs: Any) -> list[Path]:
    """Write one PNG per seed from any generator export: a `GenerateSpec` or its fields (`model`, `seeds`,
    `outdir` also by position), e.g. `generate(model, [0, 1], "out", trunc=0.7)`. Each kind refuses the fields
    of the others (`trunc` is for stylegan2-G, `fingerprint` and `identical_*` for scalable-G, `sampler` and
    `steps` for diffusion-unet)."""
    spec = spec_of_call(GenerateSpec, ("model", "seeds", "outdir"), args, spec, kwargs)
    kind = read_metadata(spec.model)["ganprint.kind"]
    if kind == diffusion_generate.EXPORT_KIND:
        return diffusion_generate.generate_images(spec)
    if kind.startswith("scalable"):
        return scalable_generate.generate(spec)
    return generate_images(spec)
