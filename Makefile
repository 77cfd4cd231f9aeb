# Two commands do everything on a fresh machine:
#   make demo   - set up .venv (CPU torch), then run `ganprint demo` on built-in sample photos
#   make test   - set up .venv, then run the fast test suite (what CI runs)
# GPU users: see README ("Install on a GPU machine"); override TORCH, e.g. make setup TORCH="torch==2.13.0".

PYTHON ?= python3
VENV ?= .venv
# The CPU build: on this project's machines pip finds torch-2.13.0+cpu locally. A bare `torch` would pull CUDA.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.ganprint-installed

.PHONY: setup system-deps demo test test-slow test-gpu bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev,photos,faiss,service,onnx,diffusion,baselines,c2pa]"
	touch $(STAMP)

demo: setup
	$(BIN)/ganprint demo $(DEMO_ARGS)

# The tests start a real PostgreSQL server and a headless chromium: Debian packages, installed when missing.
system-deps:
	bash tools/system-deps.sh

# The docs' blocks (tests/test_docs.py, mark docs) run after the rest: they take minutes, so a plain pytest skips them.
# Two pages at a time (pytest-xdist), one thread each: their small models gain nothing from a second thread.
# `-m docs` runs only those: the checks of the pages' form in the same file ran with the rest already.
test: setup system-deps
	$(BIN)/python -m pytest -q
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m docs tests/test_docs.py

test-slow: setup system-deps
	$(BIN)/python -m pytest -q -m "slow or not slow"

test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu

clean:
	rm -rf $(VENV) demo-out
