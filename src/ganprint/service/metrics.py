"""Prometheus metrics of the service (prometheus_client; in multiprocess mode when uvicorn runs several workers).

With several workers the CLI points PROMETHEUS_MULTIPROC_DIR at a fresh folder before they start, so /metrics
sums every worker's counts whichever worker answers.
"""

from __future__ import annotations

import os

try:
    import prometheus_client as _prom
except ImportError:  # the service still runs; /metrics then says what to install
    _prom = None

CONTENT_TYPE = _prom.CONTENT_TYPE_LATEST if _prom else "text/plain"

if _prom is not None:
    REQUESTS = _prom.Counter("ganprint_http_requests_total", "HTTP requests by route, method and status",
                             ["route", "method", "status"])
    LATENCY = _prom.Histogram("ganprint_http_request_seconds", "HTTP request latency by route", ["route"],
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
    IMAGES = _prom.Counter("ganprint_images_decoded_total", "Images decoded, by endpoint", ["endpoint"])
    ATTRIBUTIONS = _prom.Counter("ganprint_attributions_total", "Attribution verdicts", ["outcome"])
    DETECTIONS = _prom.Counter("ganprint_detections_total", "Detection verdicts per data set", ["outcome"])
    ISSUED = _prom.Counter("ganprint_models_issued_total", "Models issued by this server")
    REJECTED = _prom.Counter("ganprint_uploads_rejected_total", "Rejected uploads by reason", ["reason"])
    SOFTBINDING = _prom.Counter("ganprint_softbinding_queries_total", "C2PA soft-binding queries by outcome",
                                ["outcome"])


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    if _prom is not None:
        REQUESTS.labels(route, method, str(status)).inc()
        LATENCY.labels(route).observe(seconds)


def count(metric: str, n: int = 1, label: str | None = None) -> None:
    """Add `n` to one of IMAGES, ATTRIBUTIONS, DETECTIONS, ISSUED, REJECTED, SOFTBINDING (with its label)."""
    if _prom is not None and n:
        m = globals()[metric]
        (m.labels(label) if label is not None else m).inc(n)


def render() -> bytes | None:
    """The exposition text, or None when prometheus_client is missing."""
    if _prom is None:
        return None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        reg = _prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return _prom.generate_latest(reg)
    return _prom.generate_latest()
