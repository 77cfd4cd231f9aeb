"""The FastAPI application: /v1 endpoints, health, metrics and the web page at `/`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ganprint._version import __version__
from ganprint.core.errors import GanprintError
from ganprint.scalable.attribute import UNKNOWN
from ganprint.scalable.registry import RegistryError
from ganprint.service import metrics
from ganprint.service.config import ServiceConfig
from ganprint.service.engine import Engine
from ganprint.service.uploads import ApiError, display_name, read_uploads

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")


class _TooLarge(HTTPException):
    """Raised from the request body stream once it passes the limit (FastAPI passes HTTPExceptions through)."""


class _Guard:
    """ASGI middleware: request-size limit (413 before or while reading) and per-route metrics."""

    def __init__(self, app, limit_bytes: int):
        self.app, self.limit = app, limit_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        length = dict(scope.get("headers") or []).get(b"content-length")

        async def sending(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        received = 0

        async def receiving():
            nonlocal received
            msg = await receive()
            received += len(msg.get("body", b""))
            if received > self.limit:
                raise _TooLarge(413, self._too_large())
            return msg

        try:
            if length is not None and length.isdigit() and int(length) > self.limit:
                metrics.count("REJECTED", 1, "too_large")
                await JSONResponse({"error": self._too_large()}, 413)(scope, receive, sending)
            else:
                await self.app(scope, receiving, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.observe_request(route, scope["method"], status[0], time.perf_counter() - start)

    def _too_large(self) -> str:
        return f"request body larger than this server's limit of {self.limit / 2**20:g} MB (--max-upload-mb)"


class IssueRequest(BaseModel):
    who: str = Field(min_length=1, max_length=200, description="The holder the model is issued to.")
    notes: str = Field("", max_length=2000, description="Free text recorded in the registry.")


def create_app(cfg: ServiceConfig, engine: Engine | None = None) -> FastAPI:
    """The application for `cfg` (the engine, i.e. decoders and registry, is loaded here unless given)."""
    engine = engine or Engine(cfg.validate())
    app = FastAPI(title="ganprint provenance service", version=__version__,
                  description="Attribute images to the issued model that made them, detect fingerprinted data "
                              "sets, and issue fingerprinted models. The web page is at /.")
    app.state.engine = engine
    if cfg.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization"])
    app.add_middleware(_Guard, limit_bytes=int(cfg.max_upload_mb * 2**20))
    _error_handlers(app)
    _verify_routes(app, engine, cfg)
    _issue_routes(app, engine)
    _meta_routes(app, engine, cfg)
    return app


def _verify_routes(app: FastAPI, engine: Engine, cfg: ServiceConfig) -> None:
    # Uploads are decoded in at most decode_threads threads: bounded memory, and few threads contending for the
    # interpreter lock with the decoding thread; requests beyond that wait in the event loop, in order.
    decode_slots = anyio.CapacityLimiter(cfg.decode_threads)

    def uploads(files: list[UploadFile], kind: str):
        if len(files) > cfg.max_files:
            metrics.count("REJECTED", 1, "too_many_files")
            raise ApiError(413, f"{len(files)} files in one request; this server takes at most {cfg.max_files} "
                                   f"(--max-files)")
        resolutions = engine.resolutions(kind)
        if not resolutions:
            raise ApiError(404, f"this server has no decoder for /v1/{kind}")
        names = [display_name(f.filename, i) for i, f in enumerate(files)]
        try:
            imgs = read_uploads([(n, f.file) for n, f in zip(names, files)], resolutions, cfg.max_pixels)
        except ApiError:
            metrics.count("REJECTED", 1, "bad_image")
            raise
        metrics.count("IMAGES", len(names), kind)
        return names, imgs

    @app.post("/v1/attribute", tags=["verify"], openapi_extra=_UPLOAD_BODY)
    async def attribute(request: Request) -> JSONResponse:
        """Per image: the issued model whose fingerprint it carries (id, holder, issue date), or `unknown`.

        Same statistics and preprocessing as `ganprint attribute`: bit accuracy of the nearest issued fingerprint
        and its Bonferroni-corrected p-value; attributed when that p-value is <= the server's --fpr.
        """
        async with request.form() as form:
            names, imgs = await anyio.to_thread.run_sync(uploads, _form_files(form), "attribute", limiter=decode_slots)
        rows, info = await engine.attribute_async(imgs[engine.resolution])
        for name, row in zip(names, rows):
            row["file"] = name
            metrics.count("ATTRIBUTIONS", 1, "attributed" if row["attributed"] != UNKNOWN else "unknown")
        return JSONResponse({"results": rows, **info})

    @app.post("/v1/detect", tags=["verify"], openapi_extra=_UPLOAD_BODY)
    async def detect(request: Request) -> JSONResponse:
        """Per image and registered data set: whether the image carries its artificial fingerprint.

        Same statistics as `ganprint detect`: bit accuracy, p-value P[Bin(K, 1/2) >= matches], detected when
        the matches reach the threshold of the server's --fpr.
        """
        def run(files):
            names, imgs = uploads(files, "detect")
            return names, *engine.detect(imgs)

        async with request.form() as form:
            names, per_image, info = await anyio.to_thread.run_sync(run, _form_files(form), limiter=decode_slots)
        for rows in per_image:
            for r in rows:
                metrics.count("DETECTIONS", 1, {True: "detected", False: "not_detected"}.get(r["detected"], "n/a"))
        return JSONResponse({"results": [{"file": n, "datasets": rows} for n, rows in zip(names, per_image)], **info})


# The request body of the upload routes, for the API docs (the routes read the form themselves: cheaper than
# FastAPI's parameter validation, and the same limits and errors).
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {"files": {
        "type": "array", "items": {"type": "string", "format": "binary"}, "description": "One or more images."}}}}}}}


def _form_files(form) -> list[UploadFile]:
    files = [v for k, v in form.multi_items() if k == "files" and not isinstance(v, str)]
    if not files:
        raise ApiError(400, "no images: send them as multipart/form-data, one or more parts named 'files'")
    return files


def _issue_routes(app: FastAPI, engine: Engine) -> None:
    def issuer(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not token or scheme.lower() != "bearer":
            raise HTTPException(401, "an issuer token is required: Authorization: Bearer <token> "
                                     "(create one with `ganprint token create`)", {"WWW-Authenticate": "Bearer"})
        owner = engine.registry.token_owner(token.strip())
        if owner is None:
            raise HTTPException(403, "this token is not valid for this registry")
        return owner

    @app.post("/v1/issue", tags=["issue"])
    def issue(body: IssueRequest, token_owner: str = Depends(issuer)) -> dict:
        """Issue a fingerprinted model to a holder (needs an issuer token), exactly like `ganprint issue`."""
        try:
            row = engine.issue(body.who, body.notes)
        except RegistryError as e:
            if "--min-distance" in str(e):  # the fingerprint space is exhausted at this distance
                raise ApiError(409, str(e)) from None
            raise
        metrics.count("ISSUED")
        log.info("issued model #%d to %s (token of %s)", row["fp_id"], row["who"], token_owner)
        return {"id": row["fp_id"], "who": row["who"], "issued": row["created"], "sha256": row["issued_sha256"],
                "min_distance": row["min_distance"], "download": f"/v1/models/{row['fp_id']}/download"}

    @app.get("/v1/models", tags=["registry"])
    def models() -> dict:
        """Every issued model: id, holder, issue date (no fingerprints, no file paths)."""
        return {"models": [_public(r) for r in engine.registry.list()]}

    @app.get("/v1/models/{fp_id}", tags=["registry"])
    def model(fp_id: int) -> dict:
        return _public(_get(fp_id))

    def _get(fp_id: int):
        try:
            return engine.registry.get(fp_id)
        except RegistryError:
            raise ApiError(404, f"no issued model with id {fp_id}") from None

    @app.get("/v1/models/{fp_id}/download", tags=["issue"])
    def download(fp_id: int, token_owner: str = Depends(issuer)):
        """The issued model's safetensors file (needs an issuer token)."""
        path = engine.model_file(_get(fp_id))
        if path is None:
            raise ApiError(410, f"the file of model #{fp_id} is not on this server (or changed since it was "
                                   f"issued); give every server the same --models-dir")
        return FileResponse(path, media_type="application/octet-stream", filename=f"issued-{fp_id:06d}.safetensors")


def _public(rec) -> dict:
    return {"id": rec.fp_id, "who": rec.who, "issued": rec.created, "notes": rec.notes,
            "bits": rec.bit_length, "min_distance": rec.min_distance}


def _meta_routes(app: FastAPI, engine: Engine, cfg: ServiceConfig) -> None:
    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz():
        try:
            return {"status": "ready", **engine.ready()}
        except GanprintError as e:
            return JSONResponse({"status": "not ready", "error": str(e)}, 503)

    @app.get("/metrics", tags=["operations"])
    def prometheus():
        text = metrics.render()
        if text is None:
            return JSONResponse({"error": "install prometheus_client for /metrics"}, 501)
        return Response(text, media_type=metrics.CONTENT_TYPE)

    @app.get("/v1/info", tags=["operations"])
    def info() -> dict:
        """What this server can do and its limits (the web page reads this)."""
        return {"version": __version__, "attribute": engine.decoder is not None, "detect": bool(engine.stega),
                "issue": engine.base is not None, "max_upload_mb": cfg.max_upload_mb, "max_files": cfg.max_files,
                "fpr": cfg.fpr, "runtime": cfg.runtime}

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def upload_error(request: Request, exc: ApiError):
        return JSONResponse(exc.to_json(), exc.status)

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError):
        return JSONResponse({"error": str(exc)}, 503)  # the registry is unreachable or unusable

    @app.exception_handler(GanprintError)
    async def ganprint_error(request: Request, exc: GanprintError):
        return JSONResponse({"error": str(exc)}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


def create_app_from_env() -> FastAPI:
    """uvicorn's factory in each worker process: the settings come from GANPRINT_SERVICE_CONFIG."""
    return create_app(ServiceConfig.from_env())

