"""Issue a distinct fingerprinted model per user: draw a fingerprint, fold it in, record it in the registry."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.files import sha256_file
from ganprint.core.runtime import resolve_device
from ganprint.nets.scalable import fold_fingerprint
from ganprint.scalable.generate import FINGERPRINT_META, FP_ID_META
from ganprint.scalable.registry import Registry

log = logging.getLogger(__name__)


def issue_model(model_path: str | os.PathLike, registry_path: str | os.PathLike, outdir: str | os.PathLike,
                fingerprint: str | None = None, who: str | None = None, notes: str = "",
                min_distance: int | None = None, device: str = "cpu") -> dict:
    """Issue one fingerprint from the registry and write its folded standalone generator; returns the row + path.

    The registry row is committed first (so no two users can ever get the same fingerprint); the model is then
    written to `outdir/issued-<fp_id:06d>.safetensors` (kind `scalable-G-issued`) and its sha256 recorded.
    """
    dev = resolve_device(device)
    G, cfg, _ = load_export(model_path, kind="scalable-G", device=dev)
    reg = Registry(registry_path)
    rec = reg.issue(fingerprint, bit_length=int(cfg["fingerprint_bits"]), who=who, notes=notes,
                    model_sha256=sha256_file(model_path), min_distance=min_distance)
    G_issued = fold_fingerprint(G, rec.bits)
    path = Path(outdir) / f"issued-{rec.fp_id:06d}.safetensors"
    save_export(path, G_issued, "scalable-G-issued", cfg,
                {FINGERPRINT_META: rec.bits_hex, FP_ID_META: str(rec.fp_id),
                 "ganprint.base_model_sha256": rec.model_sha256})
    digest = sha256_file(path)
    reg.set_issued_file(rec.fp_id, path, digest)
    out = rec.to_dict()
    out.update(issued_path=str(path.resolve()), issued_sha256=digest)
    log.info("issued fingerprint #%d to %s: %s", rec.fp_id, rec.who, path)
    return out
