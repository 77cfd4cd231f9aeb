"""Nearest-fingerprint search by Hamming distance over packed bits (numpy, or faiss for large registries)."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


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
