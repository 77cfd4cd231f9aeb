"""The provenance service: `ganprint serve`, a FastAPI application over the registry and the decoders.

config (ServiceConfig) < engine (decoders, registry, Hamming index kept in step) < metrics < app (routes,
limits, the web page in static/) < runner (uvicorn; protocol: its HTTP protocol with TCP_NODELAY, named to uvicorn
by an import string). Needs the `service` extra: pip install 'ganprint[service]'.
"""
