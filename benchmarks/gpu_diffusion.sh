#!/usr/bin/env bash
# The diffusion transfer at the paper-sized setting on one GPU, within a 15-minute device budget:
#   COUNT sample crops at 32 px, a demo-32 stega model (trained here unless STEGA_MODEL is given), one fingerprint
#   embedded into every crop, then two DDPM CIFAR-10-sized UNets (preset ddpm-32, 35.7 M parameters, bf16
#   autocast) trained side by side on the clean and the fingerprinted crops for KIMG each, a fine-tune of the
#   clean one on the fingerprinted crops for FT_KIMG, and bit accuracy / share detected at FPR 1e-6 of SAMPLES
#   generated images per snapshot (DDIM 50 steps, plus a step sweep on the last snapshots).
#   Prints the table of benchmarks/experiments/diffusion-transfer/diffusion_transfer.py; rows in $OUT/transfer.jsonl.
#
#   bash benchmarks/gpu_diffusion.sh [OUT_DIR]                   # default runs/gpu_diffusion
#   KIMG=400 FT_KIMG=100 bash benchmarks/gpu_diffusion.sh
#   STEGA_MODEL=runs/fp32/model.safetensors bash benchmarks/gpu_diffusion.sh
#   SMOKE=1 bash benchmarks/gpu_diffusion.sh /tmp/gd            # CPU check: the first step and the resolved config
#
# Training stops at TRAIN_SECONDS (timeout; re-running resumes) so that sampling and detection always run.
set -euo pipefail
OUT=${1:-runs/gpu_diffusion}
COUNT=${COUNT:-10000}
KIMG=${KIMG:-600}
SNAP_KIMG=${SNAP_KIMG:-100}
WARMUP_KIMG=${WARMUP_KIMG:-20}  # the preset's 640 kimg (5000 DDPM steps) is longer than this whole run
FT_KIMG=${FT_KIMG:-150}
SAMPLES=${SAMPLES:-256}
TRAIN_SECONDS=${TRAIN_SECONDS:-480}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
STEGA_ARGS=()
if [ -n "${STEGA_MODEL:-}" ]; then STEGA_ARGS=(--stega "$STEGA_MODEL"); fi
mkdir -p "$OUT"
start=$(date +%s)

if [ -n "${SMOKE:-}" ]; then
  "$PY" -m ganprint data samples --outdir "$OUT/data" --resolution 32 --count 64 --seed 0 --photos train
  "$PY" -m ganprint train-diffusion --data "$OUT/data" --outdir "$OUT/clean" --preset ddpm-32 --kimg "$KIMG" \
    --snapshot-kimg "$SNAP_KIMG" --warmup-kimg "$WARMUP_KIMG" --dry-run
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

COMMON=(--out "$OUT" --count "$COUNT" --preset ddpm-32 --kimg "$KIMG" --snapshot-kimg "$SNAP_KIMG" --warmup-kimg "$WARMUP_KIMG"
        --device "$DEVICE" --samples "$SAMPLES" "${STEGA_ARGS[@]}")
# 1. data, stega model, fingerprinted crops, both trainings side by side (capped; resumable)
timeout -s INT "$TRAIN_SECONDS" "$PY" benchmarks/experiments/diffusion-transfer/diffusion_transfer.py "${COMMON[@]}" --parallel \
  --finetune-kimg "$FT_KIMG" --finetune-from "$OUT/clean/network-final.safetensors" \
  || echo "training stopped at the time limit after $(( $(date +%s) - start )) s (re-run to resume)"
# 2. when the clean run did not finish, fine-tune from its newest snapshot for what time is left
if [ ! -f "$OUT/finetune/network-final.safetensors" ]; then
  last=$(ls "$OUT"/clean/network-[0-9]*.safetensors 2>/dev/null | tail -1 || true)
  left=$(( 720 - ($(date +%s) - start) ))
  if [ -n "$last" ] && [ "$left" -gt 60 ]; then
    timeout -s INT "$left" "$PY" -m ganprint train-diffusion --data "$OUT/fp/fingerprinted_images" \
      --outdir "$OUT/finetune" --preset ddpm-32 --kimg "$FT_KIMG" --snapshot-kimg 50 --warmup-kimg "$WARMUP_KIMG" \
      --device "$DEVICE" \
      --resume-from "$last" || echo "fine-tune stopped at the time limit"
  fi
fi
# 3. sample every snapshot and detect (no training)
"$PY" benchmarks/experiments/diffusion-transfer/diffusion_transfer.py \
  "${COMMON[@]}" --skip-training --steps-sweep 10,25,100
echo "total $(( $(date +%s) - start )) s; rows in $OUT/transfer.jsonl"
