"""Issue a distinct fingerprinted model per user: fold a fresh fingerprint into the shared generator's weights and
record it in the registry, the model file and its row together (`ganprint.registry.issued`: a row iff its file)."""

from __future__ import annotations

import logging
import os

import torch

from ganprint.core.artifacts import export_bytes, load_export
from ganprint.core.files import sha256_file
from ganprint.core.runtime import resolve_device
from ganprint.nets.scalable import ScalableGenerator, fingerprint_length_of, fold_fingerprint
from ganprint.registry.fingerprints import Issued
from ganprint.registry.issued import issue_with_file, issued_metadata, open_for_issue
from ganprint.registry.store import Registry

log = logging.getLogger(__name__)


def issue_loaded(G: ScalableGenerator, cfg: dict, model_sha256: str, registry: Registry,
                 models_dir: str | os.PathLike, fingerprint: str | None = None, **holder) -> dict:
    """Issue one fingerprint for an already loaded shared generator `G` (see `issue_model`); `holder`: `who`,
    `notes` and `min_distance` of `Registry.issue`."""

    def model_bytes(rec: Issued) -> bytes:
        return export_bytes(fold_fingerprint(G, rec.bits), "scalable-G-issued", cfg, issued_metadata(rec))

    rec = issue_with_file(registry, models_dir, model_bytes, fingerprint,
                          fingerprint_length=fingerprint_length_of(cfg), model_sha256=model_sha256, **holder)
    log.info("issued fingerprint #%d to %s: %s", rec.fp_id, rec.who, rec.issued_path)
    return rec.to_dict()


def issue_model(model_path: str | os.PathLike, registry_path: str | os.PathLike, models_dir: str | os.PathLike,
                fingerprint: str | None = None, who: str | None = None, notes: str = "",
                min_distance: int | None = None, device: str = "cpu") -> dict:
    """Issue one fingerprint from the registry and write its folded standalone generator; returns the row + path.

    The model (kind `scalable-G-issued`) goes to `models_dir/issued-<fp_id:06d>-<registry id>.safetensors` by the
    protocol of `ganprint.registry.issued`; files that an earlier, killed issue left in `models_dir` are settled
    first (the same folder as the service's `models_dir`).
    `models_dir` and the registry may not be, hold or lie inside the model (nor `models_dir` the registry).
    """
    dev = resolve_device(device)
    (G, cfg, _), registry = open_for_issue(model_path, registry_path, models_dir,
                                           lambda: load_export(model_path, kind="scalable-G", device=dev))
    with torch.no_grad():
        return issue_loaded(G, cfg, sha256_file(model_path), registry, models_dir, fingerprint, who=who,
                            notes=notes, min_distance=min_distance)
