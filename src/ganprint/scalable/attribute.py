"""Attribution: decode an image's fingerprint, find the nearest issued fingerprint, decide with a p-value.

The decision rule and the search are `ganprint.inference.scoring.attribute_bits` (Bonferroni-corrected for the N
issued fingerprints; exact nearest neighbour by XOR + popcount, or faiss for large registries); the decoder is the
shared adapter (`ganprint.inference.decoders`). This module reads the images and the registry and writes the rows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_json, atomic_write_text, check_writable_dir, check_writable_file, sha256_file
from ganprint.core.hamming import HammingIndex
from ganprint.core.images import preprocess, read_image
from ganprint.core.paths import OutputFolder, check_new_file, check_overlap
from ganprint.core.progress import progress_bar
from ganprint.core.runtime import resolve_device
from ganprint.core.specs import Spec, SpecError, spec_of_call
from ganprint.core.stats import match_threshold, usable_threshold
from ganprint.data.listing import list_images
from ganprint.inference.decoders import RUNTIMES, Decoder, DecoderOptions
from ganprint.inference.scoring import UNKNOWN, attribute_bits
from ganprint.registry.backends import registry_file
from ganprint.registry.store import Registry

log = logging.getLogger(__name__)

__all__ = ["ATTRIBUTIONS", "AttributeSpec", "UNKNOWN", "attribute_bits", "attribute_images", "decode_images",
           "summarize"]

ATTRIBUTIONS = "attributions.jsonl"  # the rows, in `outdir`
# The decoders that read an issued model's fingerprint: a StyleGAN2 scalable decoder, or the fingerprint decoder of
# latent issued autoencoders (a stega-decoder export, `ganprint.latent`).
DECODER_KINDS = ("scalable-decoder", "stega-decoder")
SUMMARY = "summary.json"

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class AttributeSpec(Spec):
    """What `attribute_images` is asked to do; the fields are its keyword arguments (and the command's flags).

    `model`: a scalable-decoder export (or the stega-decoder export that reads latent issued decoders); `registry`: the registry of issued fingerprints (SQLite path or
    postgresql:// URL); `data`: a folder of images; `outdir`: where `attributions.jsonl` (one row per image) and
    `summary.json` go. `out` is the older form, kept for one release: one JSONL file, its summary beside it as
    `<out>.summary.json`, replaced only with `overwrite`. `fpr` is per image, Bonferroni-corrected for the number of
    issued models; `runtime` torch or onnx.
    """

    model: PathLike | None = None
    registry: PathLike | None = None
    data: PathLike | None = None
    outdir: PathLike | None = None
    fpr: float = 1e-6
    batch_size: int = 64
    device: str = "auto"
    runtime: str = "torch"
    out: PathLike | None = None
    overwrite: bool = False

    def check(self) -> None:
        missing = [f"`{name}`" for name in ("model", "registry", "data") if getattr(self, name) is None]
        if missing:
            raise SpecError(f"attribute needs {', '.join(missing)}")
        if (self.outdir is None) == (self.out is None):
            raise SpecError("give `outdir` (a folder for the rows and the summary), or the older `out` (one file)")
        if self.overwrite and self.out is None:
            raise SpecError("`overwrite` goes with `out`; an `outdir` takes a re-run of the same attribute as it is")
        if not 0 < self.fpr < 1:
            raise SpecError(f"`fpr` must be in (0, 1), got {self.fpr}")
        bounds.BATCH.check(self.batch_size, "`batch_size`")
        if self.runtime not in RUNTIMES:
            raise SpecError(f"`runtime` must be torch or onnx, got {self.runtime!r}")


def summarize(rows: list[dict], n_issued: int, k: int, fpr: float) -> dict:
    """Counts per attributed fingerprint, the unknown count and the decision threshold."""
    counts = Counter(str(r["attributed"]) for r in rows)
    return {"images": len(rows), "attributed": len(rows) - counts.get(UNKNOWN, 0), UNKNOWN: counts.get(UNKNOWN, 0),
            "per_fingerprint": {key: v for key, v in sorted(counts.items()) if key != UNKNOWN},
            "issued": n_issued, "bits": k, "fpr": fpr, "min_matches": match_threshold(k, fpr, n_issued)}


def decode_images(decoder: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 64,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images [N, R, R, 3] -> decoded fingerprint bits float 0/1 [N, K] with a loaded scalable decoder."""
    cfg = decoder.cfg.to_dict()
    loaded = (decoder, cfg, "scalable-decoder")
    return Decoder("<loaded>", DecoderOptions(torch.device(device)), loaded=loaded).bits(images, batch_size)


def attribute_images(*args: Any, spec: AttributeSpec | None = None, **kwargs: Any) -> dict:
    """Decode every image under `data`, attribute it against the registry, write JSONL rows; return a summary.

    Takes an `AttributeSpec`, or its fields as keyword arguments (`model`, `registry`, `data` and `outdir` also
    positionally). Images of another size than the decoder's are centre-cropped and resized to it (as the data
    sets were). `runtime` onnx decodes with ONNX Runtime on the CPU (the same bits). The output is checked before
    any work: it may not be or lie inside an input (the registry, the decoder, the images); an `outdir` takes only
    a re-run of the same attribute (`ganprint.core.paths.OutputFolder`).
    """
    spec = spec_of_call(AttributeSpec, ("model", "registry", "data", "outdir"), args, spec, kwargs)
    rows_path, summary_path = _check_outputs(spec)
    src = Path(spec.data)
    if not src.is_dir():
        raise GanprintError(f"`data` {src} is not a directory of images")
    files = list_images(src)
    dev = resolve_device(spec.device)
    decoder = Decoder(spec.model, DecoderOptions(dev, runtime=spec.runtime), kinds=DECODER_KINDS)
    reg = Registry(spec.registry, create=False)
    folder = _output_folder(spec, reg.where, dev)
    if reg.fingerprint_length() not in (None, decoder.k):
        raise GanprintError(f"registry {spec.registry} holds {reg.fingerprint_length()}-bit fingerprints but decoder "
                            f"{spec.model} reads {decoder.k} bits; use the matching `model` / `registry`")
    fp_ids, packed = reg.packed()
    usable_threshold(decoder.k, spec.fpr, max(1, len(fp_ids)), "`fpr`")
    index = HammingIndex(packed)
    who = {r.fp_id: r.who for r in reg.list()}
    rows = _attribute_files(files, src, decoder, spec, lambda bits: attribute_bits(bits, fp_ids, packed, decoder.k,
                                                                                     spec.fpr, index))
    for r in rows:
        r["who"] = who.get(r["attributed"]) if r["attributed"] != UNKNOWN else None
    summary = summarize(rows, len(fp_ids), decoder.k, spec.fpr)
    summary.update(search_backend=index.backend, runtime=spec.runtime)
    if folder is not None:
        folder.claim()
    atomic_write_text(rows_path, "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_json(summary_path, summary)
    log.info("attributed %d of %d images (%d unknown) against %d issued fingerprints", summary["attributed"],
             len(rows), summary[UNKNOWN], len(fp_ids))
    return summary


def _check_outputs(spec: AttributeSpec) -> tuple[Path, Path]:
    """Where the rows and the summary go, checked before any work: never an input, never inside one."""
    inputs = [("`model`", spec.model, "decoder"), ("`registry`", registry_file(spec.registry), "registry"),
              ("`data`", spec.data, "image folder")]
    if spec.out is None:
        check_overlap(inputs, [("`outdir`", spec.outdir)])
        check_writable_dir(spec.outdir, "`outdir`")
        return Path(spec.outdir) / ATTRIBUTIONS, Path(spec.outdir) / SUMMARY
    warnings.warn("`out` (one file) is the older form of `outdir` (a folder) and goes in the next release",
                  DeprecationWarning, stacklevel=3)
    out = Path(spec.out)
    summary_path = out.with_name(out.name + ".summary.json")
    check_overlap(inputs, [("`out`", out, "file"), ("`out`", summary_path, "file")])
    for path in (out, summary_path):
        check_new_file(path, "`out`", spec.overwrite)
    check_writable_file(out, "`out`")
    return out, summary_path


def _output_folder(spec: AttributeSpec, registry_where: str, dev: torch.device) -> OutputFolder | None:
    """The `outdir` with attribute's identity (every setting that changes an output byte; the registry by where it
    is, since issuing adds to it; a URL without its password), checked before any work; None with `out`."""
    if spec.out is not None:
        return None
    reg_file = registry_file(spec.registry)
    identity = {"model_sha256": sha256_file(spec.model),
                "registry": os.path.realpath(reg_file) if reg_file is not None else registry_where,
                "data": os.path.realpath(spec.data), "fpr": spec.fpr, "runtime": spec.runtime, "device": dev.type}
    labels = {key: f"`{key}`" for key in identity} | {"model_sha256": "`model`"}
    return OutputFolder(spec.outdir, "`outdir`", "attribute", identity, labels=labels).check()


def _attribute_files(files: list[Path], src: Path, decoder: Decoder, spec: AttributeSpec, score) -> list[dict]:
    """One row per file ("file": its path under `src`, then the scored fields), `batch_size` files at a time."""
    res, rows, resized = decoder.resolution, [], 0
    with progress_bar(len(files), "attribute") as bar:
        for s in range(0, len(files), spec.batch_size):
            chunk = files[s:s + spec.batch_size]
            imgs = [read_image(f) for f in chunk]
            resized += sum(img.shape[:2] != (res, res) for img in imgs)
            bits = decoder.bits(np.stack([preprocess(img, res) for img in imgs]))  # [n, K]
            rows += [{"file": f.relative_to(src).as_posix(), **r} for f, r in zip(chunk, score(bits))]
            bar.update(len(chunk))
    if resized:
        log.warning("%d images were not %dx%d and were centre-cropped/resized before decoding", resized, res, res)
    return rows
