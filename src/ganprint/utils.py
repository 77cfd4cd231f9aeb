"""Small shared helpers: atomic file writes, seeding, provenance."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


_UMASK = os.umask(0)  # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path` (atomic on POSIX).

    Readers never see a half-written file, and a crash leaves the old file (if any) intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if hasattr(os, "fchmod"):  # mkstemp's 0600 would otherwise stick to the result
        os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically, cheaply enough for thousands of small files.

    The temporary name is unique per process and thread (no mkstemp, whose 0600 mode would also leak onto the
    result); the file gets the usual 0666 & ~umask. The parent folder is created only when missing.
    """
    target = os.fspath(path)  # string operations: this runs once per image
    head, name = os.path.split(target)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(head or ".", exist_ok=True)
        fd = os.open(tmp, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(target)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write a JSON file atomically (indented, UTF-8)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, rows: list[dict] | dict) -> None:
    """Append one or more JSON objects as lines; each line is flushed whole."""
    if isinstance(rows, dict):
        rows = [rows]
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file, ignoring a trailing partial line left by a crash."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, streamed (memory does not grow with the file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derive_seed(*ints: int) -> int:
    """A stable 63-bit seed from a tuple of ints (never Python's per-process `hash` of strings)."""
    ss = np.random.SeedSequence([int(i) & 0xFFFFFFFF for i in ints])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def git_sha() -> str:
    """The git commit of the ganprint checkout, or 'unknown' (installed wheels have none)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001 - provenance is best effort
        return "unknown"


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 convolutions run ~2x faster
    than fp32. oneDNN also accepts bf16 on other AVX-512 CPUs, but emulates it there, slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """--precision auto|fp32|bf16 -> "fp32" or "bf16" for inference on `device`.

    "auto" is bf16 where the hardware computes it natively (a CUDA GPU with bf16, or a CPU with AVX512-BF16 /
    AMX), else fp32. bf16 changes the network's rounding, not its output's meaning: fingerprinted pixels move by
    at most two 8-bit levels (benchmarks/RESULTS-embed-detect.md).
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"--precision must be auto, fp32 or bf16, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} was asked for but CUDA is not available; use --device cpu")
    return torch.device(device)
