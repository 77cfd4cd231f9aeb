"""The provenance service: `serve`, and `token create` for issuers."""

from __future__ import annotations

import json

import click

from ganprint.cli import params as P
from ganprint.scalable.registry import create_token
from ganprint.service.config import FILES, PIXELS, SYNC_SECONDS, UPLOAD_MB, ServiceConfig
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
              help="scalable-decoder export: enables /v1/attribute.")
@click.option("--stega-decoder", "stega_decoders", multiple=True, type=click.Path(dir_okay=False),
              envvar="GANPRINT_STEGA_DECODERS", help="stega model of registered data sets (repeatable; the "
              "environment variable takes several separated by spaces): enables /v1/detect.")
@click.option("--base-model", type=click.Path(dir_okay=False), envvar="GANPRINT_BASE_MODEL",
              help="Shared scalable-G export: enables /v1/issue.")
@click.option("--models-dir", default="issued", show_default=True, envvar="GANPRINT_MODELS_DIR",
              help="Where issued models are written; the same shared folder on every server.")
@click.option("--fpr", type=P.FPR, default=1e-6, show_default=True, envvar="GANPRINT_FPR",
              help="False-positive rate per image (attribution: Bonferroni-corrected over issued models).")
@click.option("--min-distance", type=P.DISTANCE, default=None, envvar="GANPRINT_MIN_DISTANCE",
              help="Issuing: minimum Hamming distance between fingerprints [K // 4].")
@click.option("--max-upload-mb", type=P.Number(UPLOAD_MB), default=20.0, show_default=True, envvar="GANPRINT_MAX_UPLOAD_MB",
              help="Largest request body; larger ones get 413.")
@click.option("--max-files", type=P.Number(FILES), default=64, show_default=True, envvar="GANPRINT_MAX_FILES",
              help="Most images per request; more get 413.")
@click.option("--max-pixels", type=P.Number(PIXELS), default=40_000_000, show_default=True, envvar="GANPRINT_MAX_PIXELS",
              help="Largest image (width x height), checked before decoding.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              envvar="GANPRINT_RUNTIME", help="Decoder runtime (onnx needs the onnx extra).")
@click.option("--cors-origin", "cors_origins", multiple=True, envvar="GANPRINT_CORS_ORIGINS",
              help="Allow browser pages from this origin (repeatable) [CORS off].")
@click.option("--decode-threads", type=P.PROCESSES, default=4, show_default=True, envvar="GANPRINT_DECODE_THREADS",
              help="Uploads decoded at once per worker (bounds memory and thread contention).")
@click.option("--sync-seconds", type=P.Number(SYNC_SECONDS), default=1.0, show_default=True, envvar="GANPRINT_SYNC_SECONDS",
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


@click.group("token")
def token_group() -> None:
    """Issuer tokens for the service's /v1/issue and downloads."""


@token_group.command("create")
@click.option("--registry", required=True, envvar="GANPRINT_REGISTRY", help="The service's registry.")
@click.option("--name", required=True, help="Who the token is for (recorded; the token itself is not).")
def token_create_cmd(registry: str, name: str) -> None:
    """Create an issuer token; it is printed once and only its SHA-256 is stored in the registry.

    \b
    Example:
      TOKEN=$(ganprint token create --registry reg.sqlite --name ops | jq -r .token)
      curl -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\
          -d '{"who": "alice"}' http://127.0.0.1:8000/v1/issue
    """

    click.echo(json.dumps({"name": name, "token": create_token(registry, name)}))


COMMANDS.extend([serve_cmd, token_group])
