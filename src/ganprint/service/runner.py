"""Start the service under uvicorn: check the settings once, then hand them to every worker through the environment."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from ganprint.core.errors import GanprintError
from ganprint.core.paths import check_overlap
from ganprint.registry.backends import registry_file
from ganprint.registry.issued import repair_issued
from ganprint.registry.store import Registry
from ganprint.service.config import ENV_CONFIG, ServiceConfig
from ganprint.service.engine import check_model_kinds

log = logging.getLogger(__name__)

# An import string, so that only uvicorn's worker processes import uvicorn's protocol classes (the CLI stays light).
HTTP_PROTOCOL = "ganprint.service.protocol:GuardedHTTP"


def serve(cfg: ServiceConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info") -> None:
    """Run `ganprint serve` until interrupted; user errors in the settings raise GanprintError before starting."""
    try:
        import uvicorn
    except ImportError:
        raise GanprintError("ganprint serve needs the service extra: pip install -e '.[service]' in the ganprint "
                            "checkout") from None
    cfg.validate()
    check_overlap([("registry", registry_file(cfg.registry), "registry"),
                   ("scalable_decoder", cfg.scalable_decoder, "decoder"), ("base_model", cfg.base_model, "model"),
                   *[("stega_decoders", p, "decoder") for p in cfg.stega_decoders]],
                  [("models_dir", cfg.models_dir)])
    check_model_kinds(cfg)
    registry = Registry(cfg.registry, create=cfg.base_model is not None)  # reachable; created/migrated to issue
    registry.require_local()  # several servers, or workers, share it: never a SQLite file on a network file system
    registry.check()  # every row readable: a damaged registry is one line here, not a traceback in each worker
    if cfg.base_model is not None:  # row iff file: settle what a killed server left in `models_dir`
        repair_issued(registry, cfg.models_dir)
    if workers < 1:
        raise GanprintError(f"`workers` must be >= 1, got {workers}")
    os.environ[ENV_CONFIG] = cfg.to_env()
    prom_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prom_dir = tempfile.mkdtemp(prefix="ganprint-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir  # before any worker imports prometheus_client
    log.info("serving on http://%s:%d/ with %d worker(s); API docs at /docs", host, port, workers)
    try:
        uvicorn.run("ganprint.service.app:create_app_from_env", factory=True, host=host, port=port,
                    workers=workers, log_level=log_level, server_header=False, http=HTTP_PROTOCOL,
                    timeout_keep_alive=cfg.keep_alive_timeout)  # type: ignore[arg-type] - a float works
    finally:
        if prom_dir:
            shutil.rmtree(prom_dir, ignore_errors=True)
