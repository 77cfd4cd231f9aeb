"""The service's settings: one dataclass, filled from flags / environment variables by the CLI.

Its errors name fields in backticks; `ganprint serve` shows its flags in their place.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ganprint.core import bounds
from ganprint.core.bounds import Bound, check_fields, optional
from ganprint.core.errors import GanprintError

ENV_CONFIG = "GANPRINT_SERVICE_CONFIG"  # how the CLI hands the settings to uvicorn's worker processes

# Request limits: far above any real use, low enough that one request's buffers stay allocatable.
UPLOAD_MB = Bound(0, 10240, lo_open=True)
FILES = Bound(1, 10000, integer=True)
PIXELS = Bound(1, 10**9, integer=True)
REQUEST_PIXELS = Bound(1, 10**10, integer=True)
CONNECTIONS = Bound(1, 10**6, integer=True)
BODY_RATE = Bound(0, 10**7, lo_open=True)  # KB/s
SYNC_SECONDS = bounds.SECONDS_POS
RATE = Bound(0, 10**9)  # images per minute per client; 0: no limit
ANSWERS = ("full", "decision")
# What a "decision" answer keeps of a row of /v1/attribute or /v1/detect: the verdict and whom it names.
DECISION_FIELDS = frozenset({"file", "attributed", "who", "issued", "dataset", "detected", "reason"})


@dataclass
class ServiceConfig:
    """What one `ganprint serve` process (and each of its workers) runs with."""

    registry: str = "registry.sqlite"  # SQLite path, sqlite:///..., or postgresql://...
    # scalable-decoder export (or the stega-decoder of latent issued decoders): enables /v1/attribute
    scalable_decoder: str | None = None
    stega_decoders: list[str] = field(default_factory=list)  # stega / stega-decoder exports: /v1/detect
    base_model: str | None = None  # shared scalable-G (or latent-modulated) export: enables /v1/issue
    models_dir: str = "issued"  # where issued models are written (shared storage when several machines issue)
    fpr: float = 1e-6  # per-image false-positive rate (attribution: Bonferroni-corrected over issued models)
    min_distance: int | None = None  # issuing: minimum Hamming distance [K // 4]
    max_upload_mb: float = 20.0  # per request
    max_files: int = 64  # per request
    max_pixels: int = 4096 * 4096  # per image, checked from the header before decoding
    sync_seconds: float = 1.0  # how often a worker looks for new registry rows
    runtime: str = "torch"  # "torch" or "onnx" (ONNX Runtime for the decoders)
    cors_origins: list[str] = field(default_factory=list)  # none: CORS off
    decode_threads: int = 4  # concurrent image decodes per worker (bounds memory)
    batch_size: int = 64
    # Per request and connection (benchmarks/perf/RESULTS-service.md, "Limits"): the pixels decoded for one request,
    # bounding its CPU; slow or stalled clients (service/protocol.py).
    max_request_pixels: int = 4 * 4096 * 4096
    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its headers
    body_timeout: float = 30.0  # longest pause in a request body; also the grace before min_body_rate applies
    min_body_rate: float = 16.0  # KB/s: slowest average upload accepted after body_timeout seconds
    keep_alive_timeout: float = 5.0  # idle seconds before an open connection is closed
    max_connections: int = 512  # open connections per worker; more are answered 503 and closed at once
    # "full": per image its matches, p-values (and the decoded bits of /v1/attribute); "decision": only the
    # decision, so that a querying attacker gets no score to climb (docs/threat-model.md, "Oracle").
    answer: str = "full"
    # Images per minute that one client (its address as the server sees it) may send to /v1/attribute and
    # /v1/detect, counted by each worker; 0: no limit. A querying attacker needs about 1000 per image
    # (docs/threat-model.md, "The oracle attacker").
    rate_limit: float = 600.0

    def validate(self) -> "ServiceConfig":
        if self.scalable_decoder is None and not self.stega_decoders:
            raise GanprintError("give `scalable_decoder` and/or `stega_decoders`: the service has nothing to "
                                "decode with")
        check_fields(self, _BOUNDS)
        if self.max_request_pixels < self.max_pixels:
            raise GanprintError(f"`max_request_pixels` ({self.max_request_pixels}) must be at least `max_pixels` "
                                f"({self.max_pixels}), or no image of the largest size could be checked")
        if self.answer not in ANSWERS:
            raise GanprintError(f"`answer` must be one of {', '.join(ANSWERS)}, got {self.answer}")
        if self.runtime not in ("torch", "onnx"):
            raise GanprintError(f"`runtime` must be torch or onnx, got {self.runtime}")
        if self.base_model is not None and self.scalable_decoder is None:
            raise GanprintError("`base_model` (issuing) needs `scalable_decoder` too")
        for name, path in [("scalable_decoder", self.scalable_decoder), ("base_model", self.base_model)] + \
                [("stega_decoders", p) for p in self.stega_decoders]:
            if path is not None and not os.path.isfile(path):
                raise GanprintError(f"`{name}` {path} does not exist")
        return self

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "ServiceConfig":
        text = os.environ.get(ENV_CONFIG)
        if not text:
            raise GanprintError(f"{ENV_CONFIG} is not set; start the service with `ganprint serve`")
        return cls(**json.loads(text))


_BOUNDS = {"fpr": bounds.FPR, "min_distance": optional(bounds.DISTANCE), "max_upload_mb": UPLOAD_MB,
           "max_files": FILES, "max_pixels": PIXELS, "sync_seconds": SYNC_SECONDS, "decode_threads": bounds.PROCESSES,
           "batch_size": bounds.BATCH, "max_request_pixels": REQUEST_PIXELS, "header_timeout": bounds.SECONDS_POS,
           "body_timeout": bounds.SECONDS_POS, "min_body_rate": BODY_RATE, "keep_alive_timeout": bounds.SECONDS_POS,
           "max_connections": CONNECTIONS, "rate_limit": RATE}
