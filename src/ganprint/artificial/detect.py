"""Detect fingerprints in images: the Python API behind `ganprint detect`.

Images get the preprocessing embed gives them (`ganprint.inference.stream`); the decoder is the shared adapter
(`ganprint.inference.decoders`) and the rows are scored by `ganprint.inference.scoring`. The files are split
across ranks under torchrun or `jobs`, and rank 0 writes one result, in sorted name order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganprint._version import __version__
from ganprint.artificial.model import setup
from ganprint.artificial.records import DETECTED_TXT, format_line, read_fingerprint_txt
from ganprint.core import bounds
from ganprint.core import dist
from ganprint.core.artifacts import read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_json, atomic_write_text, check_writable_dir, output_error, sha256_file
from ganprint.core.fingerprints import as_bits, bits_to_str, bits_to_strs, strs_to_bits
from ganprint.core.images import BadImageError
from ganprint.core.paths import OutputFolder, check_overlap
from ganprint.core.progress import progress_bar
from ganprint.core.specs import Spec, SpecError, spec_of_call
from ganprint.core.stats import match_threshold, usable_threshold
from ganprint.data.folders import open_image_dataset
from ganprint.inference.decoders import RUNTIMES, STEGA_KINDS, Decoder, DecoderOptions
from ganprint.inference.jobs import MIN_IMAGES_PER_DETECT_JOB, plan_jobs, run_jobs
from ganprint.inference.scoring import score_bits
from ganprint.inference.stream import item_names, loader, walk_once
from ganprint.inference.writer import png_name
from ganprint.perturb.scale_search import parse_scales, search_angles

log = logging.getLogger(__name__)

__all__ = ["DetectSpec", "detect"]

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class DetectSpec(Spec):
    """What `detect` is asked to do; the fields are its keyword arguments (and the command's flags).

    `model`: a stega or stega-decoder export; `data`: a folder of images, one image or a packed set; `outdir`: where
    `detected_fingerprints.txt`, `detections.jsonl` and `summary.json` go. A reference is `fingerprint` (one for all
    images: 0/1 or 0x-hex string, or bits) or `embedded` (an embedded_fingerprints.txt matched by name), never both.
    `precision` (auto, fp32, bf16) and `jobs` as in `embed`; `workers`: data-loading worker processes (default 0).
    `scale_search` ("auto" or fractions; `ganprint.perturb.scale_search`); `runtime` torch or onnx. `tiles` n > 1
    reads images fingerprinted with `embed`'s `tiles` n: the logits averaged over n x n tiles of the centre square.
    """

    model: PathLike | None = None
    data: PathLike | None = None
    outdir: PathLike | None = None
    resolution: int | None = None
    celeba: bool = False
    fingerprint: Any = None
    embedded: PathLike | None = None
    fpr: float = 1e-6
    batch_size: int = 64
    device: str = "auto"
    skip_bad: bool = False
    workers: int | None = None
    precision: str = "auto"
    jobs: int | str | None = 1
    scale_search: str | None = None
    runtime: str = "torch"
    tiles: int = 1

    def check(self) -> None:
        missing = [f"`{name}`" for name in ("model", "data", "outdir") if getattr(self, name) is None]
        if missing:
            raise SpecError(f"detect needs {', '.join(missing)}")
        parse_scales(self.scale_search)
        if self.runtime not in RUNTIMES:
            raise SpecError(f"`runtime` must be torch or onnx, got {self.runtime!r}")
        if self.runtime == "onnx" and self.scale_search is not None:
            raise SpecError("`scale_search` runs with `runtime` torch only")
        bounds.TILES.check(self.tiles, "`tiles`")
        if self.fingerprint is not None and self.embedded is not None:
            raise SpecError("pass either `fingerprint` or `embedded`, not both")
        if not 0 < self.fpr < 1:
            raise SpecError(f"`fpr` must be in (0, 1), got {self.fpr}")
        bounds.BATCH.check(self.batch_size, "`batch_size`")
        if self.workers is not None:
            bounds.WORKERS.check(self.workers, "`workers`")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise SpecError(f"`precision` must be auto, fp32 or bf16, got {self.precision!r}")


@walk_once
def detect(*args: Any, spec: DetectSpec | None = None, **kwargs: Any) -> dict:
    """Decode the fingerprint of every image under `data`; returns the summary (also in summary.json).

    Takes a `DetectSpec`, or its fields as keyword arguments (`model`, `data` and `outdir` also positionally).
    Writes `detected_fingerprints.txt` (`<name> <bits>`, sorted), `detections.jsonl` and `summary.json` in
    `outdir`. With a reference each row gets bit_accuracy, matches, p_value, log10_p and detected
    (matches >= match_threshold(K, fpr)); an `fpr` so small that no image could reach the threshold is refused.
    With `scale_search` each image is also decoded after undoing candidate crops and the most confident decoding
    is kept (rows then carry the chosen `scale`); p-values stay exact. `runtime` onnx decodes with ONNX Runtime
    (CPU) instead of PyTorch: the same bits (tested), for verifiers without a GPU. The output folder is checked
    before any work: it may not be, hold or lie inside an input, and it takes only a re-run of the same detect (the
    same identity: every setting that changes an output byte; `ganprint.core.paths.OutputFolder`).
    """
    spec = spec_of_call(DetectSpec, ("model", "data", "outdir"), args, spec, kwargs)
    check_overlap([("`model`", spec.model, "model"), ("`data`", spec.data, "data"),
                   ("`embedded`", spec.embedded, "list")], [("`outdir`", spec.outdir)])
    check_writable_dir(spec.outdir, "`outdir`")
    n_jobs = plan_jobs(spec.jobs, spec.device, spec.data, spec.model, MIN_IMAGES_PER_DETECT_JOB)
    if n_jobs > 1:
        return run_jobs(detect_rank, spec, n_jobs)
    return detect_rank(spec)


class _Reference:
    """The fingerprint each image is tested against: one for all (`fingerprint`), per name (`embedded`), or none."""

    def __init__(self, fingerprint, embedded, k: int):
        self.all = bits_to_str(as_bits(fingerprint, k)) if fingerprint is not None else None
        self.map = read_fingerprint_txt(embedded, k) if embedded is not None else None
        self.embedded = embedded
        self.label = ("fingerprint" if self.all is not None else f"embedded:{embedded}" if self.map is not None
                      else None)

    def identity(self) -> dict | str | None:
        """What the reference is, for the resume identity: the bits, or the list's path and sha256."""
        if self.map is not None:
            return {"embedded": os.path.realpath(self.embedded), "sha256": sha256_file(self.embedded)}
        return self.all

    def given(self) -> bool:
        return self.label is not None

    def of(self, name: str) -> str | None:
        if self.all is not None:
            return self.all
        if self.map is None:
            return None
        return self.map.get(name) or self.map.get(png_name(name))


def detect_rank(spec: DetectSpec) -> dict:
    """`detect` in this process: its rank's share of the images (all of them without torchrun or `jobs`)."""
    scales = parse_scales(spec.scale_search)
    module, config, res, dev, prec = setup(spec.model, spec.resolution, spec.celeba, spec.device,
                                                   need_encoder=False, batch_size=spec.batch_size,
                                                   precision=spec.precision)
    k = int(config["fingerprint_length"])
    ref = _Reference(spec.fingerprint, spec.embedded, k)
    threshold = usable_threshold(k, spec.fpr, 1, "`fpr`") if ref.given() else match_threshold(k, spec.fpr)
    ds = open_image_dataset(spec.data, res * spec.tiles, celeba=spec.celeba, skip_bad=True)
    relpaths = item_names(ds)
    if ref.map is not None and relpaths and not any(ref.of(name) is not None for name in relpaths):
        # every row would go without a decision: a list of training images given for generated ones, say
        raise GanprintError(f"`embedded` {spec.embedded} names none of the {len(relpaths)} images of `data` "
                            f"{spec.data} (it lists {next(iter(ref.map))}, ...; the folder holds {relpaths[0]}, "
                            f"...): it matches images by name, so give images made by a generator `fingerprint`")
    tiled = {"tiles": spec.tiles} if spec.tiles != 1 else {}  # only then: earlier runs keep their identity
    folder = _output_folder(spec, resolution=res, celeba=bool(spec.celeba), reference=ref.identity(), fpr=spec.fpr,
                            precision=prec, device=dev.type, scale_search=scales, runtime=spec.runtime, **tiled)
    opts = DecoderOptions(dev, prec, spec.runtime, "nchw", scales=scales, tiles=spec.tiles,
                          angles=search_angles(spec.scale_search))
    decoder = Decoder(spec.model, opts, STEGA_KINDS,
                      loaded=(module, config, read_metadata(spec.model)["ganprint.kind"]))
    rows, skipped, error = _decode_all(ds, relpaths, decoder, lambda names, bits, chosen: _rows(
        names, bits, chosen, ref, threshold), spec)
    summary = {"outdir": str(Path(spec.outdir)), "model": str(spec.model), "data": str(spec.data),
               "fingerprint_length": k, "resolution": res, "celeba": bool(spec.celeba), "fpr": spec.fpr,
               "match_threshold": threshold, "reference": ref.label, "precision": prec, "runtime": spec.runtime,
               "scale_search": list(scales) if scales is not None else None, **tiled}
    return _finish(Path(spec.outdir), rows, skipped, error, summary, spec.embedded if ref.map is not None else None,
                   folder)


def _output_folder(spec: DetectSpec, **settings) -> OutputFolder:
    """The output folder with detect's identity (every setting that changes an output byte), checked by every rank
    before any rank writes."""
    identity = {"model_sha256": sha256_file(spec.model), "data": os.path.realpath(spec.data), **settings}
    labels = {key: f"`{key}`" for key in identity} | {"model_sha256": "`model`", "reference": "the reference"}
    folder = OutputFolder(spec.outdir, "`outdir`", "detect", identity, labels=labels)
    try:
        folder.check()
        problem = None
    except GanprintError as e:
        problem = str(e)
    dist.barrier()
    if problem:
        raise GanprintError(problem)
    return folder


def _rows(names: list[str], bits: torch.Tensor, chosen: list | None, ref: _Reference, threshold: int) -> list[tuple]:
    """(name, JSONL line, txt line, bit accuracy or None, detected or None) per image of a batch."""
    k, bit_strs = bits.shape[1], bits_to_strs(bits)
    refs = [ref.of(name) for name in names]
    have = [j for j, r in enumerate(refs) if r is not None]
    scores = {}
    if have:
        scores = dict(zip(have, score_bits(bits[have], strs_to_bits([refs[j] for j in have], k), threshold)))
    out = []
    for j, name in enumerate(names):
        row = {"name": name, "bits": bit_strs[j]}
        if chosen is not None:
            if isinstance(chosen[j], tuple):
                row["scale"], row["angle"] = chosen[j]
            else:
                row["scale"] = chosen[j]
        score = scores.get(j)
        if score is not None:
            row.update(score)
        acc, det = (score["bit_accuracy"], score["detected"]) if score is not None else (None, None)
        out.append((name, json.dumps(row) + "\n", format_line(name, bit_strs[j]), acc, det))
    return out


def _decode_all(ds, relpaths, decoder: Decoder, rows_of, spec: DetectSpec):
    """This rank's rows, skipped files, and the first bad-file error (None with `skip_bad`)."""
    rows: list[tuple] = []
    skipped, error = [], None
    mine = list(range(dist.get_rank(), len(ds), dist.get_world_size()))
    pbar = progress_bar(len(mine), "detect")
    for batch in loader(ds, mine, spec.batch_size, spec.workers):
        skipped += [{"file": relpaths[i], "error": err} for i, err in batch["skipped"]]
        idx = batch["index"].tolist()
        if idx:
            bits, chosen = decoder.decode(batch["img"])
            rows += rows_of([relpaths[i] for i in idx], bits, chosen)
        pbar.update(len(idx) + len(batch["skipped"]))
        if batch["skipped"] and not spec.skip_bad:
            error = skipped[-1]["error"]
            break
    pbar.close()
    return rows, skipped, error


def _finish(out: Path, rows, skipped, error, summary: dict, embedded, folder: OutputFolder) -> dict:
    """Merge every rank's rows; rank 0 writes detected_fingerprints.txt, detections.jsonl and summary.json."""
    parts = dist.all_gather_object({"rows": rows, "skipped": skipped, "error": error})
    errors = [p["error"] for p in parts if p["error"]]
    if errors:
        raise BadImageError(f"{errors[0]}. Fix or remove the file, or re-run with `skip_bad`")
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: r[0])
    skipped = sorted((s for p in parts for s in p["skipped"]), key=lambda s: s["file"])
    scored = [r for r in rows if r[3] is not None]
    summary = {
        "outdir": summary["outdir"], "model": summary["model"], "data": summary["data"], "images": len(rows),
        "skipped": skipped, **{key: summary[key] for key in ("fingerprint_length", "resolution", "celeba", "fpr",
                                                             "match_threshold", "reference")},
        "with_reference": len(scored),
        "mean_bit_accuracy": float(np.mean([r[3] for r in scored])) if scored else None,
        "detected": sum(r[4] for r in scored),
        "detected_rate": float(np.mean([r[4] for r in scored])) if scored else None,
        "precision": summary["precision"], "scale_search": summary["scale_search"], "ganprint_version": __version__,
    }
    if embedded is not None and len(scored) < len(rows):
        log.warning("%d of %d images have no entry in %s", len(rows) - len(scored), len(rows), embedded)
    if dist.get_rank() == 0:
        _write(out, rows, summary, folder)
    dist.barrier()
    return summary


def _write(out: Path, rows, summary: dict, folder: OutputFolder) -> None:
    try:
        folder.claim()
        atomic_write_text(out / DETECTED_TXT, "".join(r[2] for r in rows))
        atomic_write_text(out / "detections.jsonl", "".join(r[1] for r in rows))
        atomic_write_json(out / "summary.json", summary)
    except OSError as e:
        raise output_error(out, e) from None
    k, n = summary["fingerprint_length"], summary["images"]
    if summary["with_reference"]:
        log.info("detect: %d images, mean bit accuracy %.4f, detected %d (%.1f %%) at FPR %g (>= %d of %d bits)",
                 n, summary["mean_bit_accuracy"], summary["detected"], 100 * summary["detected_rate"],
                 summary["fpr"], summary["match_threshold"], k)
    else:
        log.info("detect: decoded %d images (no reference given, so no detection decision)", n)
    for s in summary["skipped"]:
        log.warning("skipped %s: %s", s["file"], s["error"])
