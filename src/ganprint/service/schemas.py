"""The shapes of the service's answers, for its OpenAPI description (/openapi.json, /docs, /redoc).

The routes return these shapes as plain JSON; the models document them (declared as `responses`, never used to
filter an answer), so a row keeps every field the commands write (the `answer` setting decides which).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

BEARER = "bearer"  # the name of the security scheme: Authorization: Bearer <token> (`ganprint token create`)


class ErrorBody(BaseModel):
    error: str = Field(description="What was wrong and what to do.")
    file: str | None = Field(None, description="The uploaded file it concerns, if any.")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class AttributionRow(_Open):
    file: str
    attributed: int | str = Field(description="The issued model's id, or 'unknown'.")
    who: str | None = None
    issued: str | None = None


class AttributeAnswer(_Open):
    results: list[AttributionRow]
    issued_models: int
    fpr: float
    p_value_covers: str


class DetectionRow(_Open):
    dataset: str
    detected: bool | None = Field(description="None when the data set's decoder is not loaded here.")


class DetectionResult(BaseModel):
    file: str
    datasets: list[DetectionRow]


class DetectAnswer(_Open):
    results: list[DetectionResult]
    datasets: int
    fpr: float
    p_value_covers: str


class IssueAnswer(BaseModel):
    id: int
    who: str
    issued: str
    sha256: str
    min_distance: int | None
    download: str


class ModelInfo(BaseModel):
    id: int
    who: str
    issued: str
    notes: str
    bits: int
    min_distance: int | None


class ModelList(BaseModel):
    models: list[ModelInfo]


class ServerInfo(_Open):
    version: str
    attribute: bool
    detect: bool
    issue: bool


def errors(*codes: int) -> dict:
    """`responses` entries for the error statuses `codes`, each with the error body."""
    what = {400: "Bad input (the message names the field or file)", 401: "No token: Authorization: Bearer <token>",
            403: "The token is unknown, revoked, expired or lacks the scope", 404: "Not found",
            409: "Conflicts with the registry", 410: "The model's file is not on this server", 413: "Too large (`max_upload_mb`, `max_files`)",
            415: "Not an image", 422: "A malformed parameter or body", 429: "This client's `rate_limit` is spent",
            503: "The registry is unavailable"}
    return {c: {"description": what[c], "model": ErrorBody} for c in codes}


# `openapi_extra` of a route that needs a token (its docstring says which scope)
SECURED = {"security": [{BEARER: []}]}
