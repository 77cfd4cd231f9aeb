"""Attribution: decode an image's fingerprint, find the nearest issued fingerprint, decide with a p-value.

Decision rule. Under "this image comes from none of the N issued models", each decoded bit matches a given
fingerprint with probability 1/2, so the matches m ~ Bin(K, 1/2) and p = P[X >= m] (`ganprint.core.stats`).
Because we test the *nearest* of N fingerprints, the p-value is Bonferroni-corrected (min(1, N p)), and an
image is attributed only when m >= `match_threshold(K, fpr, N)`, i.e. the corrected p-value <= fpr;
otherwise it is `unknown`.

Search. Fingerprints are packed to bytes; the exact nearest neighbour is found by XOR + popcount
(`np.bitwise_count` on uint64 words, in chunks so memory stays bounded), or by faiss `IndexBinaryFlat`
when faiss is installed and the registry is large.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_json, atomic_write_text, check_writable_file
from ganprint.core.fingerprints import bits_to_hex, pack_bits
from ganprint.core.hamming import HammingIndex
from ganprint.core.images import preprocess, read_image
from ganprint.core.paths import check_new_file, check_overlap
from ganprint.core.runtime import resolve_device
from ganprint.core.stats import decode_bits, log10_p_value, match_threshold, usable_threshold
from ganprint.data.listing import list_images
from ganprint.nets.onnx import onnx_runtime_for
from ganprint.nets.scalable import fingerprint_length_of
from ganprint.scalable.registry import Registry, registry_file

log = logging.getLogger(__name__)

UNKNOWN = "unknown"


def attribute_bits(decoded: torch.Tensor | np.ndarray, fp_ids: np.ndarray, packed: np.ndarray, k: int,
                   fpr: float = 1e-6, index: HammingIndex | None = None) -> list[dict]:
    """Attribute decoded bits [Q, K] (0/1) to the nearest of N issued fingerprints (`fp_ids` [N], `packed` [N, B]).

    Returns one dict per query: nearest fp_id, hamming, matches, bit_accuracy, log10 p-values (raw and
    Bonferroni-corrected for N), and `attributed` = the fp_id, or "unknown" when the corrected p-value > fpr.
    """
    n = len(fp_ids)
    if n == 0:
        raise GanprintError("the registry is empty: nothing to attribute to; issue models with `ganprint issue`")
    if not 0 < fpr < 1:
        raise GanprintError(f"--fpr must be in (0, 1), got {fpr}")
    q = pack_bits(decoded)  # [Q, B]
    index = index or HammingIndex(packed)
    rows, dist = index.search(q)
    threshold = match_threshold(k, fpr, n)
    matches = k - dist
    lp = np.atleast_1d(log10_p_value(matches, k))
    lpc = np.minimum(0.0, lp + math.log10(n))  # Bonferroni: min(1, N p)
    out = []
    for i in range(len(q)):
        fp = int(fp_ids[rows[i]])
        ok = bool(matches[i] >= threshold)
        out.append({
            "decoded": bits_to_hex(decoded[i]), "nearest_fp_id": fp, "hamming": int(dist[i]),
            "matches": int(matches[i]), "bit_accuracy": float(matches[i]) / k,
            "log10_p": float(lp[i]), "log10_p_corrected": float(lpc[i]), "p_value_corrected": float(10 ** lpc[i]),
            "attributed": fp if ok else UNKNOWN,
        })
    return out


def summarize(rows: list[dict], n_issued: int, k: int, fpr: float) -> dict:
    """Counts per attributed fingerprint, the unknown count and the decision threshold."""
    counts = Counter(str(r["attributed"]) for r in rows)
    return {"images": len(rows), "attributed": len(rows) - counts.get(UNKNOWN, 0), UNKNOWN: counts.get(UNKNOWN, 0),
            "per_fingerprint": {key: v for key, v in sorted(counts.items()) if key != UNKNOWN},
            "issued": n_issued, "bits": k, "fpr": fpr, "min_matches": match_threshold(k, fpr, n_issued)}


@torch.no_grad()
def decode_images(decoder: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 64,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images [N, R, R, 3] -> decoded fingerprint bits float 0/1 [N, K] with a scalable decoder."""
    out = []
    for s in range(0, len(images), batch_size):
        x = torch.as_tensor(np.asarray(images[s:s + batch_size])).to(device)
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [n, 3, R, R] in [-1, 1]
        _, logits = decoder(x)
        out.append(decode_bits(logits).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def attribute_images(decoder_path: str | os.PathLike, registry_path: str | os.PathLike,
                     input_dir: str | os.PathLike, out_jsonl: str | os.PathLike, fpr: float = 1e-6,
                     batch_size: int = 64, device: str = "auto", runtime: str = "torch",
                     overwrite: bool = False) -> dict:
    """Decode every image under `input_dir`, attribute it against the registry, write JSONL rows; return a summary.

    Images of another size than the decoder's are centre-cropped and resized to it (as the data sets were).
    The summary is also written beside the JSONL as `<out>.summary.json`. `runtime` "onnx" decodes with ONNX
    Runtime on the CPU (the same bits). The output is checked before any work: it may not be or lie inside an
    input (the registry, the decoder, the images), and existing files are replaced only with `overwrite`.
    """
    bounds.BATCH.check(batch_size, "--batch-size")
    out = Path(out_jsonl)
    summary_path = out.with_name(out.name + ".summary.json")
    check_overlap([("--decoder", decoder_path, "decoder"), ("--registry", registry_file(registry_path), "registry"),
                   ("--input", input_dir, "image folder")], [("--out", out, "file"), ("--out", summary_path, "file")])
    for path in (out, summary_path):
        check_new_file(path, "--out", overwrite)
    check_writable_file(out, "--out")
    src = Path(input_dir)
    if not src.is_dir():
        raise GanprintError(f"--input {src} is not a directory of images")
    files = list_images(src)
    decode, k, res = _decoder(decoder_path, device, runtime)
    reg = Registry(registry_path, create=False)
    if reg.bit_length() not in (None, k):
        raise GanprintError(f"registry {registry_path} holds {reg.bit_length()}-bit fingerprints but decoder "
                            f"{decoder_path} reads {k} bits; use the matching --decoder / --registry")
    fp_ids, packed = reg.packed()
    usable_threshold(k, fpr, max(1, len(fp_ids)), "--fpr")
    who = {r.fp_id: r.who for r in reg.list()}
    index = HammingIndex(packed)
    rows: list[dict] = []
    resized = 0
    for s in range(0, len(files), batch_size):
        chunk = files[s:s + batch_size]
        imgs = [read_image(f) for f in chunk]
        resized += sum(img.shape[:2] != (res, res) for img in imgs)
        bits = decode(np.stack([preprocess(img, res) for img in imgs]))  # [n, K]
        for f, r in zip(chunk, attribute_bits(bits, fp_ids, packed, k, fpr, index)):
            r = {"file": f.relative_to(src).as_posix(), **r}
            r["who"] = who.get(r["attributed"]) if r["attributed"] != UNKNOWN else None
            rows.append(r)
    if resized:
        log.warning("%d images were not %dx%d and were centre-cropped/resized before decoding", resized, res, res)
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in rows))
    summary = summarize(rows, len(fp_ids), k, fpr)
    summary.update(search_backend=index.backend, runtime=runtime)
    atomic_write_json(summary_path, summary)
    log.info("attributed %d of %d images (%d unknown) against %d issued fingerprints", summary["attributed"],
             len(rows), summary[UNKNOWN], len(fp_ids))
    return summary


def _decoder(decoder_path: str | os.PathLike, device: str, runtime: str
             ) -> tuple[Callable[[np.ndarray], torch.Tensor], int, int]:
    """A function uint8 [N, R, R, 3] -> bits [N, K] for the scalable decoder in `decoder_path`, with K and R."""
    if runtime not in ("torch", "onnx"):
        raise GanprintError(f"--runtime must be torch or onnx, got {runtime!r}")
    dev = resolve_device(device)
    decoder, cfg, _ = load_export(decoder_path, kind="scalable-decoder", device=dev)
    k, res = fingerprint_length_of(cfg), int(cfg["resolution"])
    if runtime == "torch":
        return (lambda imgs: decode_images(decoder, imgs, len(imgs), dev)), k, res
    with tempfile.TemporaryDirectory(prefix="ganprint-onnx-") as tmp:  # the session keeps the graph in memory
        runner = onnx_runtime_for(decoder_path, tmp, threads=torch.get_num_threads())
    return (lambda imgs: torch.from_numpy(runner.bits(imgs))), k, res
