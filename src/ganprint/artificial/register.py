"""Embed, then register: a data set fingerprinted with one fingerprint for all its images is recorded in a registry
(with the stega model that reads it), so that `ganprint serve` detects it.

This method owns the check that the model is one of its decoders and reads the fingerprint's length; the registry
(`ganprint.registry.datasets.record_dataset`) only stores the row.
"""

from __future__ import annotations

import json
import os
import torch

from ganprint.artificial.embed import EmbedSpec, embed
from ganprint.core.artifacts import read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import FingerprintError, parse_bits
from ganprint.core.paths import check_overlap
from ganprint.registry.backends import registry_file
from ganprint.registry.datasets import record_dataset

# The kinds of export that read a data set's artificial fingerprint.
DECODER_KINDS = ("stega", "stega-decoder")


def register_dataset(registry_url: str | os.PathLike, name: str, fingerprint: torch.Tensor | str,
                     model_path: str | os.PathLike, notes: str = "") -> dict:
    """Record a data set fingerprinted with `embed` (its bits and the stega model that decodes them).

    `fingerprint`: a 0/1 tensor [K], or a 0/1 / 0x-hex string; K must be the model's fingerprint length.
    Registering the same name with the same fingerprint and model again returns the existing record.
    """
    meta = read_metadata(model_path)
    if meta["ganprint.kind"] not in DECODER_KINDS:
        raise GanprintError(f"{model_path} holds a '{meta['ganprint.kind']}' model; a data set's fingerprint is "
                            f"read by a stega or stega-decoder model")
    k = int(json.loads(meta["ganprint.config"])["fingerprint_length"])
    if isinstance(fingerprint, str):
        try:  # parse_bits refuses a hex fingerprint longer than K bits (never keeps only the low K)
            bits = parse_bits(fingerprint, k)
        except FingerprintError as e:
            raise GanprintError(f"{e} (`model` {model_path})") from None
    else:
        bits = torch.as_tensor(fingerprint).float().reshape(-1)
    if bits.numel() != k:
        raise GanprintError(f"the fingerprint has {bits.numel()} bits but {model_path} reads {k}")
    return record_dataset(registry_url, name, bits, model_path, notes)


def embed_registered(spec: EmbedSpec, registry: str | os.PathLike | None = None, name: str | None = None) -> dict:
    """`embed` of `spec`; with `registry` and `name`, an `identical` data set's fingerprint is then recorded in that
    registry (SQLite path or postgresql:// URL). Returns embed's summary, with the registry record under
    "registered"."""
    if (registry is None) != (name is None):
        raise GanprintError("`registry` and `name` go together: the registry to record the data set in, and its "
                            "name")
    if registry is not None and not spec.identical:
        raise GanprintError("`registry` records one fingerprint per data set: add `identical`")
    reg = registry_file(registry)
    check_overlap([("`model`", spec.model, "model"), ("`data`", spec.data, "data"), ("`registry`", reg, "registry")],
                  [("`outdir`", spec.outdir), ("`registry`", reg, "file")])
    summary = embed(spec)
    if registry is not None:
        summary["registered"] = register_dataset(registry, name, summary["fingerprint"], spec.model)
    return summary
