# The provenance service (`ganprint serve`) on the CPU build of PyTorch; docs/service.md, "Docker".
#   docker build -t ganprint .
#   docker run -p 8000:8000 -v "$PWD/models:/models:ro" -e GANPRINT_REGISTRY=/models/registry.sqlite \
#       -e GANPRINT_SCALABLE_DECODER=/models/scalable-decoder.safetensors ganprint
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# The CPU wheel first (the Makefile's TORCH): a bare `torch` requirement would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/ganprint
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install ".[service,c2pa]"

# Never root: the server needs only its registry, its models (read-only) and `models_dir`.
RUN useradd --create-home --uid 10001 ganprint && mkdir -p /data/issued && chown -R ganprint /data
USER ganprint
WORKDIR /data

ENV GANPRINT_HOST=0.0.0.0 GANPRINT_PORT=8000 GANPRINT_MODELS_DIR=/data/issued
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["ganprint"]
CMD ["serve"]
