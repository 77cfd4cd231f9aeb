"""The provenance service: `ganprint serve`, a FastAPI application over the registry and the decoders.

config (ServiceConfig) < engine (decoders, registry, Hamming index kept in step) < metrics, logs (one line per
event, query strings redacted) < app (routes, tokens and scopes, limits, API docs, the web page in static/) < runner
(uvicorn; protocol: its HTTP protocol with TCP_NODELAY, header and body deadlines and a connection limit, named to
uvicorn by an import string). Needs the `service` extra: pip install -e '.[service]' in the ganprint
checkout.
"""
