"""The C2PA Soft Binding Resolution API on ganprint's fingerprints (docs/service.md, "C2PA soft binding").

- GET /services/supportedAlgorithms: the algorithms this server decodes (`provenance.softbinding`).
- POST /matches/byContent: an image as the request body (image/*), decoded by the server's decoders; the matches
  are the manifests kept for the record its fingerprint points to.
- GET /matches/byBinding?alg=&value= (and POST with {"alg", "value"}): a value a client decoded itself.
- GET /manifests/{manifestId}: a kept manifest store (application/c2pa).

A value or image matches a record by ganprint's own rules at the server's `fpr`: the nearest issued model when
its Bonferroni-corrected p-value is <= fpr (scalable), a data set when its matches reach the threshold of fpr
(artificial). Each match's similarityScore is its bit accuracy in percent.
"""

from __future__ import annotations

import io

import anyio
import torch
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ganprint.core.errors import GanprintError
from ganprint.core.stats import match_threshold
from ganprint.inference.scoring import UNKNOWN, attribute_bits, score_bits
from ganprint.provenance import softbinding as sb
from ganprint.registry.manifests import check_manifest_id
from ganprint.registry.errors import RegistryInputError
from ganprint.service import metrics
from ganprint.service.engine import Engine
from ganprint.service.schemas import ErrorBody
from ganprint.service.uploads import ApiError, read_uploads, sniff

C2PA_MEDIA_TYPE = "application/c2pa"
_MAX_RESULTS = 100


class AlgEntry(BaseModel):
    alg: str = Field(description="A soft-binding algorithm identifier.")


class SupportedAlgorithms(BaseModel):
    watermarks: list[AlgEntry] = Field(description="Watermark algorithms this server decodes.")
    fingerprints: list[AlgEntry] = Field(description="Content-fingerprint algorithms (none: ganprint embeds).")


class Match(BaseModel):
    manifestId: str = Field(description="A C2PA manifest label, fetched with GET /manifests/{manifestId}.")
    similarityScore: int = Field(ge=0, le=100, description="Bit accuracy of the match in percent.")


class QueryResult(BaseModel):
    matches: list[Match]


class BindingQuery(BaseModel):
    alg: str = Field(description="A soft-binding algorithm identifier.")
    value: str = Field(max_length=4096, description="The binding value, base64.")


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def supported(engine: Engine) -> list[str]:
    """The algorithms this server can decode from an image."""
    return ([sb.SCALABLE_ALG] if engine.decoder is not None else []) + ([sb.ARTIFICIAL_ALG] if engine.stega else [])


def _check(engine: Engine, alg: str | None) -> list[str]:
    """The algorithms a query asks for (all supported ones when `alg` is None); 400 for any other."""
    algs = supported(engine)
    if alg is None:
        return algs
    try:
        sb.check_alg(alg)
    except GanprintError as e:
        raise _bad(str(e)) from None
    if alg not in algs:
        raise _bad(f"`alg` {alg} needs a decoder this server has not loaded; it decodes {', '.join(algs) or 'none'}")
    return [alg]


def _matches(engine: Engine, key: str, hits: list[tuple[int, float]], limit: int) -> dict:
    """The manifests kept for each (record id, bit accuracy), best score first, at most `limit`."""
    out = []
    for rid, accuracy in hits:
        score = sb.similarity_score(accuracy)
        out += [{"manifestId": m.manifest_id, "similarityScore": score}
                for m in engine.registry.manifests_of(**{key: rid}, limit=limit)]
    out.sort(key=lambda m: -m["similarityScore"])  # stable: oldest manifest first within a record
    return {"matches": out[:limit]}


def _scalable_hits(engine: Engine, bits: torch.Tensor) -> list[tuple[int, float]]:
    snap = engine.sync()
    if not len(snap.fp_ids):
        return []
    row = attribute_bits(bits[None], snap.fp_ids, snap.packed, engine.k, engine.cfg.fpr, snap.index)[0]
    return [] if row["attributed"] == UNKNOWN else [(int(row["attributed"]), row["bit_accuracy"])]


def _artificial_hits(engine: Engine, value: str) -> list[tuple[int, float]]:
    """Each registered data set whose fingerprint the value carries (ganprint detect's threshold at `fpr`)."""
    datasets = engine.sync().datasets
    readable = [(ds, bits) for ds in datasets if (bits := _decoded(value, ds.fingerprint_length)) is not None]
    if datasets and not readable:  # a value no data set's length can read is a bad request, not a miss
        lengths = sorted({ds.fingerprint_length for ds in datasets})
        raise _bad(f"`value` is not a fingerprint of a registered data set ({', '.join(map(str, lengths))} bits, "
                   f"base64 of {', '.join(str((k + 7) // 8) for k in lengths)} bytes)")
    hits = []
    for ds, bits in readable:
        score = score_bits(bits[None], ds.bits, match_threshold(ds.fingerprint_length, engine.cfg.fpr))[0]
        if score["detected"]:
            hits.append((ds.ds_id, score["bit_accuracy"]))
    return hits


def _decoded(value: str, k: int) -> torch.Tensor | None:
    try:
        return sb.decode_value(value, k)
    except GanprintError:
        return None


def by_binding(engine: Engine, alg: str, value: str, limit: int) -> dict:
    """The matches of a binding value the client decoded (`GET /matches/byBinding`)."""
    _check_binding_alg(engine, alg)
    if alg == sb.SCALABLE_ALG:
        try:
            bits = sb.decode_value(value, engine.k)
        except GanprintError as e:
            raise _bad(str(e)) from None
        result = _matches(engine, "fp_id", _scalable_hits(engine, bits), limit)
    else:
        result = _matches(engine, "ds_id", _artificial_hits(engine, value), limit)
    metrics.count("SOFTBINDING", 1, "matched" if result["matches"] else "no_match")
    return result


def _check_binding_alg(engine: Engine, alg: str) -> None:
    try:
        sb.check_alg(alg)
    except GanprintError as e:
        raise _bad(str(e)) from None
    if alg == sb.SCALABLE_ALG and engine.k is None:
        raise _bad(f"`alg` {alg} needs this server's `scalable_decoder`, which it has not loaded")


def install(app: FastAPI, engine: Engine, charge, decode_slots) -> None:
    """The four routes of the Resolution API; `charge` spends a client's image budget (as /v1/attribute does)."""
    errors = {400: {"description": "A bad `alg` or `value`, or an unreadable image", "model": ErrorBody},
              422: {"description": "A missing or malformed parameter", "model": ErrorBody}}
    max_results = Query(10, ge=1, le=_MAX_RESULTS, alias="maxResults", description="Most manifest ids returned.")

    @app.get("/services/supportedAlgorithms", tags=["c2pa"], response_model=SupportedAlgorithms)
    def supported_algorithms() -> dict:
        """The soft-binding algorithms this server decodes (ganprint's fingerprints are watermarks)."""
        return {"watermarks": [{"alg": a} for a in supported(engine)], "fingerprints": []}

    @app.get("/matches/byBinding", tags=["c2pa"], response_model=QueryResult, responses=errors)
    def match_binding(alg: str = Query(max_length=200, description="A soft-binding algorithm identifier."),
                      value: str = Query(max_length=4096, description="The binding value (base64)."),
                      limit: int = max_results) -> dict:
        """Manifest ids whose record matches a binding value (the decision rule of docs/service.md)."""
        # base64's '+' arrives as a space when a client forgot to percent-encode the query; no value has a space
        return by_binding(engine, alg, value.replace(" ", "+"), limit)

    @app.post("/matches/byBinding", tags=["c2pa"], response_model=QueryResult, responses=errors)
    def match_large_binding(body: BindingQuery, limit: int = max_results) -> dict:
        """`GET /matches/byBinding` with the query in a JSON body."""
        return by_binding(engine, body.alg, body.value, limit)

    @app.post("/matches/byContent", tags=["c2pa"], response_model=QueryResult, openapi_extra=_IMAGE_BODY,
              responses={**errors, 413: {"description": "Larger than `max_upload_mb`"},
                         415: {"description": "The body is not an image"},
                         429: {"description": "This client's `rate_limit` is spent"}})
    async def match_content(request: Request, alg: str | None = Query(None, max_length=200),
                            limit: int = max_results) -> dict:
        """Manifest ids whose record matches the fingerprint decoded from the image sent as the body."""
        algs = _check(engine, alg)
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if not kind.startswith("image/"):
            raise ApiError(415, f"send the image as the request body with an image/* Content-Type, got "
                                f"{kind or 'none'!r}")
        data = await request.body()
        if sniff(data[:16]) is None:
            raise ApiError(415, "the request body is not an image (PNG, JPEG, WebP, BMP or TIFF expected)" if data
                           else "the request body is empty: send the image as the body")
        charge(request, [data])
        resolutions = {engine.resolution} if sb.SCALABLE_ALG in algs else set()
        resolutions |= {d.resolution for d in engine.stega.values()} if sb.ARTIFICIAL_ALG in algs else set()
        imgs = await anyio.to_thread.run_sync(read_uploads, [("body", io.BytesIO(data))], resolutions,
                                              engine.cfg.max_pixels, None, limiter=decode_slots)
        metrics.count("IMAGES", 1, "c2pa")
        return await anyio.to_thread.run_sync(_content_matches, engine, algs, imgs, limit)

    @app.get("/manifests/{manifestId}", tags=["c2pa"], response_class=Response,
             responses={200: {"content": {C2PA_MEDIA_TYPE: {}}, "description": "The manifest store (JUMBF)"},
                        400: {"description": "Not a manifest label"}, 404: {"description": "No such manifest"}})
    def manifest(manifestId: str, returnActiveManifest: bool = Query(False)) -> Response:  # noqa: N803
        """A kept manifest store. Each store ganprint keeps holds the one manifest it signed, which is also the
        active manifest, so `returnActiveManifest` returns the same bytes."""
        try:
            check_manifest_id(manifestId)
        except RegistryInputError as e:
            raise _bad(str(e)) from None
        return Response(engine.registry.manifest_store(manifestId), media_type=C2PA_MEDIA_TYPE)


def _content_matches(engine: Engine, algs: list[str], imgs: dict, limit: int) -> dict:
    out: list[dict] = []
    if sb.SCALABLE_ALG in algs:
        rows, _ = engine.attribute(imgs[engine.resolution])
        hits = [] if rows[0]["attributed"] == UNKNOWN else [(int(rows[0]["attributed"]), rows[0]["bit_accuracy"])]
        out += _matches(engine, "fp_id", hits, limit)["matches"]
    if sb.ARTIFICIAL_ALG in algs:
        per_image, _ = engine.detect(imgs)
        by_name = {d.name: d.ds_id for d in engine.snapshot.datasets}
        hits = [(by_name[r["dataset"]], r["bit_accuracy"]) for r in per_image[0] if r.get("detected")]
        out += _matches(engine, "ds_id", hits, limit)["matches"]
    out.sort(key=lambda m: -m["similarityScore"])
    metrics.count("SOFTBINDING", 1, "matched" if out else "no_match")
    return {"matches": out[:limit]}


_IMAGE_BODY = {"requestBody": {"required": True, "description": "The image (PNG, JPEG, WebP, BMP or TIFF).",
                               "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}}
