#!/usr/bin/env bash
# Scalable fingerprinting at a larger scale on one GPU, in under 10 minutes (H200-sized budget):
#   the CUDA tests (tests/test_gpu.py) while 64-px sample crops are cut and packed, then train-scalable with
#   128-bit fingerprints at 64 px and batch 128 for at most TRAIN_SECONDS, then the bit-accuracy curve, the
#   trained-model attribution experiment (100 issued models x 50 images, 1000 real and 1000 other-model images)
#   and the search speed among 1M issued fingerprints.
#
#   bash benchmarks/gpu_scalable.sh [OUT_DIR]          # default runs/gpu_scalable
#   TRAIN_SECONDS=300 BATCH=64 bash benchmarks/gpu_scalable.sh
#
# Why the small preset's widths and a large batch: a step of this model dispatches 2.8-5.5 thousand operations
# (benchmarks/perf/scalable_cost.py, 64 px) against ~15 GFLOP of forward arithmetic at batch 128, so on a GPU we expect
# eager training to be bound by launch overhead (not measured on a GPU yet): a bigger batch then costs little and
# buys progress per step. Measured on CPU (RESULTS-scalable §4): at 32 px and
# 128 bits, training bit accuracy after 500 steps was 0.591 with batch 64 against 0.539 with batch 8.
# The adversarial/consistency gate opens on training bit accuracy (--gate-acc 0.9); the kimg fallback is
# scaled to this batch (the small preset's 40 kimg is 5000 steps at batch 8).
#
# Training stops at KIMG or after TRAIN_SECONDS (SIGINT; exports, grids and state are written every SNAP kimg),
# whichever comes first; re-running resumes.
set -euo pipefail
OUT=${1:-runs/gpu_scalable}
RES=${RES:-64}
BITS=${BITS:-128}
KIMG=${KIMG:-5000}
SNAP=${SNAP:-50}
BATCH=${BATCH:-128}
COUNT=${COUNT:-10000}
TRAIN_SECONDS=${TRAIN_SECONDS:-420}
PRESET=${PRESET:-small}
GATE=${GATE---gate-acc 0.9 --gate-kimg 600}
DEVICE=${DEVICE:-cuda}
METRIC_IMAGES=${METRIC_IMAGES:-2000}
MODELS=${MODELS:-100}
PER_MODEL=${PER_MODEL:-50}
ISSUED=${ISSUED:-1000000}
PY=${PY:-python}
GANPRINT=${GANPRINT:-ganprint}
TESTS=${TESTS:-1}
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

if [ "$TESTS" = 1 ]; then  # in the background: the data preparation below runs on the CPU meanwhile
  ( "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider > "$OUT/gpu-tests.log" 2>&1; echo "exit $?" >> "$OUT/gpu-tests.log" ) &
  tests_pid=$!
fi
if [ ! -f "$OUT/data/dataset.json" ]; then
  $GANPRINT data samples --outdir "$OUT/crops" --resolution "$RES" --count "$COUNT" --seed 0 | tail -1
  $GANPRINT dataset from-images "$OUT/crops" "$OUT/data" --resolution "$RES" --shuffle --seed 0 | tail -1
fi
if [ "$TESTS" = 1 ]; then wait "$tests_pid" || true; stamp "GPU tests: $(tail -2 "$OUT/gpu-tests.log" | tr '\n' ' ')"; fi

stamp "training for at most ${TRAIN_SECONDS} s"
timeout -s INT "$TRAIN_SECONDS" $GANPRINT train-scalable --data "$OUT/data" --outdir "$OUT/run" \
  --resolution "$RES" --fingerprint-length "$BITS" --modulated-res "4-$RES" --preset "$PRESET" --kimg "$KIMG" \
  --batch-size "$BATCH" --snapshot-kimg "$SNAP" --metric-kimg "$SNAP" --metric-images "$METRIC_IMAGES" \
  --device "$DEVICE" $GATE 2> "$OUT/train.log" || stamp "training stopped by the time limit (resumable); using the last snapshot"
grep -v "it/s\]" "$OUT/train.log" | tail -5 || true

stamp "curve"
"$PY" benchmarks/experiments/scalable/scalable_curve.py \
  "$OUT/run" --out "$OUT/scalable_curve.png" | tee "$OUT/curve.md"
stamp "attribution with the trained model"
"$PY" benchmarks/experiments/scalable/bench_attribution.py \
  trained --run "$OUT/run" --models "$MODELS" --per-model "$PER_MODEL" --clean 1000 \
  --data "$OUT/data" --out "$OUT/attribution_trained.json"
stamp "search speed"
"$PY" benchmarks/experiments/scalable/bench_attribution.py \
  speed --issued "$ISSUED" --queries 10000 --out "$OUT/attribution_speed.json"
stamp "done; results in $OUT"
