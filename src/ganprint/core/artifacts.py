"""Artifacts: safetensors exports with the config in their metadata, and resumable training states.

Loading an export never runs code: tensors come from safetensors, the config from JSON metadata, and
the model class from an explicit registry keyed by `ganprint.kind`. Training states are plain
state_dicts loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save, save_file

from ganprint._version import __version__
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_path
from ganprint.core.runtime import git_sha

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

# kind -> builder(config_dict) -> nn.Module (or a small container of modules). Filled by model modules.
BUILDERS: dict[str, Callable[[dict], torch.nn.Module]] = {}


class ArtifactError(GanprintError):
    """A model file that is missing, not a ganprint export, or of the wrong kind."""


def register_kind(kind: str):
    """Decorator: register `fn(config_dict) -> nn.Module` as the builder for artifacts of `kind`."""

    def deco(fn):
        BUILDERS[kind] = fn
        return fn

    return deco


def save_export(path: str | os.PathLike, module: torch.nn.Module, kind: str, config: dict,
                extra: dict[str, str] | None = None) -> Path:
    """Write `module.state_dict()` as safetensors with metadata (atomically).

    Args:
        path: output file (.safetensors).
        module: the model; its state_dict must round-trip through `BUILDERS[kind](config)`.
        kind: registry key, e.g. "stega", "stylegan2-G", "scalable-G".
        config: JSON-serialisable model config used to rebuild the model.
        extra: more string metadata (e.g. a folded fingerprint).
    """
    tensors, meta = _export_contents(module, kind, config, extra)
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=meta)
        except SafetensorError as e:
            raise _write_error(e, path) from None
    return path


def export_bytes(module: torch.nn.Module, kind: str, config: dict, extra: dict[str, str] | None = None) -> bytes:
    """What `save_export` writes, as bytes (for a caller that creates the file itself, e.g. exclusively)."""
    tensors, meta = _export_contents(module, kind, config, extra)
    return save(tensors, metadata=meta)


def _export_contents(module: torch.nn.Module, kind: str, config: dict,
                     extra: dict[str, str] | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    meta = {
        "ganprint.format": str(FORMAT_VERSION),
        "ganprint.kind": kind,
        "ganprint.config": json.dumps(config, sort_keys=True),
        "ganprint.version": __version__,
        "ganprint.git_sha": git_sha(),
        "ganprint.created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra or {})
    return tensors, meta


def _write_error(e: SafetensorError, path: Path) -> Exception:
    """An OSError naming `path` for a failed safetensors write (its message holds the OS error number, as in
    'No space left on device (os error 28)', or in safetensors 0.4 as 'IoError(Os { code: 28, ... })'), or an
    ArtifactError naming it."""
    m = re.search(r"os error (\d+)|Os \{ code: (\d+)", str(e))
    if m:
        code = int(m.group(1) or m.group(2))
        return OSError(code, os.strerror(code), str(path))
    return ArtifactError(f"cannot write {path}: {_first_line(e)}")


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a ganprint export; raises ArtifactError with a hint when unusable."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"model file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        hint = ""
        if path.suffix in (".pth", ".pt", ".pkl"):
            hint = " (original ArtificialGANFingerprints .pth files must first be converted with `ganprint import-agf`)"
        raise ArtifactError(f"{path} is not a safetensors file: {e}{hint}") from None
    if "ganprint.kind" not in meta:
        raise ArtifactError(f"{path} is a safetensors file but not a ganprint export (no ganprint.kind metadata)")
    try:
        major = int(meta.get("ganprint.format", "0"))
    except ValueError:
        raise ArtifactError(f"{path} has an unreadable ganprint.format {meta['ganprint.format']!r}; the file was "
                            "edited or damaged: use the export as ganprint wrote it") from None
    if major > FORMAT_VERSION:
        raise ArtifactError(f"{path} has artifact format {major}; this ganprint reads <= {FORMAT_VERSION}: upgrade")
    return meta


def read_config(path: str | os.PathLike, meta: dict[str, str] | None = None) -> dict:
    """The model config stored in an export's metadata; ArtifactError naming the file when it is not a JSON object."""
    meta = read_metadata(path) if meta is None else meta
    try:
        config = json.loads(meta.get("ganprint.config", "{}"))
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise ArtifactError(f"{path} has a ganprint.config that is not a JSON object; the file was edited or "
                            "damaged: use the export as ganprint wrote it")
    return config


def check_config_keys(cls: type, d: dict) -> None:
    """Raise ValueError naming the keys of `d` that are not fields of the dataclass `cls` (a typo, or a config
    written by an incompatible version)."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")


def load_export(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None,
                device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict, dict[str, str]]:
    """Load an export: returns (module in eval mode, config dict, metadata).

    Args:
        path: a .safetensors file written by `save_export`.
        kind: expected kind(s); a mismatch raises ArtifactError naming both.
        device: where to put the module.

    A config the model cannot be built from, missing, extra or misshapen tensors, and weights that are not finite
    (NaN or inf) raise ArtifactError naming the file.
    """
    meta = read_metadata(path)
    got = meta["ganprint.kind"]
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and got not in kinds:
        raise ArtifactError(f"{path} holds a '{got}' model, but this command needs {' or '.join(kinds)}")
    _ensure_builders_loaded()
    if got not in BUILDERS:
        raise ArtifactError(f"{path} has unknown model kind '{got}'")
    config = read_config(path, meta)
    try:
        module = BUILDERS[got](config)
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError, RuntimeError) as e:
        raise ArtifactError(f"{path}: its ganprint.config does not describe a '{got}' model ({type(e).__name__}: "
                            f"{_first_line(e)}); the file was edited or damaged") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{path}: its tensors cannot be read ({_first_line(e)})") from None
    _check_state(path, module, state)
    module.load_state_dict(state, strict=True)
    return module.to(device).eval(), config, meta


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_state(path, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Refuse tensors that do not fit `module` (missing, extra, other shapes) or are not finite, naming the file."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ArtifactError(f"{path} does not match its model: missing tensors {missing[:4]}, unexpected tensors "
                            f"{extra[:4]}; the file was edited or damaged")
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
           if state[k].shape != v.shape]
    if bad:
        raise ArtifactError(f"{path}: tensor shapes do not fit its model: {'; '.join(bad[:3])}")
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise ArtifactError(f"{path} holds weights that are NaN or infinite ({', '.join(nonfinite[:3])}"
                            f"{'...' if len(nonfinite) > 3 else ''}); it cannot fingerprint anything: retrain or "
                            "restore the model")


def _ensure_builders_loaded() -> None:
    # Model modules register their builders on import; import them lazily so that this module stays light.
    import importlib

    for name in ("ganprint.nets.stega", "ganprint.nets.stylegan2", "ganprint.nets.scalable",
                 "ganprint.diffusion.model", "ganprint.latent.autoencoder",
                 "ganprint.latent.modulated", "ganprint.latent.model"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


# --- training state (resume) -------------------------------------------------------------------

_STATE_RE = re.compile(r"training-state-(\d+)\.pt$")


def save_training_state(run_dir: str | os.PathLike, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write `training-state-<step:08d>.pt` (state_dicts and plain scalars only), pruning old ones."""
    run_dir = Path(run_dir)
    path = run_dir / f"training-state-{step:08d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    states = sorted(run_dir.glob("training-state-*.pt"))
    for old in states[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_training_state(run_dir: str | os.PathLike) -> Path | None:
    """The newest training state in `run_dir`, or None."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    states = sorted(p for p in run_dir.glob("training-state-*.pt") if _STATE_RE.search(p.name))
    return states[-1] if states else None


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state without unpickling code (weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True)
