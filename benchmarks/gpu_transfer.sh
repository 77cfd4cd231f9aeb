#!/usr/bin/env bash
# Fingerprint transfer at a larger scale on one GPU, in under 10 minutes (H200-sized budget):
#   10k sample crops at 32 px, a demo-32 stega model (trained here unless STEGA_MODEL is given), one fingerprint
#   embedded into every crop, then two StyleGAN2 generators (clean vs fingerprinted data) trained side by side
#   with bit accuracy of their samples measured every EVAL_KIMG. Writes $OUT/transfer.jsonl and transfer.png.
#
#   bash benchmarks/gpu_transfer.sh [OUT_DIR]                 # default runs/gpu_transfer
#   PRESET=32 BATCH=64 MINUTES=7 bash benchmarks/gpu_transfer.sh
#   STEGA_MODEL=runs/fp32/model.safetensors bash benchmarks/gpu_transfer.sh
#
# transfer.py starts no new chunk after MINUTES (counted from its start); the whole script is also capped by
# `timeout`. Re-running resumes every step.
set -euo pipefail
OUT=${1:-runs/gpu_transfer}
PRESET=${PRESET:-small}
BATCH=${BATCH:-64}
COUNT=${COUNT:-10000}
EVAL_KIMG=${EVAL_KIMG:-20}
MAX_KIMG=${MAX_KIMG:-2000}
MINUTES=${MINUTES:-7.5}
N_EVAL=${N_EVAL:-512}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python}
STEGA_ARGS=()
if [ -n "${STEGA_MODEL:-}" ]; then STEGA_ARGS=(--stega-model "$STEGA_MODEL"); fi
mkdir -p "$OUT"
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

timeout -s INT 570 "$PY" benchmarks/experiments/gan-transfer/transfer.py \
  --workdir "$OUT" "${STEGA_ARGS[@]}" --count "$COUNT" \
  --preset "$PRESET" --batch-size "$BATCH" --eval-kimg "$EVAL_KIMG" --max-kimg "$MAX_KIMG" --minutes "$MINUTES" \
  --n-eval "$N_EVAL" --device "$DEVICE" 2>&1 | tee -a "$OUT/transfer.log" \
  || echo "transfer stopped by the time limit (resumable)"

"$PY" - "$OUT/transfer.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| run | kimg | bit acc (mean +- std) | detected |")
print("|---|---|---|---|")
for r in rows:
    print(f"| {r['run']} | {r['kimg']} | {r['bit_acc_mean']:.3f} +- {r['bit_acc_std']:.3f} | {r['detected']:.3f} |")
PYEOF
echo "total $(( $(date +%s) - start )) s; results in $OUT (transfer.jsonl, transfer.png)"
