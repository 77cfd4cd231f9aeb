"""Issue a per-user latent decoder: fold a fresh fingerprint into a copy of the shared modulated autoencoder and
record it in the registry, the model file and its row together (`ganprint.registry.issued`: a row iff its file).

The issued file (kind "latent-autoencoder-issued") is a plain `AutoencoderKL` export with the fingerprint's styles
multiplied into its decoder's weights (`ModulatedAutoencoder.fold`), so it decodes exactly the images the shared
model decodes with that fingerprint and takes none; its metadata carries the fingerprint, its registry id and the
shared model's sha256, as a StyleGAN2 issued generator's does.
"""

from __future__ import annotations

import logging
import os

import torch

from ganprint.core.artifacts import export_bytes, load_export
from ganprint.core.files import sha256_file
from ganprint.core.runtime import resolve_device
from ganprint.latent import autoencoder
from ganprint.latent.modulated import EXPORT_KIND, ModulatedAutoencoder
from ganprint.registry.fingerprints import Issued
from ganprint.registry.issued import issue_with_file, issued_metadata, open_for_issue
from ganprint.registry.store import Registry

log = logging.getLogger(__name__)


def issued_bytes(model: ModulatedAutoencoder, rec: Issued) -> bytes:
    """The issued file of row `rec`: `model` with `rec`'s fingerprint folded in, as a latent-autoencoder-issued export."""
    return export_bytes(model.fold(rec.bits), autoencoder.ISSUED_KIND, autoencoder.export_config(model.ae_cfg),
                        issued_metadata(rec))


def issue_loaded_latent(model: ModulatedAutoencoder, model_sha256: str, registry: Registry,
                        models_dir: str | os.PathLike, fingerprint: str | None = None, **holder) -> dict:
    """Issue one fingerprint for an already loaded shared modulated autoencoder (see `issue_latent_model`);
    `holder`: `who`, `notes` and `min_distance` of `Registry.issue`."""
    with torch.no_grad():
        rec = issue_with_file(registry, models_dir, lambda r: issued_bytes(model, r), fingerprint,
                              fingerprint_length=model.fingerprint_length, model_sha256=model_sha256, **holder)
    log.info("issued latent decoder #%d to %s: %s", rec.fp_id, rec.who, rec.issued_path)
    return rec.to_dict()


def issue_latent_model(model_path: str | os.PathLike, registry_path: str | os.PathLike,
                       models_dir: str | os.PathLike, fingerprint: str | None = None, who: str | None = None,
                       notes: str = "", min_distance: int | None = None, device: str = "cpu") -> dict:
    """Issue one fingerprint from the registry for the shared `latent-modulated` export `model_path` and write its
    folded autoencoder to `models_dir/issued-<fp_id:06d>-<registry id>.safetensors`; returns the row + path.

    The paths are checked as for `ganprint.scalable.issue.issue_model` (`ganprint.registry.issued.open_for_issue`).
    """
    dev = resolve_device(device)
    (model, _, _), registry = open_for_issue(model_path, registry_path, models_dir,
                                             lambda: load_export(model_path, kind=EXPORT_KIND, device=dev))
    return issue_loaded_latent(model, sha256_file(model_path), registry, models_dir, fingerprint, who=who,
                               notes=notes, min_distance=min_distance)
