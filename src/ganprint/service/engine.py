"""What the routes call: decoders loaded once per worker, the registry, and a Hamming index kept in step with it.

Keeping in step: before answering, a worker compares the registry's `revision()` (row counts and largest ids)
with the one its index was built from, at most once every `sync_seconds`, and rebuilds the index when it
changed. So a model issued by any server on the same registry is attributable on every worker at most
`sync_seconds` (default 1 s) after its issue committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
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
from ganprint.core.stats import match_threshold
from ganprint.inference.decoders import STEGA_KINDS, Decoder, DecoderOptions
from ganprint.inference.scoring import UNKNOWN, attribute_bits, score_bits
from ganprint.latent.issue import issue_loaded_latent
from ganprint.nets.scalable import fingerprint_length_of
from ganprint.registry.datasets import Dataset
from ganprint.registry.errors import CommitUnknown
from ganprint.registry.fingerprints import Issued
from ganprint.registry.issued import committed_file, repair_issued
from ganprint.registry.store import Registry
from ganprint.scalable.issue import issue_loaded
from ganprint.service.config import DECISION_FIELDS, ServiceConfig

log = logging.getLogger(__name__)

# The shared models the service issues from, each with the kind of decoder that reads its issued models: a StyleGAN2
# scalable generator, or a latent diffusion autoencoder whose issued decoders a stega-decoder reads.
DECODER_OF_BASE = {"scalable-G": "scalable-decoder", "latent-modulated": "stega-decoder"}
ATTRIBUTION_KINDS = tuple(DECODER_OF_BASE.values())


@dataclass
class _Snapshot:
    """The registry as one worker last read it."""

    revision: tuple
    fp_ids: np.ndarray  # int64 [N]
    packed: np.ndarray  # uint8 [N, B]
    index: HammingIndex | None
    rows: dict[int, Issued]
    datasets: list[Dataset]


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
        # Every decoder reads uploads as [N, R, R, 3] uint8 arrays on the CPU, in fp32.
        options = DecoderOptions(runtime=cfg.runtime, layout="nhwc")
        self.decoder: Decoder | None = None
        self.k = self.resolution = None
        if cfg.scalable_decoder:
            self.decoder = Decoder(cfg.scalable_decoder, options, kinds=ATTRIBUTION_KINDS)
            self.k, self.resolution = self.decoder.k, self.decoder.resolution
            k_reg = self.registry.fingerprint_length()
            if k_reg not in (None, self.k):
                raise GanprintError(f"registry {self.registry.where} holds {k_reg}-bit fingerprints but "
                                    f"`scalable_decoder` {cfg.scalable_decoder} reads {self.k} bits")
        self.stega = {sha256_file(p): Decoder(p, options, kinds=STEGA_KINDS) for p in cfg.stega_decoders}
        self.base = None
        if cfg.base_model:
            self._load_base(cfg.base_model)
        self._lock = threading.Lock()
        self._issue_lock = threading.Lock()
        self._unsettled = False
        self._attribute_batcher = _Batcher(self._attribute_now, cfg.batch_size)
        self._checked = 0.0
        self.snapshot = self._read_registry()

    def _load_base(self, path: str) -> None:
        """The shared model to issue from, checked against the attribution decoder (its kind and bits)."""
        self.base, self.base_cfg, meta = load_export(path, kind=tuple(DECODER_OF_BASE))
        self.base_kind = meta["ganprint.kind"]
        self.base_sha = sha256_file(path)
        _check_pair(path, self.base_kind, self.decoder.kind)
        k = self.base.fingerprint_length if self.base_kind == "latent-modulated" else fingerprint_length_of(
            self.base_cfg)
        if k != self.k:
            raise GanprintError(f"`base_model` {path} takes {k} bits but `scalable_decoder` reads {self.k}")

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
        return self.decoder.bits(imgs, self.cfg.batch_size)

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
            raise GanprintError("this server has no `scalable_decoder`, so it cannot attribute")
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
        for ds in snap.datasets:
            dec = self.stega.get(ds.decoder_sha256)
            if dec is None:
                for row in out:
                    row.append({"dataset": ds.name, "detected": None, "reason": "its decoder is not loaded here"})
                continue
            threshold = match_threshold(ds.fingerprint_length, self.cfg.fpr)
            scores = score_bits(dec.bits(imgs_by_res[dec.resolution]), ds.bits, threshold)
            for row, score in zip(out, scores):
                row.append({"dataset": ds.name, **score, "min_matches": threshold})
        return out, {"datasets": len(snap.datasets), "fpr": self.cfg.fpr}

    def answer(self, rows: list[dict]) -> list[dict]:
        """The rows as the server's `answer` setting shows them: whole, or their decision fields only."""
        if self.cfg.answer == "full":
            return rows
        return [{k: v for k, v in r.items() if k in DECISION_FIELDS} for r in rows]

    def resolutions(self, kind: str) -> set[int]:
        """The image sides the decoders of an endpoint read."""
        if kind == "attribute":
            return {self.resolution} if self.resolution else set()
        return {d.resolution for d in self.stega.values()}

    # --- issuing -----------------------------------------------------------------------------------------

    def issue(self, who: str, notes: str) -> dict:
        if self.base is None:
            raise GanprintError("this server has no `base_model`, so it cannot issue models")
        with self._issue_lock, torch.no_grad():  # one issue at a time per worker; the registry locks across them
            if self._unsettled:  # a COMMIT whose outcome was unknown left a pending file: settle it first
                repair_issued(self.registry, self.cfg.models_dir, check_rows=False)
                self._unsettled = False
            try:
                holder = {"who": who, "notes": notes, "min_distance": self.cfg.min_distance}
                if self.base_kind == "latent-modulated":
                    row = issue_loaded_latent(self.base, self.base_sha, self.registry, self.cfg.models_dir, **holder)
                else:
                    row = issue_loaded(self.base, self.base_cfg, self.base_sha, self.registry, self.cfg.models_dir,
                                       **holder)
            except CommitUnknown:
                self._unsettled = True
                raise
        self.sync(force=True)
        return row

    def model_file(self, rec: Issued) -> Path | None:
        """The issued model file of a registry row when it is present and unchanged, else None."""
        if rec.issued_path and self.registry.owns(rec.issued_path):
            return None
        return committed_file(rec)

    def ready(self) -> dict:
        """Readiness: decoders loaded and the registry answers."""
        snap = self.sync(force=True)
        return {"scalable_decoder": self.decoder is not None, "stega_decoders": len(self.stega),
                "issuing": self.base is not None, "registry": self.registry.where,
                "issued_models": len(snap.fp_ids), "data_sets": len(snap.datasets), "runtime": self.cfg.runtime}


def check_model_kinds(cfg: ServiceConfig) -> None:
    """Refuse wrong model files before any worker starts (one clear line instead of a worker traceback)."""
    wanted = [("`scalable_decoder`", cfg.scalable_decoder, ATTRIBUTION_KINDS),
              ("`base_model`", cfg.base_model, tuple(DECODER_OF_BASE))]
    wanted += [("`stega_decoders`", p, STEGA_KINDS) for p in cfg.stega_decoders]
    found = {}
    for flag, path, kinds in wanted:
        if path is None:
            continue
        kind = found[flag] = read_metadata(path)["ganprint.kind"]
        if kind not in kinds:
            raise GanprintError(f"{flag} {path} holds a '{kind}' model; it needs {' or '.join(kinds)}")
    if cfg.base_model and cfg.scalable_decoder:
        _check_pair(cfg.base_model, found["`base_model`"], found["`scalable_decoder`"])


def _check_pair(base_path: str, base_kind: str, decoder_kind: str) -> None:
    """Refuse a shared model whose issued models the attribution decoder cannot read (a StyleGAN2 generator with a
    latent fingerprint decoder, or the other way round)."""
    if DECODER_OF_BASE[base_kind] != decoder_kind:
        raise GanprintError(f"`base_model` {base_path} is a {base_kind}, whose issued models a "
                            f"{DECODER_OF_BASE[base_kind]} reads, but `scalable_decoder` is a {decoder_kind}; give "
                            "the decoder trained with that model")
