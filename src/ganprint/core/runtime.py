"""Where and how computation runs: device, inference precision, and provenance (git commit)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ganprint.core.errors import GanprintError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# The one spelling of each arithmetic is fp64, fp32, bf16 (and auto); generate's first spellings (numpy's) work for
# one release with a warning.
OLD_PRECISION_NAMES = {"float64": "fp64", "float32": "fp32"}


def git_sha() -> str:
    """The git commit of the ganprint checkout, or 'unknown' (installed wheels have none)."""
    try:
        here = Path(__file__).resolve().parent
        # argv of a git subprocess, not a ganprint flag
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - provenance is best effort
        return "unknown"


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 convolutions run faster than
    fp32. oneDNN also accepts bf16 on other AVX-512 CPUs, but emulates it there, slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def precision_name(precision: str) -> str:
    """`precision` in its one spelling: an old one (`OLD_PRECISION_NAMES`) is renamed, with a warning."""
    new = OLD_PRECISION_NAMES.get(precision) if isinstance(precision, str) else None
    if new is None:
        return precision
    log.warning("`precision` %s is the old name of %s; it still works in this release, use %s", precision, new, new)
    return new


def resolve_precision(precision: str, device: torch.device) -> str:
    """`precision` auto|fp32|bf16 -> "fp32" or "bf16" for inference on `device`.

    "auto" is bf16 where the hardware computes it natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16 /
    AMX), else fp32. bf16 changes the network's rounding, not its output's meaning: fingerprinted pixels move by
    at most two 8-bit levels.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"`precision` must be auto, fp32 or bf16, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU."""
    import torch  # here, not above: the CLI's flag types import this module, and its help needs no torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise GanprintError(f"`device` {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GanprintError(f"`device` {device} was asked for but CUDA is not available; use `device` cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise GanprintError(f"`device` {device}: there are only {torch.cuda.device_count()} CUDA devices")
    return dev


def float32_everywhere(device: torch.device) -> None:
    """No TF32 on CUDA (house style): float32 means float32, and results agree across GPUs."""
    if device.type == "cuda":
        import torch

        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
