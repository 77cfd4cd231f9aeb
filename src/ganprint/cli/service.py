"""The provenance service: `serve`, and `token create / list / revoke` (scoped tokens for its clients)."""

from __future__ import annotations

import json

import click

from ganprint.cli import params as P
from ganprint.core import bounds
from ganprint.registry.store import Registry
from ganprint.registry.tokens import SCOPES, create_token
from ganprint.service.config import (ANSWERS, BODY_RATE, CONNECTIONS, FILES, PIXELS, RATE, REQUEST_PIXELS,
                                     SYNC_SECONDS, UPLOAD_MB, ServiceConfig)
from ganprint.service.runner import serve

COMMANDS: list = []


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="GANPRINT_HOST",
              help="Interface to listen on; 0.0.0.0 behind a load balancer.")
@click.option("--port", type=P.PORT, default=8000, show_default=True, envvar="GANPRINT_PORT")
@click.option("--workers", type=P.PROCESSES, default=1, show_default=True, envvar="GANPRINT_WORKERS",
              help="uvicorn worker processes; each loads the decoders once.")
@click.option("--registry", default="registry.sqlite", show_default=True, envvar="GANPRINT_REGISTRY",
              help="SQLite path / sqlite:///... (one machine) or postgresql://... (several).")
@click.option("--scalable-decoder", type=click.Path(dir_okay=False), envvar="GANPRINT_SCALABLE_DECODER",
              help="scalable-decoder export (or the stega-decoder of latent issued decoders): enables /v1/attribute.")
@click.option("--stega-decoder", "stega_decoders", multiple=True, type=click.Path(dir_okay=False),
              envvar="GANPRINT_STEGA_DECODERS", help="stega model of registered data sets (repeatable; the "
              "environment variable takes several separated by spaces): enables /v1/detect.")
@click.option("--base-model", type=click.Path(dir_okay=False), envvar="GANPRINT_BASE_MODEL",
              help="Shared scalable-G export (or latent-modulated: issues latent decoders): enables /v1/issue.")
@click.option("--models-dir", default="issued", show_default=True, envvar="GANPRINT_MODELS_DIR",
              help="Where issued models are written; the same shared folder on every server.")
@click.option("--fpr", type=P.FPR, default=1e-6, show_default=True, envvar="GANPRINT_FPR",
              help="False-positive rate per image (attribution: Bonferroni-corrected over issued models).")
@click.option("--min-distance", type=P.DISTANCE, default=None, envvar="GANPRINT_MIN_DISTANCE",
              help="Issuing: minimum Hamming distance between fingerprints [K // 4].")
@click.option("--max-upload-mb", type=P.Number(UPLOAD_MB), default=20.0, show_default=True,
              envvar="GANPRINT_MAX_UPLOAD_MB",
              help="Largest request body; larger ones get 413.")
@click.option("--max-files", type=P.Number(FILES), default=64, show_default=True, envvar="GANPRINT_MAX_FILES",
              help="Most images per request; more get 413.")
@click.option("--max-pixels", type=P.Number(PIXELS), default=4096 * 4096, show_default=True,
              envvar="GANPRINT_MAX_PIXELS",
              help="Largest image (width x height), checked before decoding; larger ones get 400.")
@click.option("--max-request-pixels", type=P.Number(REQUEST_PIXELS), default=4 * 4096 * 4096, show_default=True,
              envvar="GANPRINT_MAX_REQUEST_PIXELS",
              help="Most pixels in all the images of one request (bounds its decoding CPU); more get 413.")
@click.option("--header-timeout", type=P.Number(bounds.SECONDS_POS), default=10.0, show_default=True,
              envvar="GANPRINT_HEADER_TIMEOUT",
              help="Seconds a client has to send a request's headers; slower ones are cut off (408).")
@click.option("--body-timeout", type=P.Number(bounds.SECONDS_POS), default=30.0, show_default=True,
              envvar="GANPRINT_BODY_TIMEOUT",
              help="Longest pause in a request body (an upload), in seconds; also the grace before --min-body-rate.")
@click.option("--min-body-rate", type=P.Number(BODY_RATE), default=16.0, show_default=True,
              envvar="GANPRINT_MIN_BODY_RATE",
              help="Slowest average upload rate in KB/s accepted after --body-timeout seconds.")
@click.option("--keep-alive-timeout", type=P.Number(bounds.SECONDS_POS), default=5.0, show_default=True,
              envvar="GANPRINT_KEEP_ALIVE_TIMEOUT",
              help="Seconds an idle connection is kept open between requests.")
@click.option("--max-connections", type=P.Number(CONNECTIONS), default=512, show_default=True,
              envvar="GANPRINT_MAX_CONNECTIONS",
              help="Open connections per worker; more are answered 503 and closed at once.")
@click.option("--answer", type=click.Choice(list(ANSWERS)), default="full", show_default=True,
              envvar="GANPRINT_ANSWER",
              help="What /v1/attribute and /v1/detect say per image: full (matches, p-values, decoded bits) or "
                   "decision (the verdict only: no score for a querying attacker to climb).")
@click.option("--rate-limit", type=P.Number(RATE), default=600.0, show_default=True, envvar="GANPRINT_RATE_LIMIT",
              help="Images per minute one client may send to /v1/attribute and /v1/detect (each worker counts "
                   "its own); more are answered 429 with Retry-After. 0: no limit.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              envvar="GANPRINT_RUNTIME", help="Decoder runtime (onnx needs the onnx extra).")
@click.option("--cors-origin", "cors_origins", multiple=True, envvar="GANPRINT_CORS_ORIGINS",
              help="Allow browser pages from this origin (repeatable) [CORS off].")
@click.option("--decode-threads", type=P.PROCESSES, default=4, show_default=True, envvar="GANPRINT_DECODE_THREADS",
              help="Uploads decoded at once per worker (bounds memory and thread contention).")
@click.option("--sync-seconds", type=P.Number(SYNC_SECONDS), default=1.0, show_default=True,
              envvar="GANPRINT_SYNC_SECONDS",
              help="How often a worker looks for models issued elsewhere (the bound on their delay).")
def serve_cmd(host, port, workers, **kw) -> None:
    """Run the provenance service: HTTP API under /v1, API docs at /docs, a web page at /.

    \b
    Examples:
      ganprint serve --scalable-decoder runs/sc32/scalable-decoder.safetensors --registry reg.sqlite
      ganprint serve --host 0.0.0.0 --workers 4 --registry postgresql://ganprint@db/ganprint \\
          --scalable-decoder dec.safetensors --base-model G.safetensors --models-dir /shared/issued
    Every flag can also be set by the environment variable shown in --help (GANPRINT_...).
    """

    kw["stega_decoders"] = list(kw["stega_decoders"])
    kw["cors_origins"] = list(kw["cors_origins"])
    serve(ServiceConfig(**kw), host, port, workers)


# The docstring promises every flag's variable in --help: click shows an envvar only when asked, option by option.
for _param in serve_cmd.params:
    if getattr(_param, "envvar", None):
        _param.show_envvar = True


@click.group("token")
def token_group() -> None:
    """Tokens for the service: issuing, downloads, metrics (scoped, with expiry, revocable)."""


@token_group.command("create")
@click.argument("name", required=False)
@click.option("--name", "name_opt", hidden=True, help="The same as NAME (older spelling).")
@click.option("--registry", required=True, envvar="GANPRINT_REGISTRY", help="The service's registry.")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(SCOPES),
              help="What the token may do (repeatable): issue (POST /v1/issue), download:own (models issued to NAME), "
                   "download:all (any model), metrics (/metrics and /readyz details), admin (all of them).")
@click.option("--expires", default="never", show_default=True,
              help="When it stops working: a duration from now (90m, 12h, 30d, 2w), an ISO date or date-time "
                   "(UTC unless it says otherwise), or never.")
def token_create_cmd(name: str | None, name_opt: str | None, registry: str, scopes: tuple, expires: str) -> None:
    """Create a token for NAME (a holder, a service, a person); it is printed once, only its SHA-256 is stored.

    \b
    Examples:
      TOKEN=$(ganprint token create ops --registry reg.sqlite --scope issue --scope download:all | jq -r .token)
      curl -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
          -d '{"who": "alice"}' http://127.0.0.1:8000/v1/issue
      ganprint token create alice --registry reg.sqlite --scope download:own --expires 30d
      ganprint token create prometheus --registry reg.sqlite --scope metrics
    """

    name = name or name_opt
    if not name:
        raise click.UsageError("give the token's NAME")
    token = create_token(registry, name, scopes, expires)
    rec = Registry(registry, create=False).token(token)
    click.echo(json.dumps({**rec.to_dict(), "token": token}))


@token_group.command("list")
@click.option("--registry", required=True, envvar="GANPRINT_REGISTRY", help="The service's registry.")
def token_list_cmd(registry: str) -> None:
    """Every token (id, name, scopes, created, expires, revoked; never the token itself), one JSON line each."""
    for t in Registry(registry, create=False).tokens():
        click.echo(json.dumps(t.to_dict()))


@token_group.command("revoke")
@click.argument("token_ids", nargs=-1, required=True, type=P.ROW_ID)
@click.option("--registry", required=True, envvar="GANPRINT_REGISTRY", help="The service's registry.")
def token_revoke_cmd(token_ids: tuple, registry: str) -> None:
    """Revoke tokens by their id (`token list`); every server refuses them from its next request on."""
    reg = Registry(registry)
    for token_id in token_ids:
        click.echo(json.dumps(reg.revoke_token(token_id).to_dict()))


COMMANDS.extend([serve_cmd, token_group])
