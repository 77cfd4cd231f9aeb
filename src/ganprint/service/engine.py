"""What the routes call: decoders loaded once per worker, the registry, and a Hamming index kept in step with it.

Keeping in step: before answering, a worker compares the registry's `revision()` (row counts and largest ids)
with the one its index was built from, at most once every `sync_seconds`, and rebuilds the index when it
changed. So a model issued by any server on the same registry is attributable on every worker at most
`sync_seconds` (default 1 s) after its issue committed.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import load_export, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.files import sha256_file
from ganprint.core.hamming import HammingIndex
from ganprint.core.stats import count_matches, decode_bits, log10_p_value, match_threshold, p_value
from ganprint.nets.onnx import OnnxDecoder, onnx_runtime_for
from ganprint.nets.scalable import fingerprint_length_of
from ganprint.scalable.attribute import UNKNOWN, attribute_bits, decode_images
from ganprint.scalable.issue import issue_loaded, repair_issued
from ganprint.scalable.registry import CommitUnknown, Dataset, Issued, Registry
from ganprint.service.config import ServiceConfig

log = logging.getLogger(__name__)


@dataclass
class _Snapshot:
    """The registry as one worker last read it."""

    revision: tuple
    fp_ids: np.ndarray  # int64 [N]
    packed: np.ndarray  # uint8 [N, B]
    index: HammingIndex | None
    rows: dict[int, Issued]
    datasets: list[Dataset]


class _StegaDecoder:
    """One artificial-fingerprint decoder: uint8 [N, R, R, 3] -> bits [N, K] (as `ganprint detect` reads them)."""

    def __init__(self, path: str, runtime: str):
        self.path, self.sha256 = path, sha256_file(path)
        module, cfg, _ = load_export(path, kind=("stega", "stega-decoder"))
        self.k, self.resolution = int(cfg["fingerprint_length"]), int(cfg["resolution"])
        self.net = module.dec
        self.onnx = _onnx_session(path, runtime)

    @torch.inference_mode()
    def bits(self, imgs: np.ndarray) -> torch.Tensor:
        if self.onnx is not None:
            return torch.from_numpy(self.onnx.bits(imgs))
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, R, R] in [0, 1]
        return decode_bits(self.net(x).float())


_ONNX_DIR: list[str] = []


def _onnx_session(path: str, runtime: str) -> OnnxDecoder | None:
    """With --runtime onnx: the decoder exported to ONNX (in this worker's temporary folder) under ONNX Runtime."""
    if runtime != "onnx":
        return None
    if not _ONNX_DIR:
        _ONNX_DIR.append(tempfile.mkdtemp(prefix="ganprint-onnx-"))
        atexit.register(shutil.rmtree, _ONNX_DIR[0], True)
    return onnx_runtime_for(path, _ONNX_DIR[0], threads=torch.get_num_threads())


class _Batcher:
    """Runs `fn` (uint8 images [N, ...] -> N results) on the images of concurrent callers together.

    One thread takes whatever requests are waiting (up to `max_images`) and runs them as one batch, so
    under load a forward pass serves many requests; a lone request waits for nobody.
    """

    def __init__(self, fn, max_images: int):
        self.fn, self.max_images = fn, max_images
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="ganprint-batcher", daemon=True).start()

    def submit(self, imgs: np.ndarray) -> Future:
        """A future of the results of `imgs`, computed with whatever other images are waiting."""
        done: Future = Future()
        self.queue.put((imgs, done))
        return done

    def __call__(self, imgs: np.ndarray) -> list:
        return self.submit(imgs).result()

    def _run(self) -> None:
        while True:
            items = [self.queue.get()]
            n = len(items[0][0])
            while n < self.max_images:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
                n += len(items[-1][0])
            try:
                out = self.fn(np.concatenate([imgs for imgs, _ in items]))
            except BaseException as e:  # noqa: BLE001 - handed to every waiting request
                for _, done in items:
                    done.set_exception(e)
                continue
            start = 0
            for imgs, done in items:
                done.set_result(out[start:start + len(imgs)])
                start += len(imgs)


class Engine:
    """Decoders, registry and index of one worker; thread-safe (routes run in a thread pool)."""

    def __init__(self, cfg: ServiceConfig):
        self.cfg = cfg
        self.registry = Registry(cfg.registry, create=cfg.base_model is not None)
        self.decoder = self.decoder_onnx = None
        self.k = self.resolution = None
        if cfg.scalable_decoder:
            self.decoder, dcfg, _ = load_export(cfg.scalable_decoder, kind="scalable-decoder")
            self.k, self.resolution = fingerprint_length_of(dcfg), int(dcfg["resolution"])
            self.decoder_onnx = _onnx_session(cfg.scalable_decoder, cfg.runtime)
            k_reg = self.registry.bit_length()
            if k_reg not in (None, self.k):
                raise GanprintError(f"registry {self.registry.where} holds {k_reg}-bit fingerprints but "
                                    f"--scalable-decoder {cfg.scalable_decoder} reads {self.k} bits")
        self.stega = [_StegaDecoder(p, cfg.runtime) for p in cfg.stega_decoders]
        self.base = None
        if cfg.base_model:
            self.base, self.base_cfg, _ = load_export(cfg.base_model, kind="scalable-G")
            self.base_sha = sha256_file(cfg.base_model)
            if fingerprint_length_of(self.base_cfg) != self.k:
                raise GanprintError(f"--base-model {cfg.base_model} takes {fingerprint_length_of(self.base_cfg)} bits "
                                    f"but --scalable-decoder reads {self.k}")
        self._lock = threading.Lock()
        self._issue_lock = threading.Lock()
        self._unsettled = False
        self._attribute_batcher = _Batcher(self._attribute_now, cfg.batch_size)
        self._checked = 0.0
        self.snapshot = self._read_registry()

    # --- keeping in step with the registry ---------------------------------------------------------------

    def _read_registry(self) -> _Snapshot:
        rev = self.registry.revision()
        fp_ids, packed = self.registry.packed()
        rows = {r.fp_id: r for r in self.registry.list()}
        index = HammingIndex(packed) if len(fp_ids) else None
        log.info("registry %s: %d issued models, %d data sets", self.registry.where, len(fp_ids), rev[2])
        return _Snapshot(rev, fp_ids, packed, index, rows, self.registry.datasets())

    def sync(self, force: bool = False) -> _Snapshot:
        """The current snapshot, re-read when the registry changed (checked at most every sync_seconds)."""
        now = time.monotonic()
        if not force and now - self._checked < self.cfg.sync_seconds:
            return self.snapshot
        with self._lock:
            if force or now - self._checked >= self.cfg.sync_seconds:
                if force or self.registry.revision() != self.snapshot.revision:
                    self.snapshot = self._read_registry()
                self._checked = time.monotonic()
        return self.snapshot

    # --- attribution and detection -----------------------------------------------------------------------

    def scalable_bits(self, imgs: np.ndarray) -> torch.Tensor:
        if self.decoder_onnx is not None:
            return torch.from_numpy(self.decoder_onnx.bits(imgs))
        with torch.inference_mode():
            return decode_images(self.decoder, imgs, self.cfg.batch_size, "cpu")

    def attribute(self, imgs: np.ndarray) -> tuple[list[dict], dict]:
        """uint8 [N, R, R, 3] at the decoder's resolution -> `ganprint attribute`'s rows (+ holder, issue date).

        Concurrent requests are decoded together (`_Batcher`); the answers do not depend on the batch.
        """
        pairs = self._attribute_batcher(self._attributable(imgs))
        return [row for row, _ in pairs], pairs[0][1]

    async def attribute_async(self, imgs: np.ndarray) -> tuple[list[dict], dict]:
        """`attribute` for the event loop: waits for its batch without holding a thread."""
        pairs = await asyncio.wrap_future(self._attribute_batcher.submit(self._attributable(imgs)))
        return [row for row, _ in pairs], pairs[0][1]

    def _attributable(self, imgs: np.ndarray) -> np.ndarray:
        if self.decoder is None:
            raise GanprintError("this server has no --scalable-decoder, so it cannot attribute")
        return imgs

    def _attribute_now(self, imgs: np.ndarray) -> list[tuple[dict, dict]]:
        snap = self.sync()
        bits = self.scalable_bits(imgs)
        n = len(snap.fp_ids)
        info = {"issued_models": n, "bits": self.k, "fpr": self.cfg.fpr,
                "min_matches": match_threshold(self.k, self.cfg.fpr, max(1, n))}
        if n == 0:
            return [({"attributed": UNKNOWN, "reason": "no models have been issued yet"}, info) for _ in bits]
        rows = attribute_bits(bits, snap.fp_ids, snap.packed, self.k, self.cfg.fpr, snap.index)
        for r in rows:
            rec = snap.rows.get(r["attributed"]) if r["attributed"] != UNKNOWN else None
            r["who"] = rec.who if rec else None
            r["issued"] = rec.created if rec else None
        return [(r, info) for r in rows]

    def detect(self, imgs_by_res: dict[int, np.ndarray]) -> tuple[list[list[dict]], dict]:
        """Per image, per registered data set: `ganprint detect`'s statistics against its fingerprint."""
        snap = self.sync()
        n_img = len(next(iter(imgs_by_res.values()))) if imgs_by_res else 0
        out: list[list[dict]] = [[] for _ in range(n_img)]
        by_sha = {d.sha256: d for d in self.stega}
        for ds in snap.datasets:
            dec = by_sha.get(ds.decoder_sha256)
            if dec is None:
                for row in out:
                    row.append({"dataset": ds.name, "detected": None, "reason": "its decoder is not loaded here"})
                continue
            bits = dec.bits(imgs_by_res[dec.resolution])
            m = count_matches(bits, ds.bits).numpy()  # [N]
            threshold = match_threshold(ds.bit_length, self.cfg.fpr)
            for i, row in enumerate(out):
                row.append({"dataset": ds.name, "detected": bool(m[i] >= threshold),
                            "bit_accuracy": float(m[i]) / ds.bit_length, "matches": int(m[i]),
                            "p_value": float(p_value(int(m[i]), ds.bit_length)),
                            "log10_p": float(log10_p_value(int(m[i]), ds.bit_length)),
                            "min_matches": threshold})
        return out, {"datasets": len(snap.datasets), "fpr": self.cfg.fpr}

    def resolutions(self, kind: str) -> set[int]:
        """The image sides the decoders of an endpoint read."""
        if kind == "attribute":
            return {self.resolution} if self.resolution else set()
        return {d.resolution for d in self.stega}

    # --- issuing -----------------------------------------------------------------------------------------

    def issue(self, who: str, notes: str) -> dict:
        if self.base is None:
            raise GanprintError("this server has no --base-model, so it cannot issue models")
        with self._issue_lock, torch.no_grad():  # one issue at a time per worker; the registry locks across them
            if self._unsettled:  # a COMMIT whose outcome was unknown left a pending file: settle it first
                repair_issued(self.registry, self.cfg.models_dir, check_rows=False)
                self._unsettled = False
            try:
                row = issue_loaded(self.base, self.base_cfg, self.base_sha, self.registry, self.cfg.models_dir,
                                   who=who, notes=notes, min_distance=self.cfg.min_distance)
            except CommitUnknown:
                self._unsettled = True
                raise
        self.sync(force=True)
        return row

    def model_file(self, rec: Issued) -> Path | None:
        """The issued model file of a registry row when it is present and unchanged, else None."""
        if not rec.issued_path or not rec.issued_sha256:
            return None
        path = Path(rec.issued_path)
        if not path.is_file() or self.registry.owns(path) or sha256_file(path) != rec.issued_sha256:
            return None
        return path

    def ready(self) -> dict:
        """Readiness: decoders loaded and the registry answers."""
        snap = self.sync(force=True)
        return {"scalable_decoder": self.decoder is not None, "stega_decoders": len(self.stega),
                "issuing": self.base is not None, "registry": self.registry.where,
                "issued_models": len(snap.fp_ids), "data_sets": len(snap.datasets), "runtime": self.cfg.runtime}


def check_model_kinds(cfg: ServiceConfig) -> None:
    """Refuse wrong model files before any worker starts (one clear line instead of a worker traceback)."""
    wanted = [("--scalable-decoder", cfg.scalable_decoder, ("scalable-decoder",)),
              ("--base-model", cfg.base_model, ("scalable-G",))]
    wanted += [("--stega-decoder", p, ("stega", "stega-decoder")) for p in cfg.stega_decoders]
    for flag, path, kinds in wanted:
        if path is None:
            continue
        kind = read_metadata(path)["ganprint.kind"]
        if kind not in kinds:
            raise GanprintError(f"{flag} {path} holds a '{kind}' model; it needs {' or '.join(kinds)}")
