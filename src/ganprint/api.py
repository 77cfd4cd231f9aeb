"""The public API: one call per thing ganprint does, whatever the kind of model (re-exported by `ganprint`).

Each function dispatches to the package that implements it; this is the one module that knows them all, so
that the packages below stay independent of each other.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ganprint.artificial.config import TrainConfig
from ganprint.artificial.config import resolve_config as _artificial_config
from ganprint.artificial.detect import DetectSpec
from ganprint.artificial.detect import detect as _detect
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
from ganprint.latent import generate as latent_generate  # also registers the latent-diffusion kind for load()
from ganprint.evaluation.evaluate import EvaluateSpec, run_evaluate
from ganprint.gan.config import GanTrainConfig
from ganprint.gan.config import resolve_config as _gan_config
from ganprint.gan.generate import generate_images
from ganprint.gan.train import train_gan
from ganprint.inference.generation import GenerateSpec
from ganprint.latent.issue import issue_latent_model
from ganprint.provenance.c2pa import C2paSigning, check_issued_in, check_signing, sign_images
from ganprint.registry.backends import registry_file
from ganprint.scalable import generate as scalable_generate
from ganprint.scalable.attribute import AttributeSpec
from ganprint.scalable.attribute import attribute_images
from ganprint.scalable.config import ScalableTrainConfig
from ganprint.scalable.config import resolve_config as _scalable_config
from ganprint.scalable.issue import issue_model
from ganprint.scalable.train import G_EXPORT, train_scalable

__all__ = ["AttributeSpec", "DetectSpec", "EmbedSpec", "EvaluateSpec", "GenerateSpec", "attribute", "config",
           "detect", "embed", "evaluate", "generate", "issue", "load", "samples", "train"]

# Old keyword names of the API, as the CLI keeps its old flags (cli.vocabulary.ALIASES): they work for one release
# with a DeprecationWarning naming the new one.
_OLD_NAMES: dict[str, dict[str, str]] = {
    "attribute": {"decoder": "model", "input": "data"},
    "detect": {"num_workers": "workers"},
    "embed": {"num_workers": "workers"},
    "generate": {"psi": "trunc"},
    "issue": {"model_path": "model", "registry_path": "registry", "outdir": "models_dir"},
}


def _renamed(function: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with the old names of `function`'s arguments written as the new ones, each with a warning."""
    out = dict(kwargs)
    for old, new in _OLD_NAMES.get(function, {}).items():
        if old not in out:
            continue
        if new in out:
            raise GanprintError(f"{function}(): `{old}` is the old name of `{new}`; give `{new}` only")
        warnings.warn(f"{function}(): `{old}` is the old name of `{new}`; it still works in this release, use "
                      f"`{new}`", DeprecationWarning, stacklevel=3)
        out[new] = out.pop(old)
    return out


def embed(*args: Any, spec: EmbedSpec | None = None, registry: str | os.PathLike | None = None,
          name: str | None = None, **kwargs: Any) -> dict:
    """`ganprint.artificial.embed.embed`: an `EmbedSpec` or its fields (`model`, `data`, `outdir` also by
    position); with `registry` and `name`, an `identical` data set's fingerprint is then recorded in that registry
    (SQLite path or postgresql:// URL), so that `ganprint serve` detects it. Returns embed's summary, with the
    registry record under "registered"."""
    kwargs = _renamed("embed", kwargs)
    return embed_registered(spec_of_call(EmbedSpec, ("model", "data", "outdir"), args, spec, kwargs), registry, name)


def detect(*args: Any, spec: DetectSpec | None = None, **kwargs: Any) -> dict:
    """`ganprint detect`: a `DetectSpec` or its fields (`model`, `data`, `outdir` also by position), e.g.
    `detect(model, "gen/", "det/", fingerprint="0x...", fpr=1e-6)`. Returns the summary (summary.json)."""
    return _detect(*args, spec=spec, **_renamed("detect", kwargs))


def attribute(*args: Any, spec: AttributeSpec | None = None, **kwargs: Any) -> dict:
    """`ganprint attribute`: an `AttributeSpec` or its fields (`model`, `registry`, `data`, `outdir` also by
    position). Returns the summary (summary.json); the rows go to `outdir`/attributions.jsonl."""
    return attribute_images(*args, spec=spec, **_renamed("attribute", kwargs))


def issue(*args: Any, **kwargs: Any) -> dict:
    """`ganprint issue`: issue one fingerprint from `registry` and write its folded model into `models_dir`;
    `model` (a scalable-G export: a StyleGAN2 generator; or a latent-modulated export: a latent diffusion
    autoencoder, whose issued copy is a plain autoencoder), `registry`, `models_dir` also by position, then
    `fingerprint`, `who`, `notes`, `min_distance`, `device`. Returns the registry row (`fp_id`, `bits_hex`, `who`,
    ...; `issued_path`: the model's file)."""
    kwargs = _renamed("issue", kwargs)
    names = ("model", "registry", "models_dir")
    if len(args) > len(names):
        raise GanprintError(f"issue() takes at most {len(names)} arguments by position ({', '.join(names)})")
    kwargs.update(zip(names, args))
    missing = [f"`{n}`" for n in names if kwargs.get(n) is None]
    if missing:
        raise GanprintError(f"issue() needs {', '.join(missing)}")
    model = kwargs.pop("model")
    kind = read_metadata(model).get("ganprint.kind")
    if kind not in _ISSUERS:
        raise GanprintError(f"`model` {model} holds a '{kind}' model; issuing needs a shared {' or a '.join(_ISSUERS)} "
                            "export")
    return _ISSUERS[kind](model, kwargs.pop("registry"), kwargs.pop("models_dir"), **kwargs)


# The shared models `issue` folds a fingerprint into, by export kind.
_ISSUERS = {"scalable-G": issue_model, "latent-modulated": issue_latent_model}


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
            "diffusion": lambda preset=None, resolution=None, config_file=None, **kw: _diffusion_config(
                preset, resolution, config_file, **kw)}


TrainingConfig = TrainConfig | GanTrainConfig | ScalableTrainConfig | DiffusionTrainConfig


def config(system: str, preset: str | None = None, config_file: str | os.PathLike | None = None,
           **overrides: Any) -> TrainingConfig:
    """The typed training config of `system` (artificial, gan, scalable or diffusion): `preset`, or the config that
    a run's config.json holds (`config_file`, e.g. "runs/a/config.json"), with `overrides` applied, validated, as
    the command line resolves its preset, config file and flags; pass it to `train`."""
    if system not in _CONFIGS:
        raise GanprintError(f"config(): system must be one of {', '.join(_CONFIGS)}, got {system!r}")
    return _CONFIGS[system](preset, config_file=config_file, **overrides)


def train(config: TrainingConfig, outdir: str | os.PathLike, **kwargs: Any) -> Path:
    """Train the model that `config` describes into `outdir` (re-running the same call resumes) and return the
    path of the export to use next, whatever the system: `model.safetensors` (artificial: encoder and decoder),
    `network-final.safetensors` (gan, diffusion) or `scalable-G.safetensors` (scalable; its decoder
    `scalable-decoder.safetensors` lies beside it).

    Every trainer takes `data` (a path or a Dataset; default: the config's), `device` and `checkpoint_minutes`;
    the others are the trainer's own (see train_stega, train_gan, train_scalable, train_diffusion).
    """
    if isinstance(config, TrainConfig):
        return Path(train_stega(config, outdir, **kwargs))
    if isinstance(config, GanTrainConfig):
        train_gan(config, outdir, **kwargs)
        return Path(outdir) / "network-final.safetensors"
    if isinstance(config, ScalableTrainConfig):
        train_scalable(config, outdir, **kwargs)
        return Path(outdir) / G_EXPORT
    if isinstance(config, DiffusionTrainConfig):
        train_diffusion(config, outdir, **kwargs)
        return Path(outdir) / "network-final.safetensors"
    raise GanprintError(f"train() takes a config from ganprint.config(...), got {type(config)}")


def generate(*args: Any, spec: GenerateSpec | None = None, **kwargs: Any) -> list[Path]:
    """Write one PNG per seed from any generator export: a `GenerateSpec` or its fields (`model`, `seeds`,
    `outdir` also by position), e.g. `generate(model, [0, 1], "out", trunc=0.7)`. Each kind refuses the fields
    of the others (`trunc` is for stylegan2-G, `fingerprint` and `identical_*` for scalable-G, `sampler` and
    `steps` for diffusion-unet and latent-diffusion, `decoder` for latent-diffusion)."""
    spec = spec_of_call(GenerateSpec, ("model", "seeds", "outdir"), args, spec, _renamed("generate", kwargs))
    kind = read_metadata(spec.model)["ganprint.kind"]
    if kind == diffusion_generate.EXPORT_KIND:
        return diffusion_generate.generate_images(spec)
    if kind == latent_generate.EXPORT_KIND:
        return latent_generate.generate_images(spec)
    if kind.startswith("scalable"):
        return scalable_generate.generate(spec)
    return generate_images(spec)


def generate_and_sign(spec: GenerateSpec, registry: str | os.PathLike | None = None,
                      signing: C2paSigning | None = None) -> list[Path]:
    """`generate`, then with `signing` a C2PA-signed copy of every image in `signing.outdir` (the model must be an
    issued one of `registry`; as `ganprint sign-c2pa`). Everything signing needs is checked before generating."""
    if signing is None:
        if registry is not None:
            raise GanprintError("`registry` is used only to sign copies of the images: give `c2pa_outdir`, "
                                "`c2pa_cert` and `c2pa_key` with it, or leave it out")
        return generate(spec=spec)
    if spec.decoder is not None:
        raise GanprintError("the images of a latent model with an issued `decoder` cannot be signed yet (only "
                            "those of an issued scalable-G); generate them without the C2PA options")
    if registry is None:
        raise GanprintError("signing generated images needs `registry`: the registry of the issued model, which "
                            "names its holder and keeps the manifests for `ganprint serve`")
    meta = read_metadata(spec.model)
    if meta["ganprint.kind"] != "scalable-G-issued":
        raise GanprintError(f"`model` {spec.model} is not an issued model (scalable-G-issued): only an issued "
                            "model's images carry a registered fingerprint to sign")
    check_signing(signing, [("`outdir`", spec.outdir, "folder of generated images"),
                            ("`model`", spec.model, "model"), ("`registry`", registry_file(registry), "registry")])
    check_issued_in(meta, spec.model, registry)
    paths = generate(spec=spec)
    sign_images(spec.outdir, signing.outdir, registry, signing.cert, signing.key, signing_alg=signing.signing_alg)
    return paths
