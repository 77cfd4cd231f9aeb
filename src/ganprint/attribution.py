"""Attribution: decode an image's fingerprint, find the nearest issued fingerprint, decide with a p-value.

Decision rule. Under "this image comes from none of the N issued models", each decoded bit matches a given
fingerprint with probability 1/2, so the matches m ~ Bin(K, 1/2) and p = P[X >= m] (`ganprint.metrics.bits`).
Because we test the *nearest* of N fingerprints, the p-value is Bonferroni-corrected (min(1, N p)), and an
image is attributed only when m >= `match_threshold(K, fpr, N)`, i.e. the corrected p-value <= fpr;
otherwise it is `unknown`.

Search. Fingerprints are packed to bytes; the exact nearest neighbour is found by XOR + popcount
(`np.bitwise_count` on uint64 words, in chunks so memory stays bounded), or by faiss `IndexBinaryFlat`
when faiss is installed and the registry is large.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .errors import GanprintError
from .fingerprints import bits_to_hex, pack_bits
from .metrics.bits import decode_bits, log10_p_value, match_threshold

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
FAISS_MIN_N = 4096  # below this the numpy search is as fast and avoids building an index
_CHUNK_BYTES = 64 << 20  # bound on the XOR temporary of the numpy search


def _as_words(packed: np.ndarray) -> np.ndarray:
    """uint8 [N, B] -> uint64 [N, ceil(B/8)] (zero-padded), so that popcount works on 64 bits at a time."""
    n, b = packed.shape
    w = (b + 7) // 8
    out = np.zeros((n, w * 8), dtype=np.uint8)
    out[:, :b] = packed
    return out.view(np.uint64)  # [N, W]


def hamming_to_all(query: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Hamming distances between packed queries uint8 [Q, B] and packed fingerprints [N, B] -> int [Q, N]."""
    q, d = _as_words(np.ascontiguousarray(query)), _as_words(np.ascontiguousarray(db))
    return np.bitwise_count(q[:, None, :] ^ d[None, :, :]).sum(axis=-1, dtype=np.int64)  # [Q, N]


class HammingIndex:
    """Exact nearest-neighbour search over packed fingerprints (numpy popcount, or faiss for large N)."""

    def __init__(self, packed: np.ndarray, use_faiss: bool | None = None):
        self.packed = np.ascontiguousarray(packed, dtype=np.uint8)  # [N, B]
        self.n, self.nbytes = self.packed.shape
        self._faiss = None
        if use_faiss is None:
            use_faiss = self.n >= FAISS_MIN_N
        if use_faiss:
            try:
                import faiss
            except ImportError:
                log.info("faiss is not installed; using the numpy popcount search over %d fingerprints", self.n)
            else:
                self._faiss = faiss.IndexBinaryFlat(self.nbytes * 8)
                self._faiss.add(self.packed)
        self._words = _as_words(self.packed) if self._faiss is None else None

    @property
    def backend(self) -> str:
        return "faiss" if self._faiss is not None else "numpy"

    def search(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Packed queries uint8 [Q, B] -> (row of the nearest fingerprint int64 [Q], its distance int64 [Q])."""
        query = np.ascontiguousarray(query, dtype=np.uint8)
        if query.ndim != 2 or query.shape[1] != self.nbytes:
            raise ValueError(f"queries must be packed [Q, {self.nbytes}], got {query.shape}")
        if self.n == 0:
            raise ValueError("cannot search an empty index")
        if self._faiss is not None:
            dist, idx = self._faiss.search(query, 1)
            return idx[:, 0].astype(np.int64), dist[:, 0].astype(np.int64)
        qw = _as_words(query)  # [Q, W]
        per_query = max(1, _CHUNK_BYTES // max(1, self._words.nbytes))
        idx = np.empty(len(qw), np.int64)
        dist = np.empty(len(qw), np.int64)
        for s in range(0, len(qw), per_query):
            d = np.bitwise_count(qw[s:s + per_query, None, :] ^ self._words[None]).sum(-1, dtype=np.int64)  # [q, N]
            idx[s:s + per_query] = d.argmin(axis=1)
            dist[s:s + per_query] = d[np.arange(len(d)), idx[s:s + per_query]]
        return idx, dist


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
                     batch_size: int = 64, device: str = "auto") -> dict:
    """Decode every image under `input_dir`, attribute it against the registry, write JSONL rows; return a summary.

    Images of another size than the decoder's are centre-cropped and resized to it (as the data sets were).
    The summary is also written beside the JSONL as `<out>.summary.json`.
    """
    from .checkpoint import load_export
    from .packed import _list_images, _read_rgb, center_crop_resize
    from .registry import Registry
    from .utils import atomic_path, atomic_write_json, resolve_device

    dev = resolve_device(device)
    decoder, cfg, _ = load_export(decoder_path, kind="scalable-decoder", device=dev)
    k, res = int(cfg["fingerprint_bits"]), int(cfg["resolution"])
    reg = Registry(registry_path, create=False)
    if reg.bit_length() not in (None, k):
        raise GanprintError(f"registry {registry_path} holds {reg.bit_length()}-bit fingerprints but decoder "
                            f"{decoder_path} reads {k} bits; use the matching --decoder / --registry")
    fp_ids, packed = reg.packed()
    who = {r.fp_id: r.who for r in reg.list()}
    src = Path(input_dir)
    if not src.is_dir():
        raise GanprintError(f"--input {src} is not a directory of images")
    files = _list_images(src)
    if not files:
        raise GanprintError(f"--input {src} holds no images")
    index = HammingIndex(packed)
    rows: list[dict] = []
    resized = 0
    for s in range(0, len(files), batch_size):
        batch = []
        for f in files[s:s + batch_size]:
            img = _read_rgb(f)
            if img.shape[:2] != (res, res):
                img, resized = center_crop_resize(img, res), resized + 1
            batch.append(img)
        bits = decode_images(decoder, np.stack(batch), batch_size, dev)
        for f, r in zip(files[s:s + batch_size], attribute_bits(bits, fp_ids, packed, k, fpr, index)):
            r = {"file": f.relative_to(src).as_posix(), **r}
            r["who"] = who.get(r["attributed"]) if r["attributed"] != UNKNOWN else None
            rows.append(r)
    if resized:
        log.warning("%d images were not %dx%d and were centre-cropped/resized before decoding", resized, res, res)
    out = Path(out_jsonl)
    import json

    with atomic_path(out) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = summarize(rows, len(fp_ids), k, fpr)
    summary["search_backend"] = index.backend
    atomic_write_json(out.with_name(out.name + ".summary.json"), summary)
    log.info("attributed %d of %d images (%d unknown) against %d issued fingerprints", summary["attributed"],
             len(rows), summary[UNKNOWN], len(fp_ids))
    return summary
