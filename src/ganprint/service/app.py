"""The FastAPI application: /v1 endpoints, health, metrics, API docs and the web page at `/`."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ganprint._version import __version__
from ganprint.core.errors import GanprintError
from ganprint.core.threat import P_VALUE_COVERS
from ganprint.registry.errors import (INT64, RegistryConflict, RegistryError, RegistryInputError, RegistryNotFound,
                                     check_text)
from ganprint.registry.tokens import Token
from ganprint.scalable.attribute import UNKNOWN
from ganprint.service import metrics, softbinding
from ganprint.service import schemas as S
from ganprint.service.config import ServiceConfig
from ganprint.service.engine import Engine
from ganprint.service.logs import ABORTED, install_access_log_redaction, quiet
from ganprint.service.ratelimit import ImageBudget
from ganprint.service.uploads import ApiError, display_name, read_uploads

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")

# The status of each type of RegistryError that answers the request itself (the first type that matches, in this
# order); any other RegistryError is the registry being unusable (503).
_REGISTRY_STATUS: tuple[tuple[type[RegistryError], int], ...] = (
    (RegistryInputError, 400), (RegistryNotFound, 404), (RegistryConflict, 409))

# Query parameters that would carry a credential, and the shape of ganprint's own tokens.
_SECRET_PARAMS = {"token", "access_token", "api_key", "apikey", "key", "auth", "authorization", "bearer"}
_TOKEN_SHAPE = re.compile(r"gpt_[A-Za-z0-9_-]{16,}")


class SafeJSON(JSONResponse):
    """JSON with non-ASCII escaped: a lone surrogate echoed from a request cannot break the encoding (500)."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


class _TooLarge(HTTPException):
    """Raised from the request body stream once it passes the limit (FastAPI passes HTTPExceptions through)."""


class _Guard:
    """ASGI middleware: tokens refused in URLs, request-size limit (413 before or while reading), one log line for
    an upload the client (or the protocol's deadlines) cut off, and per-route metrics."""

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
            if _secret_in_query(scope.get("query_string", b"")):
                await SafeJSON({"error": "send tokens only in the Authorization header (Bearer), never in the URL: "
                                         "URLs are logged by proxies and browsers; if this was a real token, revoke "
                                         "it (ganprint token revoke)"}, 400)(scope, receive, sending)
            elif length is not None and length.isdigit() and int(length) > self.limit:
                metrics.count("REJECTED", 1, "too_large")
                await SafeJSON({"error": self._too_large()}, 413)(scope, receive, sending)
            else:
                await self.app(scope, receiving, sending)
        except ClientDisconnect:
            status[0] = 499  # nobody to answer; the protocol already logged a connection it cut itself
            if ABORTED not in scope:
                quiet.warning("disconnect", "%s %s: the client went away after %d bytes of the request body",
                              scope["method"], scope["path"], received)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.observe_request(route, scope["method"], status[0], time.perf_counter() - start)

    def _too_large(self) -> str:
        return f"request body larger than this server's limit of {self.limit / 2**20:g} MB (`max_upload_mb`)"


def _secret_in_query(query: bytes) -> bool:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return any(k.lower() in _SECRET_PARAMS or _TOKEN_SHAPE.search(k + " " + v) for k, v in pairs)


def _text(what: str, value: str, max_len: int, min_len: int = 0, lines: bool = False) -> str:
    try:
        return check_text(what, value, max_len, min_len, lines)
    except RegistryInputError as e:
        raise ValueError(str(e)) from None  # pydantic makes it a 422 naming the field


class IssueRequest(BaseModel):
    who: str = Field(min_length=1, max_length=200, description="The holder the model is issued to.")
    notes: str = Field("", max_length=2000, description="Free text recorded in the registry.")

    @field_validator("who")
    @classmethod
    def _who(cls, v: str) -> str:
        return _text("who", v, 200, 1)

    @field_validator("notes")
    @classmethod
    def _notes(cls, v: str) -> str:
        return _text("notes", v, 2000, lines=True)


def create_app(cfg: ServiceConfig, engine: Engine | None = None) -> FastAPI:
    """The application for `cfg` (the engine, i.e. decoders and registry, is loaded here unless given)."""
    engine = engine or Engine(cfg.validate())
    install_access_log_redaction()
    app = FastAPI(title="ganprint provenance service", version=__version__, docs_url=None, redoc_url=None,
                  default_response_class=SafeJSON,
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
    _docs_routes(app)
    return app


def _verify_routes(app: FastAPI, engine: Engine, cfg: ServiceConfig) -> None:
    # Uploads are decoded in at most decode_threads threads: bounded memory, and few threads contending for the
    # interpreter lock with the decoding thread; requests beyond that wait in the event loop, in order.
    decode_slots = anyio.CapacityLimiter(cfg.decode_threads)
    budget = ImageBudget(cfg.rate_limit, max(cfg.rate_limit, cfg.max_files)) if cfg.rate_limit else None

    def charge(request: Request, files: list) -> None:
        """Spend the client's images before any is decoded; 429 with Retry-After when its budget is spent."""
        if budget is None or len(files) > cfg.max_files:  # too many files: uploads() answers 413
            return
        wait = budget.take(request.client.host if request.client else "-", len(files))
        if wait is not None:
            metrics.count("REJECTED", 1, "rate_limited")
            seconds = max(1, math.ceil(wait))
            raise ApiError(429, f"this client sent more than {cfg.rate_limit:g} images a minute (`rate_limit`); "
                                f"retry in {seconds} s", headers={"Retry-After": str(seconds)})

    def uploads(files: list[UploadFile], kind: str):
        if len(files) > cfg.max_files:
            metrics.count("REJECTED", 1, "too_many_files")
            raise ApiError(413, f"{len(files)} files in one request; this server takes at most {cfg.max_files} "
                                   f"(`max_files`)")
        resolutions = engine.resolutions(kind)
        if not resolutions:
            raise ApiError(404, f"this server has no decoder for /v1/{kind}")
        names = [display_name(f.filename, i) for i, f in enumerate(files)]
        try:
            imgs = read_uploads([(n, f.file) for n, f in zip(names, files)], resolutions, cfg.max_pixels,
                                cfg.max_request_pixels)
        except ApiError:
            metrics.count("REJECTED", 1, "bad_image")
            raise
        metrics.count("IMAGES", len(names), kind)
        return names, imgs

    softbinding.install(app, engine, charge, decode_slots)

    @app.post("/v1/attribute", tags=["verify"], openapi_extra=_UPLOAD_BODY,
              responses={200: {"model": S.AttributeAnswer}, **S.errors(400, 404, 413, 429, 503)})
    async def attribute(request: Request) -> JSONResponse:
        """Per image: the issued model whose fingerprint it carries (id, holder, issue date), or `unknown`.

        Same statistics and preprocessing as `ganprint attribute`: bit accuracy of the nearest issued fingerprint
        and its Bonferroni-corrected p-value; attributed when that p-value is <= the server's `fpr`. The answer's
        `p_value_covers` says what that p-value covers: an untampered image, not a forgery (docs/threat-model.md).
        """
        async with request.form() as form:
            files = _form_files(form)
            charge(request, files)
            names, imgs = await anyio.to_thread.run_sync(uploads, files, "attribute", limiter=decode_slots)
        rows, info = await engine.attribute_async(imgs[engine.resolution])
        for name, row in zip(names, rows):
            row["file"] = name
            metrics.count("ATTRIBUTIONS", 1, "attributed" if row["attributed"] != UNKNOWN else "unknown")
        return SafeJSON({"results": engine.answer(rows), **info, "p_value_covers": P_VALUE_COVERS})

    @app.post("/v1/detect", tags=["verify"], openapi_extra=_UPLOAD_BODY,
              responses={200: {"model": S.DetectAnswer}, **S.errors(400, 404, 413, 429, 503)})
    async def detect(request: Request) -> JSONResponse:
        """Per image and registered data set: whether the image carries its artificial fingerprint.

        Same statistics as `ganprint detect`: bit accuracy, p-value P[Bin(K, 1/2) >= matches], detected when
        the matches reach the threshold of the server's `fpr`. The answer's `p_value_covers` says what the
        p-value covers: an untampered image, not a forgery or a removal (docs/threat-model.md).
        """
        def run(files):
            names, imgs = uploads(files, "detect")
            return names, *engine.detect(imgs)

        async with request.form() as form:
            files = _form_files(form)
            charge(request, files)
            names, per_image, info = await anyio.to_thread.run_sync(run, files, limiter=decode_slots)
        for rows in per_image:
            for r in rows:
                metrics.count("DETECTIONS", 1, {True: "detected", False: "not_detected"}.get(r["detected"], "n/a"))
        results = [{"file": n, "datasets": engine.answer(rows)} for n, rows in zip(names, per_image)]
        return SafeJSON({"results": results, **info,
                         "p_value_covers": P_VALUE_COVERS})


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


def _bearer(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header, None without the header."""
    auth = request.headers.get("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "the Authorization header must read 'Bearer <token>'", {"WWW-Authenticate": "Bearer"})
    return token.strip()


def _authorize(engine: Engine, request: Request, scope: str) -> Token:
    """The request's token when it is known, not revoked or expired, and allows `scope`; else 401 / 403."""
    secret = _bearer(request)
    if secret is None:
        raise HTTPException(401, f"this needs a token with scope {scope}: Authorization: Bearer <token> (an "
                                 f"operator creates one with `ganprint token create`, scope {scope})", {"WWW-Authenticate": "Bearer"})
    token = engine.registry.token(secret)  # looked up on every request: revocation and expiry act at once
    if token is None:
        raise HTTPException(403, "this token is not valid for this registry")
    refusal = token.refusal()
    if refusal is not None:
        raise HTTPException(403, refusal)
    if not token.allows(scope):
        raise HTTPException(403, f"this token's scopes ({' '.join(token.scopes)}) do not include {scope}")
    return token


def _needs(engine: Engine, scope: str):
    """A route dependency: the request's token, authorized for `scope`."""
    def dependency(request: Request) -> Token:
        return _authorize(engine, request, scope)
    return dependency


def _model_id():
    return PathParam(ge=INT64[0], le=INT64[1], description="A model id (a 64-bit integer).")


def _issue_routes(app: FastAPI, engine: Engine) -> None:
    @app.post("/v1/issue", tags=["issue"], openapi_extra=S.SECURED,
              responses={200: {"model": S.IssueAnswer}, **S.errors(400, 401, 403, 409, 422, 503)})
    def issue(body: IssueRequest, token: Token = Depends(_needs(engine, "issue"))) -> dict:
        """Issue a fingerprinted model to a holder (a token with scope `issue`), exactly like `ganprint issue`."""
        row = engine.issue(body.who, body.notes)
        metrics.count("ISSUED")
        log.info("issued model #%d to %s (token #%d of %s)", row["fp_id"], row["who"], token.token_id, token.name)
        return {"id": row["fp_id"], "who": row["who"], "issued": row["created"], "sha256": row["issued_sha256"],
                "min_distance": row["min_distance"], "download": f"/v1/models/{row['fp_id']}/download"}

    @app.get("/v1/models", tags=["registry"], responses={200: {"model": S.ModelList}, **S.errors(503)})
    def models() -> dict:
        """Every issued model: id, holder, issue date (no fingerprints, no file paths)."""
        return {"models": [_public(r) for r in engine.registry.list()]}

    @app.get("/v1/models/{fp_id}", tags=["registry"],
             responses={200: {"model": S.ModelInfo}, **S.errors(404, 422, 503)})
    def model(fp_id: int = _model_id()) -> dict:
        return _public(_get(fp_id))

    def _get(fp_id: int):
        try:
            return engine.registry.get(fp_id)
        except RegistryNotFound:
            raise ApiError(404, f"no issued model with id {fp_id}") from None

    @app.get("/v1/models/{fp_id}/download", tags=["issue"], openapi_extra=S.SECURED,
             responses={200: {"content": {"application/octet-stream": {}}, "description": "The safetensors file"},
                        **S.errors(401, 403, 404, 410, 422)})
    def download(fp_id: int = _model_id(), token: Token = Depends(_needs(engine, "download:own"))):
        """The issued model's safetensors file: a token with scope `download:all`, or `download:own` for a model
        issued to the token's own name."""
        rec = _get(fp_id)
        if rec.who != token.name and not token.allows("download:all"):
            raise ApiError(403, f"this token (for {token.name}) downloads only models issued to {token.name}; model "
                                f"#{fp_id} was not (scope download:all downloads any)")
        path = engine.model_file(rec)
        if path is None:
            raise ApiError(410, f"the file of model #{fp_id} is not on this server (or changed since it was "
                                   f"issued); give every server the same `models_dir`")
        return FileResponse(path, media_type="application/octet-stream", filename=f"issued-{fp_id:06d}.safetensors")


def _public(rec) -> dict:
    return {"id": rec.fp_id, "who": rec.who, "issued": rec.created, "notes": rec.notes,
            "bits": rec.fingerprint_length, "min_distance": rec.min_distance}


def _meta_routes(app: FastAPI, engine: Engine, cfg: ServiceConfig) -> None:
    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(request: Request):
        """Ready or not, to anyone; what is loaded and the registry's location only with a `metrics` token."""
        try:
            details = engine.ready()
        except GanprintError as e:
            quiet.warning("not-ready", "not ready: %s", e)  # the reason stays in the server's log
            return SafeJSON({"status": "not ready"}, 503)
        try:
            allowed = _bearer(request) is not None and _authorize(engine, request, "metrics") is not None
        except HTTPException:
            allowed = False
        return {"status": "ready", **(details if allowed else {})}

    @app.get("/metrics", tags=["operations"], openapi_extra=S.SECURED,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}, **S.errors(401, 403)})
    def prometheus(token: Token = Depends(_needs(engine, "metrics"))):
        """Prometheus text (a token with scope `metrics`)."""
        text = metrics.render()
        if text is None:
            return SafeJSON({"error": "install prometheus_client for /metrics"}, 501)
        return Response(text, media_type=metrics.CONTENT_TYPE)

    @app.get("/v1/info", tags=["operations"], responses={200: {"model": S.ServerInfo}})
    def info() -> dict:
        """What this server can do and its limits (the web page reads this)."""
        return {"version": __version__, "attribute": engine.decoder is not None, "detect": bool(engine.stega),
                "issue": engine.base is not None, "max_upload_mb": cfg.max_upload_mb, "max_files": cfg.max_files,
                "max_pixels": cfg.max_pixels, "max_request_pixels": cfg.max_request_pixels,
                "fpr": cfg.fpr, "runtime": cfg.runtime, "answer": cfg.answer, "rate_limit": cfg.rate_limit}

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def docs_assets() -> Path | None:
    """The folder of Swagger UI's script and style from the fastapi-offline package, None when it is missing."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).with_name("static")
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _docs_routes(app: FastAPI) -> None:
    # FastAPI's own /docs and /redoc load their scripts (and ReDoc its fonts) from CDNs: blank pages offline, and a
    # request to a third party per visit. Both are served from the fastapi-offline package instead.
    _declare_bearer(app)
    assets = docs_assets()
    if assets is None:
        log.warning("API docs at /docs and /redoc are off: install fastapi-offline (pip install -e '.[service]' in "
                    "the ganprint checkout)")

        @app.get("/docs", include_in_schema=False)
        @app.get("/redoc", include_in_schema=False)
        def no_docs():
            raise ApiError(404, "the API docs need the fastapi-offline package (pip install -e '.[service]' in the "
                                "ganprint checkout); the API description is at /openapi.json")
        return
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to a validator site

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        page = get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                              redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)
        # ReDoc's script draws its vendor's logo from the vendor's CDN whatever the options; the policy keeps the
        # browser from asking (the logo then hides itself), so a visit fetches nothing from a third party.
        page.headers["Content-Security-Policy"] = _REDOC_POLICY
        return page


_REDOC_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
                 "worker-src 'self' blob:; connect-src 'self'")


def _declare_bearer(app: FastAPI) -> None:
    """The OpenAPI description with the bearer scheme the token routes check (`_authorize`)."""
    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[S.BEARER] = {
                "type": "http", "scheme": "bearer",
                "description": "A ganprint token (`ganprint token create`) with the scope the route names"}
            app.openapi_schema = schema
        return app.openapi_schema
    app.openapi = openapi  # type: ignore[method-assign]


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def upload_error(request: Request, exc: ApiError):
        return SafeJSON(exc.to_json(), exc.status, headers=exc.headers)

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError):
        status = next((s for t, s in _REGISTRY_STATUS if isinstance(exc, t)), None)
        if status is not None:
            return SafeJSON({"error": str(exc)}, status)
        # The registry is unreachable or unusable: its location and the reason go to the log, not to clients.
        quiet.warning("registry", "%s %s: registry unavailable: %s", request.method, request.url.path, exc)
        return SafeJSON({"error": "the registry is unavailable; try again later"}, 503)

    @app.exception_handler(GanprintError)
    async def ganprint_error(request: Request, exc: GanprintError):
        return SafeJSON({"error": str(exc)}, 400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # Never echo the input: it may be huge, secret or not encodable.
        problems = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                     "type": str(e.get("type", ""))} for e in exc.errors()]
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        return SafeJSON({"error": f"{'.'.join(first['loc'][1:]) or 'request'}: {first['msg']}",
                         "detail": problems}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return SafeJSON({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return SafeJSON({"error": "internal error; the server's log has the details"}, 500)


def create_app_from_env() -> FastAPI:
    """uvicorn's factory in each worker process: the settings come from GANPRINT_SERVICE_CONFIG."""
    return create_app(ServiceConfig.from_env())
