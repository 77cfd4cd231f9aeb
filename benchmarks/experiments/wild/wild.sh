#!/usr/bin/env bash
# RESULTS-wild.md in one command: the robust-32 preset trained on the built-in training photos (about 45 min on
# 2 CPU cores, skipped when RUN/robust32/model.safetensors exists), the wide search's gates on validation photos
# (search_gates.py), then wild.py on Debian's opencv-doc photos
# (a source never used for training or tuning) at 256 and 512 px, beside invisible-watermark, and the
# 4000 x 3000 speed and memory bench.
# Usage (from the repository root): bash benchmarks/experiments/wild/wild.sh [RUN]   (default RUN: /work/runs/wild)
set -euo pipefail
R=${1:-/work/runs/wild}
PY=${PY:-.venv/bin/python}
G="$PY -m ganprint"
[ -d /usr/share/doc/opencv-doc/examples/data ] || { echo "apt-get install opencv-doc (the unseen photos)"; exit 2; }
[ -d "$R/train" ] || $G data samples --outdir "$R/train" --count 4000 --photos train --vary --seed 0
[ -f "$R/robust32/model.safetensors" ] || $G train --data "$R/train" --preset robust-32 --outdir "$R/robust32"
M=$R/robust32/model.safetensors
$PY benchmarks/experiments/wild/search_gates.py --model "$M" --work "$R/gates"
$PY benchmarks/experiments/wild/wild.py --model "$M" --work "$R/eval" --sizes 256 512 --counts 40 30 --tiles 4
$PY benchmarks/perf/bench_fullsize.py --model "$M" --photo /usr/share/doc/opencv-doc/examples/data/aloeL.jpg \
    --counts 4 32 128 --out benchmarks/perf/results/fullsize.jsonl
