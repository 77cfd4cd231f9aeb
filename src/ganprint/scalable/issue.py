"""Issue a distinct fingerprinted model per user: draw a fingerprint, fold it in, record it in the registry."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.files import check_writable_dir, sha256_file
from ganprint.core.paths import check_overlap
from ganprint.core.runtime import resolve_device
from ganprint.nets.scalable import ScalableGenerator, fold_fingerprint
from ganprint.scalable.generate import FINGERPRINT_META, FP_ID_META
from ganprint.scalable.registry import Issued, Registry, registry_file

log = logging.getLogger(__name__)


def issue_loaded(G: ScalableGenerator, cfg: dict, model_sha256: str, registry: Registry, outdir: str | os.PathLike,
                 fingerprint: str | None = None, who: str | None = None, notes: str = "",
                 min_distance: int | None = None) -> dict:
    """Issue one fingerprint for an already loaded shared generator `G` (see `issue_model`)."""
    out = check_writable_dir(outdir, "--outdir")
    written: list[Path] = []

    def write_model(rec: Issued) -> tuple[str, str]:
        # Runs inside the registry's issue transaction: the row commits only once this file is complete.
        path = out / f"issued-{rec.fp_id:06d}.safetensors"
        written.append(path)
        save_export(path, fold_fingerprint(G, rec.bits), "scalable-G-issued", cfg,
                    {FINGERPRINT_META: rec.bits_hex, FP_ID_META: str(rec.fp_id),
                     "ganprint.base_model_sha256": rec.model_sha256})
        return str(path.resolve()), sha256_file(path)

    try:
        rec = registry.issue(fingerprint, bit_length=int(cfg["fingerprint_bits"]), who=who, notes=notes,
                             model_sha256=model_sha256, min_distance=min_distance, finalize=write_model)
    except BaseException:
        for path in written:  # the row was rolled back: a model file without a record must not stay
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    log.info("issued fingerprint #%d to %s: %s", rec.fp_id, rec.who, rec.issued_path)
    return rec.to_dict()


def issue_model(model_path: str | os.PathLike, registry_path: str | os.PathLike, outdir: str | os.PathLike,
                fingerprint: str | None = None, who: str | None = None, notes: str = "",
                min_distance: int | None = None, device: str = "cpu") -> dict:
    """Issue one fingerprint from the registry and write its folded standalone generator; returns the row + path.

    One registry transaction covers both: the fingerprint is drawn under the issue lock, the model is written to
    `outdir/issued-<fp_id:06d>.safetensors` (kind `scalable-G-issued`, atomically), and only then is the row
    committed with the file's sha256. A failure or a kill at any point leaves no row (and no file). `outdir` and
    the registry may not be, hold or lie inside the model (nor `outdir` the registry).
    """
    reg = registry_file(registry_path)
    check_overlap([("--model", model_path, "model"), ("--registry", reg, "registry")],
                  [("--outdir", outdir), ("--registry", reg, "file")])
    dev = resolve_device(device)
    G, cfg, _ = load_export(model_path, kind="scalable-G", device=dev)
    check_writable_dir(outdir, "--outdir")
    with torch.no_grad():
        return issue_loaded(G, cfg, sha256_file(model_path), Registry(registry_path), outdir, fingerprint, who,
                            notes, min_distance)
