#!/usr/bin/env bash
# The black-box removals of RESULTS-blackbox.md (B§2) against the tiny scalable model of collusion.sh: removal
# through the scalable decoder's ONNX file alone, and regeneration through a 16-px diffusion model trained here on
# clean crops. Carol's issued model's images are attacked, as in collusion.sh's single-model rows.
# Usage (from the repository root): bash benchmarks/experiments/adversary/blackbox_scalable.sh [RUNDIR]
#   RUNDIR: collusion.sh's folder (run it first); KIMG=n: the diffusion model's length (default 40)
set -euo pipefail
R=${1:-/tmp/adv-work/collusion}
PY=${PY:-/work/main/.venv/bin/python}
G="env PYTHONPATH=$PWD/src OMP_NUM_THREADS=2 nice -n 10 $PY -m ganprint"
[ -f "$R/run/scalable-decoder.safetensors" ] || { echo "run benchmarks/experiments/adversary/collusion.sh $R first"; exit 2; }
$G data samples --outdir "$R/diffusion-data" --resolution 16 --count 4000 --photos train --vary --seed 5
$G train-diffusion --data "$R/diffusion-data" --preset tiny-16 --kimg "${KIMG:-40}" --snapshot-kimg 10 --seed 0 \
    --device cpu --outdir "$R/diffusion16"
$G adversary --model "$R/run/scalable-decoder.safetensors" --data "$R/img-3" --clean "$R/real" \
    --fingerprint 0x9581e776 --limit 100 --diffusion "$R/diffusion16/network-final.safetensors" \
    --adversary "remove:eps=8,16,32:steps=20" \
    --adversary "query-remove:eps=8,16,32:steps=20:samples=40:sigma=4" \
    --adversary "regenerate:t=10,25,50,100,200,400:steps=10" --outdir "$R/adv-scalable-blackbox"
cat "$R/adv-scalable-blackbox/summary.md"
