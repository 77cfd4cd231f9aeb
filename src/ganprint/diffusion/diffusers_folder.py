"""diffusers folders in and out: fine-tune a released `UNet2DModel`, hand a trained one back in diffusers' layout.

In: a folder written by diffusers' `save_pretrained`, either a UNet's (config.json and
diffusion_pytorch_model.safetensors) or a pipeline's (model_index.json, unet/, scheduler/). Only JSON and
safetensors are read, so nothing in the folder runs: a UNet whose weights come only as a pickle (.bin) is refused.
The UNet's config becomes a `UNetConfig`; ganprint rebuilds the model from it and refuses a config it would not
rebuild the same (another block type, class conditioning, another activation...), naming the key.

Out: `export_diffusers` writes a `DDPMPipeline` folder (model_index.json, unet/, scheduler/) and a model card,
README.md, that names the fingerprint's length, the decoder's sha256 and the detection threshold.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ganprint.core.artifacts import read_config, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.files import read_input_json, sha256_file
from ganprint.core.paths import check_overlap
from ganprint.core.stats import p_value, usable_threshold
from ganprint.diffusion.config import NoiseConfig, UNetConfig
from ganprint.diffusion.generate import load_diffusion
from ganprint.diffusion.model import build_unet, require_diffusers
from ganprint.inference.decoders import STEGA_KINDS
from ganprint.nets.scalable import fingerprint_length_of

log = logging.getLogger(__name__)

UNET_CONFIG = "config.json"
UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler_config.json"
MODEL_INDEX = "model_index.json"
CARD = "README.md"
_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}  # the down blocks ganprint builds -> attention
_PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclasses.dataclass(frozen=True)
class DiffusersFolder:
    """Where a diffusers folder keeps its UNet and (for a pipeline) its scheduler."""

    unet_dir: Path
    scheduler_dir: Path | None


def locate(path: str | os.PathLike, name: str = "resume_from") -> DiffusersFolder:
    """The UNet (and scheduler) folders of `path`: a pipeline folder or a UNet's own `save_pretrained` folder."""
    p, where = Path(path), f"`{name}` {path}"
    if not p.is_dir():
        raise GanprintError(f"{where} is not a folder; give a diffusers save_pretrained folder")
    if (p / MODEL_INDEX).is_file() or (p / "unet").is_dir():
        index = read_input_json(p / MODEL_INDEX, f"{where}'s pipeline index") if (p / MODEL_INDEX).is_file() else {}
        entry = index.get("unet") if isinstance(index, dict) else None
        if index and entry != ["diffusers", "UNet2DModel"]:
            raise GanprintError(f"{where} is a pipeline whose `unet` is {entry!r}; ganprint fine-tunes pipelines of "
                                "a pixel-space UNet2DModel (DDPMPipeline, DDIMPipeline)")
        if not (p / "unet").is_dir():
            raise GanprintError(f"{where} is a pipeline folder without its unet/ subfolder; give a complete one")
        sched = p / "scheduler"
        return DiffusersFolder(p / "unet", sched if (sched / SCHEDULER_CONFIG).is_file() else None)
    if (p / SCHEDULER_CONFIG).is_file():
        raise GanprintError(f"{where} is a scheduler folder; give the pipeline folder that holds it, or its unet/")
    if not (p / UNET_CONFIG).is_file():
        raise GanprintError(f"{where} holds no {UNET_CONFIG}; give a folder written by UNet2DModel.save_pretrained "
                            "(or by a pipeline's save_pretrained)")
    return DiffusersFolder(p, None)


def _signature_defaults() -> dict:
    init = inspect.signature(require_diffusers().UNet2DModel.__init__).parameters
    return {k: p.default for k, p in init.items() if k != "self" and p.default is not inspect.Parameter.empty}


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _unet_config(cfg: dict, where: str) -> UNetConfig:
    """The `UNetConfig` of a diffusers UNet2DModel config (missing keys at diffusers' defaults)."""
    size = cfg["sample_size"]
    if isinstance(size, list) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int):
        raise GanprintError(f"{where} sets `sample_size` {size!r}; ganprint trains square images of a whole number "
                            "of pixels")
    down = list(cfg["down_block_types"] or ())
    if any(b not in _DOWN for b in down):
        raise GanprintError(f"{where} sets `down_block_types` {down}; ganprint builds DownBlock2D and AttnDownBlock2D "
                            "levels only")
    try:
        return UNetConfig(
            resolution=size, channels=tuple(cfg["block_out_channels"]), attention=tuple(_DOWN[b] for b in down),
            layers_per_block=cfg["layers_per_block"], dropout=cfg["dropout"], norm_groups=cfg["norm_num_groups"],
            head_dim=cfg["attention_head_dim"], flip_sin_to_cos=cfg["flip_sin_to_cos"], freq_shift=cfg["freq_shift"],
            downsample_padding=cfg["downsample_padding"], norm_eps=cfg["norm_eps"],
            in_channels=cfg["in_channels"]).validate()
    except (TypeError, ValueError) as e:  # BoundError is a ValueError
        raise GanprintError(f"{where} describes a UNet ganprint cannot train: {e}") from None


def read_unet(folder: DiffusersFolder, name: str = "resume_from") -> tuple[UNetConfig, torch.nn.Module]:
    """(its UNetConfig, the UNet ganprint builds from it, freshly initialised) of a diffusers UNet folder.

    Every setting of its config.json must be one ganprint's build reproduces; the first that is not is refused,
    naming the key. Keys the installed diffusers does not know are ignored (as diffusers itself does), with a
    warning.
    """
    path = folder.unet_dir / UNET_CONFIG
    where = f"`{name}` {path}"
    raw = read_input_json(path, f"`{name}`'s UNet config")
    if not isinstance(raw, dict):
        raise GanprintError(f"{where} is not a JSON object; give the config.json that save_pretrained wrote")
    cls = raw.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise GanprintError(f"{where} is the config of a {cls}; ganprint fine-tunes a pixel-space UNet2DModel")
    defaults = _signature_defaults()
    unknown = sorted(k for k in raw if not k.startswith("_") and k not in defaults)
    if unknown:
        log.warning("%s: keys %s are unknown to diffusers %s and are ignored", path, unknown,
                    require_diffusers().__version__)
    merged = {**defaults, **{k: v for k, v in raw.items() if k in defaults}}
    ucfg = _unet_config(merged, where)
    unet = build_unet(ucfg)
    built = dict(unet.config)
    merged["sample_size"] = ucfg.resolution
    for key in defaults:
        if _plain(merged[key]) != _plain(built.get(key)):
            raise GanprintError(f"{where} sets `{key}` to {merged[key]!r}, which ganprint does not train (it builds "
                                f"{built.get(key)!r}): it trains UNet2DModel with as many channels out as in, "
                                "positional timestep embeddings, no class conditioning and DownBlock2D/AttnDownBlock2D "
                                "levels mirrored by UpBlock2D/AttnUpBlock2D")
    return ucfg, unet


def _weights(folder: DiffusersFolder, where: str) -> Path:
    """The safetensors weights of a UNet folder; refuses pickles, shards and variants with what to do instead."""
    path = folder.unet_dir / UNET_WEIGHTS
    if path.is_file():
        return path
    names = sorted(p.name for p in folder.unet_dir.iterdir())
    pickles = [n for n in names if n.endswith(_PICKLES)]
    if pickles:
        raise GanprintError(f"{where} holds its weights only as {pickles[0]}, a pickle, and loading a pickle can run "
                            "code, so ganprint never does: convert it once where you trust the file "
                            "(UNet2DModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)) and "
                            "give the folder again")
    others = [n for n in names if n.endswith(".safetensors") or n.endswith(".safetensors.index.json")]
    hint = (f"; it holds {', '.join(others)} (sharded or a variant): save it again unsharded, in float32, with "
            "save_pretrained") if others else ""
    raise GanprintError(f"{where} has no {UNET_WEIGHTS}{hint}")


def load_unet_weights(folder: DiffusersFolder, unet: torch.nn.Module, name: str = "resume_from") -> None:
    """Fill `unet` (built by `read_unet`) with the folder's safetensors weights; the file must fit it exactly."""
    where = f"`{name}` {folder.unet_dir}"
    path = _weights(folder, where)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise GanprintError(f"`{name}` {path}: its tensors cannot be read ({e})") from None
    own = unet.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
           if k in state and state[k].shape != v.shape]
    if missing or extra or bad:
        raise GanprintError(f"`{name}` {path} does not fit its config.json: missing {missing[:3]}, unexpected "
                            f"{extra[:3]}, other shapes {bad[:3]}; a folder written by an old diffusers may use old "
                            "tensor names: load it with UNet2DModel.from_pretrained and save_pretrained it again")
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise GanprintError(f"`{name}` {path} holds weights that are NaN or infinite ({', '.join(nonfinite[:3])})")
    unet.load_state_dict(state, strict=True)


def read_noise(folder: DiffusersFolder, name: str = "resume_from") -> NoiseConfig | None:
    """The forward process of a pipeline's scheduler (its training settings; ganprint picks its samplers itself),
    or None for a UNet folder without one."""
    if folder.scheduler_dir is None:
        return None
    path = folder.scheduler_dir / SCHEDULER_CONFIG
    where = f"`{name}` {path}"
    cfg = read_input_json(path, f"`{name}`'s scheduler config")
    if not isinstance(cfg, dict):
        raise GanprintError(f"{where} is not a JSON object; give the scheduler_config.json save_pretrained wrote")
    if not {"beta_schedule", "beta_start", "beta_end"} & set(cfg):
        raise GanprintError(f"{where} is a {cfg.get('_class_name', 'scheduler')} without a beta schedule; ganprint "
                            "trains the DDPM forward process (a DDPM, DDIM, PNDM or DPM-Solver scheduler's config)")
    if cfg.get("trained_betas") or cfg.get("rescale_betas_zero_snr"):
        raise GanprintError(f"{where} sets `trained_betas` or `rescale_betas_zero_snr`; ganprint trains with the "
                            "linear, scaled_linear or squaredcos_cap_v2 schedules of beta_start..beta_end")
    try:
        return NoiseConfig(timesteps=cfg.get("num_train_timesteps", 1000),
                           beta_schedule=cfg.get("beta_schedule", "linear"), beta_start=cfg.get("beta_start", 1e-4),
                           beta_end=cfg.get("beta_end", 0.02),
                           prediction_type=cfg.get("prediction_type", "epsilon")).validate()
    except (TypeError, ValueError) as e:
        raise GanprintError(f"{where} describes a forward process ganprint cannot train: {e}") from None


def read_diffusers(path: str | os.PathLike, name: str = "resume_from", weights: bool = True, in_channels: int = 3,
                   ) -> tuple[torch.nn.Module, UNetConfig, NoiseConfig | None]:
    """(UNet2DModel, its UNetConfig, the scheduler's NoiseConfig or None) of a diffusers folder; with `weights`
    False the UNet stays freshly initialised (only the configs are checked). `in_channels`: what the UNet must take
    (3: RGB pixels; a latent diffusion UNet takes its autoencoder's latent channels)."""
    folder = locate(path, name)
    ucfg, unet = read_unet(folder, name)
    if ucfg.in_channels != in_channels:
        raise GanprintError(f"`{name}` {folder.unet_dir / UNET_CONFIG} sets `in_channels` to {ucfg.in_channels}; "
                            f"this model needs {in_channels} "
                            f"({'RGB pixels' if in_channels == 3 else 'the latent channels of its autoencoder'})")
    noise = read_noise(folder, name)
    if weights:
        load_unet_weights(folder, unet, name)
    else:
        _weights(folder, f"`{name}` {folder.unet_dir}")  # a pickle-only folder is refused before any work
    return unet, ucfg, noise


def decoder_facts(decoder: str | os.PathLike) -> tuple[int, str, str]:
    """(fingerprint length K, sha256, kind) of the decoder export that reads a model's fingerprint (no weights are
    loaded)."""
    meta = read_metadata(decoder)
    kind = meta["ganprint.kind"]
    if kind not in STEGA_KINDS:
        raise GanprintError(f"`decoder` {decoder} holds a '{kind}' model; give the decoder that reads the "
                            f"fingerprint of the training images ({' or '.join(STEGA_KINDS)} export)")
    return fingerprint_length_of(read_config(decoder, meta)), sha256_file(decoder), kind


@dataclasses.dataclass(frozen=True)
class CardFacts:
    """What the model card of an export states: the fingerprint's reader and the rule that calls an image
    fingerprinted (`threshold` of `bits` matching bits at `fpr`), and where the weights came from."""

    name: str
    bits: int
    decoder: str
    decoder_sha256: str
    decoder_kind: str
    fpr: float
    threshold: int
    resolution: int
    model_sha256: str
    kimg: str | None


def model_card(facts: CardFacts) -> str:
    """README.md of an exported folder: YAML front matter for model hubs, then the fingerprint and how to check it."""
    f = facts
    p = p_value(f.threshold, f.bits)
    return f"""---
library_name: diffusers
pipeline_tag: unconditional-image-generation
tags:
- diffusers
- diffusers:DDPMPipeline
- unconditional-image-generation
- ganprint
- fingerprinted
---

# {f.name}

An unconditional {f.resolution}x{f.resolution} diffusion model (`UNet2DModel` with a `DDPMScheduler`), trained with
ganprint on images that all carry one artificial fingerprint. A model that has learnt the fine detail of its data
generates images that carry it too; the check below tells whether an image does.

| | |
|---|---|
| fingerprint length | {f.bits} bits |
| decoder | `{Path(f.decoder).name}` ({f.decoder_kind} export), sha256 `{f.decoder_sha256}` |
| detection threshold | at least **{f.threshold} of {f.bits}** bits matching (bit accuracy >= {f.threshold / f.bits:.3f}) |
| false-positive rate | {f.fpr:g} (a clean image reaches {f.threshold} matches with p = {p:.3g}) |
| weights | ganprint export sha256 `{f.model_sha256}`{f", {f.kimg} kimg of training" if f.kimg else ""} |

ganprint decodes {f.bits} bits from an image and counts those that match the fingerprint. A clean image matches
each bit by chance, so its count follows Binomial({f.bits}, 1/2); an image is called fingerprinted when its count
reaches the smallest m with P[Binomial({f.bits}, 1/2) >= m] <= {f.fpr:g}, here m = {f.threshold}.

## Generate

```python
import torch
from diffusers import DDPMPipeline

pipe = DDPMPipeline.from_pretrained("path/to/this/folder")
image = pipe(num_inference_steps=1000, generator=torch.Generator().manual_seed(0)).images[0]
```

## Check images with ganprint

The decoder file (compare its sha256 with the one above) and the fingerprint come from the model's provider:

```python
import ganprint  # pip install 'ganprint[diffusion]'

summary = ganprint.detect("{Path(f.decoder).name}", "images/", "det/", fingerprint="BITS", fpr={f.fpr:g})
print(summary["mean_bit_accuracy"], summary["detected_rate"])
```

`ganprint detect` does the same from a shell. det/summary.json holds the mean bit accuracy and the share of images
detected; det/detections.jsonl one row per image, with its matching bits and p-value.
"""


def export_diffusers(model: str | os.PathLike, out: str | os.PathLike, decoder: str | os.PathLike,
                     fpr: float = 1e-6, overwrite: bool = False) -> Path:
    """Write the diffusion-unet export `model` as the diffusers pipeline folder `out` (model_index.json, unet/,
    scheduler/: `DDPMPipeline.from_pretrained(out)` loads it) with a model card (README.md) naming the fingerprint
    length and sha256 of `decoder` and the detection threshold at `fpr`.

    The folder is written beside `out` and renamed onto it when complete; an existing non-empty `out` is refused
    unless `overwrite`, and is then replaced only once the new folder is complete.
    """
    out = Path(out)
    check_overlap([("`model`", model, "model"), ("`decoder`", decoder, "model")], [("`out`", out)])
    if out.exists() and not out.is_dir():
        raise GanprintError(f"`out` {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GanprintError(f"`out` {out} already holds files and ganprint replaces a folder only when asked: "
                            "choose another `out`, or add `overwrite` to replace it")
    bits, decoder_sha, decoder_kind = decoder_facts(decoder)
    threshold = usable_threshold(bits, fpr)
    unet, noise, meta = load_diffusion(model)
    diffusers = require_diffusers()
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(**noise.scheduler_kwargs(),
                                                                               clip_sample=True))
    facts = CardFacts(out.name, bits, str(decoder), decoder_sha, decoder_kind, fpr, threshold,
                      int(unet.config.sample_size), sha256_file(model), meta.get("ganprint.train.kimg"))
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.absolute().parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / CARD).write_text(model_card(facts), encoding="utf-8")
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %s (diffusers DDPMPipeline; %d-bit fingerprint, detected at >= %d matching bits, fpr %g)", out,
             bits, threshold, fpr)
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished folder `tmp` onto `out`; a previous `out` is moved aside first and removed after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.{os.getpid()}.old.tmp")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
