"""Detect fingerprints in images: the Python API behind `ganprint detect`.

Images get the preprocessing embed gives them (`ganprint.inference.stream`); the files are split across ranks
under torchrun or `--jobs`, and rank 0 writes one result, in sorted name order.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganprint._version import __version__
from ganprint.artificial.model import setup
from ganprint.artificial.records import DETECTED_TXT, format_line, read_fingerprint_txt
from ganprint.core import dist
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_json, atomic_write_text, check_writable_dir, output_error, sha256_file
from ganprint.core.fingerprints import as_bits, bits_to_str, bits_to_strs, strs_to_bits
from ganprint.core.images import BadImageError
from ganprint.core.paths import OutputFolder, check_overlap
from ganprint.core.stats import count_matches, decode_bits, log10_p_value, match_threshold, p_value, usable_threshold
from ganprint.data.folders import open_image_dataset
from ganprint.inference.jobs import MIN_IMAGES_PER_DETECT_JOB, plan_jobs, run_jobs
from ganprint.inference.layout import net_dtype, prepare, to_float01
from ganprint.inference.stream import item_names, loader, progress_bar, walk_once
from ganprint.inference.writer import png_name
from ganprint.nets.onnx import onnx_runtime_for
from ganprint.perturb.scale_search import ScaleSearch, parse_scales

log = logging.getLogger(__name__)

__all__ = ["detect"]


@walk_once
def detect(model, data, outdir, resolution=None, celeba=False, fingerprint=None, embedded=None, fpr=1e-6,
           batch_size=64, device="auto", skip_bad=False, num_workers=None, precision="auto", jobs=1,
           scale_search=None, runtime="torch") -> dict:
    """Decode the fingerprint of every image under `data`; returns the summary (also in summary.json).

    Writes `detected_fingerprints.txt` (`<name> <bits>`, sorted), `detections.jsonl` and `summary.json` in
    `outdir`. With a reference (`fingerprint` for all images, or `embedded`: an embedded_fingerprints.txt
    matched by name) each row gets bit_accuracy, matches, p_value, log10_p and detected
    (matches >= match_threshold(K, fpr)); an `fpr` so small that no image could reach the threshold is refused.
    `precision` and `jobs` as in `embed`. `scale_search` ("auto" or fractions; `ganprint.perturb.scale_search`)
    also decodes each image after undoing candidate crops and keeps the most confident decoding (rows then carry
    the chosen `scale`); p-values stay exact. `runtime` "onnx" decodes with ONNX Runtime (CPU) instead of
    PyTorch: the same bits (tested), for verifiers without a GPU. The output folder is checked before any work:
    it may not be, hold or lie inside an input, and it takes only a re-run of the same detect (the same identity:
    every setting that changes an output byte; `ganprint.core.paths.OutputFolder`).
    """
    parse_scales(scale_search)
    if runtime not in ("torch", "onnx"):
        raise GanprintError(f"--runtime must be torch or onnx, got {runtime!r}")
    if runtime == "onnx" and scale_search is not None:
        raise GanprintError("--scale-search runs with --runtime torch only")
    if fingerprint is not None and embedded is not None:
        raise GanprintError("pass either --fingerprint or --embedded, not both")
    if not 0 < fpr < 1:
        raise GanprintError(f"--fpr must be in (0, 1), got {fpr}")
    check_overlap([("--model", model, "model"), ("--data", data, "data"), ("--embedded", embedded, "list")],
                  [("--outdir", outdir)])
    check_writable_dir(outdir, "--outdir")
    kwargs = dict(model=model, data=data, outdir=outdir, resolution=resolution, celeba=celeba,
                  fingerprint=fingerprint, embedded=embedded, fpr=fpr, batch_size=batch_size, device=device,
                  skip_bad=skip_bad, num_workers=num_workers, precision=precision, scale_search=scale_search,
                  runtime=runtime)
    n_jobs = plan_jobs(jobs, device, data, model, MIN_IMAGES_PER_DETECT_JOB)
    if n_jobs > 1:
        return run_jobs(lambda kw: detect_rank(**kw), kwargs, n_jobs)  # until detect has its spec
    return detect_rank(**kwargs)


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


def detect_rank(model, data, outdir, resolution, celeba, fingerprint, embedded, fpr, batch_size, device, skip_bad,
                num_workers, precision, scale_search, runtime="torch") -> dict:
    """`detect` in this process: its rank's share of the images (all of them without torchrun or `--jobs`)."""
    scales = parse_scales(scale_search)
    module, config, res, dev, prec = setup(model, resolution, celeba, device, need_encoder=False,
                                           batch_size=batch_size, precision=precision)
    k = int(config["fingerprint_length"])
    ref = _Reference(fingerprint, embedded, k)
    threshold = usable_threshold(k, fpr) if ref.given() else match_threshold(k, fpr)
    ds = open_image_dataset(data, res, celeba=celeba, skip_bad=True)
    relpaths = item_names(ds)
    folder = _output_folder(outdir, model, data, resolution=res, celeba=bool(celeba), reference=ref.identity(),
                            fpr=fpr, precision=prec, device=dev.type, scale_search=scales, runtime=runtime)
    decode = _onnx_decode(model) if runtime == "onnx" else _torch_decode(module, dev, prec, scales)
    rows, skipped, error = _decode_all(ds, relpaths, decode, _Scorer(k, threshold, ref), batch_size, num_workers,
                                       skip_bad)
    summary = {"outdir": str(Path(outdir)), "model": str(model), "data": str(data), "fingerprint_length": k,
               "resolution": res, "celeba": bool(celeba), "fpr": fpr, "match_threshold": threshold,
               "reference": ref.label, "precision": prec, "runtime": runtime,
               "scale_search": list(scales) if scales is not None else None}
    return _finish(Path(outdir), rows, skipped, error, summary, embedded if ref.map is not None else None, folder)


def _output_folder(outdir, model, data, **settings) -> OutputFolder:
    """The output folder with detect's identity (every setting that changes an output byte), checked by every rank
    before any rank writes."""
    identity = {"model_sha256": sha256_file(model), "data": os.path.realpath(data), **settings}
    folder = OutputFolder(outdir, "--outdir", "detect", identity, labels={"model_sha256": "--model"})
    try:
        folder.check()
        problem = None
    except GanprintError as e:
        problem = str(e)
    dist.barrier()
    if problem:
        raise GanprintError(problem)
    return folder


def _onnx_decode(model):
    """uint8 [N, 3, R, R] -> (bits [N, K], None) by ONNX Runtime, on the model's decoder exported to a temporary
    folder (the session holds the graph in memory, so the folder can go at once)."""
    with tempfile.TemporaryDirectory(prefix="ganprint-onnx-") as tmp:
        runner = onnx_runtime_for(model, tmp, threads=torch.get_num_threads())

    def decode(img_u8: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.from_numpy(runner.bits(img_u8.permute(0, 2, 3, 1).numpy())), None  # [N, K]
    return decode


def _torch_decode(module, dev, prec, scales):
    """uint8 [N, 3, R, R] -> (bits [N, K], the chosen scales or None) with PyTorch."""
    dtype = net_dtype(prec)
    dec = prepare(module.dec, dev, prec, prefer_cl=True)
    # The candidates are unzoomed in fp32 and rounded to the network's dtype after, as under autocast; unzoom keeps
    # the input's layout (full_like), so they need no other conversion.
    search = ScaleSearch(lambda t: dec(t.to(dtype)).float(), scales) if scales is not None else None

    def decode(img_u8: torch.Tensor) -> tuple[torch.Tensor, list | None]:
        if search is not None:
            logits = search(to_float01(img_u8, dev, prefer_cl=True))  # from [N, 3, R, R] fp32
            return decode_bits(logits).cpu(), search.last_scales.tolist()
        return decode_bits(dec(to_float01(img_u8, dev, dtype, prefer_cl=True)).float()).cpu(), None  # [N, K]
    return decode


class _Scorer:
    """Serialises decoded rows, with the statistics of a reference where one is given."""

    def __init__(self, k: int, threshold: int, ref: _Reference):
        self.k, self.threshold, self.ref = k, threshold, ref
        # p-values by table lookup: one scipy call per possible match count instead of two per batch
        self.p_table, self.logp_table = p_value(np.arange(k + 1), k), log10_p_value(np.arange(k + 1), k)

    def rows(self, names: list[str], bits: torch.Tensor, chosen: list | None) -> list[tuple]:
        """(name, JSONL line, txt line, bit accuracy or None, detected or None) per image of a batch."""
        k, bit_strs = self.k, bits_to_strs(bits)
        refs = [self.ref.of(name) for name in names]
        have = [j for j, r in enumerate(refs) if r is not None]
        stats = {}
        if have:
            m = count_matches(bits[have], strs_to_bits([refs[j] for j in have], k)).numpy()  # [M]
            stats = dict(zip(have, zip(m.tolist(), self.p_table[m].tolist(), self.logp_table[m].tolist())))
        out = []
        for j, name in enumerate(names):
            row = {"name": name, "bits": bit_strs[j]}
            if chosen is not None:
                row["scale"] = chosen[j]
            acc = det = None
            if j in stats:
                matches, p, lp = stats[j]
                acc, det = matches / k, bool(matches >= self.threshold)
                row.update({"bit_accuracy": acc, "matches": int(matches), "p_value": float(p),
                            "log10_p": float(lp), "detected": det})
            out.append((name, json.dumps(row) + "\n", format_line(name, bit_strs[j]), acc, det))
        return out


def _decode_all(ds, relpaths, decode, scorer: _Scorer, batch_size, num_workers, skip_bad):
    """This rank's rows, skipped files, and the first bad-file error (None with `skip_bad`)."""
    rows: list[tuple] = []
    skipped, error = [], None
    mine = list(range(dist.get_rank(), len(ds), dist.get_world_size()))
    pbar = progress_bar(len(mine), "detect")
    with torch.inference_mode():
        for batch in loader(ds, mine, batch_size, num_workers):
            skipped += [{"file": relpaths[i], "error": err} for i, err in batch["skipped"]]
            idx = batch["index"].tolist()
            if idx:
                bits, chosen = decode(batch["img"])
                rows += scorer.rows([relpaths[i] for i in idx], bits, chosen)
            pbar.update(len(idx) + len(batch["skipped"]))
            if batch["skipped"] and not skip_bad:
                error = skipped[-1]["error"]
                break
    pbar.close()
    return rows, skipped, error


def _finish(out: Path, rows, skipped, error, summary: dict, embedded, folder: OutputFolder) -> dict:
    """Merge every rank's rows; rank 0 writes detected_fingerprints.txt, detections.jsonl and summary.json."""
    parts = dist.all_gather_object({"rows": rows, "skipped": skipped, "error": error})
    errors = [p["error"] for p in parts if p["error"]]
    if errors:
        raise BadImageError(f"{errors[0]}. Fix or remove the file, or re-run with --skip-bad")
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
