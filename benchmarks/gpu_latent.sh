#!/usr/bin/env bash
# Scalable fingerprinting of a latent diffusion model at 256 px on one GPU (issue 25), in about 10 minutes:
#   COUNT sample crops at 256 px; train-autoencoder (ae-256: Stable Diffusion's layout at half width, latents
#   4 x 32 x 32) for AE_SECONDS; then, side by side on the GPU, train-latent (ldm-256) for LDM_SECONDS and
#   train-latent-fingerprint (lfp-256, BITS bits) for FP_KIMG kimg or FP_SECONDS; then the headline experiment,
#   benchmarks/experiments/latent/attribution.py: MODELS decoders issued into a new registry, PER_MODEL denoiser
#   samples per decoder attributed among all of them (clean, JPEG 70, resize 0.5, crop 0.75), the original decoder's
#   images and held-out photos (none may be attributed), PSNR against the original decoder.
#
#   bash benchmarks/gpu_latent.sh [OUT_DIR]          # default runs/gpu_latent
#   FP_KIMG=100 FP_SECONDS=420 bash benchmarks/gpu_latent.sh
#   SMOKE=1 bash benchmarks/gpu_latent.sh /tmp/gl   # CPU check of the whole chain at 16 px, tiny presets (~3 min)
#
# Every training stops at its time limit (SIGINT) and keeps its snapshots; re-running resumes. On the 2-core CPU
# the 32-px fingerprint training did not leave chance in 20-30 kimg (experiments/latent/RESULTS-latent.md), so this
# run is where the longer training the method needs is measured.
set -euo pipefail
OUT=${1:-runs/gpu_latent}
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
if [ -n "${SMOKE:-}" ]; then
  RES=16 COUNT=${COUNT:-64} AE=ae-smoke LDM=ldm-smoke FP=lfp-smoke BITS=${BITS:-16} MODELS=${MODELS:-3}
  PER_MODEL=${PER_MODEL:-4} CLEAN=8 STEPS=4 DEVICE=cpu AE_KIMG=0.032 LDM_KIMG=0.032 FP_KIMG=${FP_KIMG:-0.1}
  AE_SECONDS=120 LDM_SECONDS=120 FP_SECONDS=120 SNAP=0.016
else
  RES=256 COUNT=${COUNT:-4000} AE=ae-256 LDM=ldm-256 FP=lfp-256 BITS=${BITS:-64} MODELS=${MODELS:-100}
  PER_MODEL=${PER_MODEL:-20} CLEAN=500 STEPS=${STEPS:-25} AE_KIMG=${AE_KIMG:-100} LDM_KIMG=${LDM_KIMG:-200}
  FP_KIMG=${FP_KIMG:-60} AE_SECONDS=${AE_SECONDS:-150} LDM_SECONDS=${LDM_SECONDS:-240}
  FP_SECONDS=${FP_SECONDS:-300} SNAP=${SNAP:-5}
fi
mkdir -p "$OUT"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }
newest() { ls "$1"/network-[0-9]*.safetensors 2>/dev/null | tail -1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true

"$PY" -m ganprint -q data samples --outdir "$OUT/train" --resolution "$RES" --count "$COUNT" --photos train --vary
"$PY" -m ganprint -q data samples --outdir "$OUT/heldout" --resolution "$RES" --count 500 --photos heldout --seed 1

stamp "autoencoder for at most ${AE_SECONDS} s"
timeout -s INT "$AE_SECONDS" "$PY" -m ganprint train-autoencoder --data "$OUT/train" --outdir "$OUT/ae" \
  --preset "$AE" --kimg "$AE_KIMG" --snapshot-kimg "$SNAP" --device "$DEVICE" \
  || stamp "autoencoder stopped by the time limit (resumable)"
AE_FILE="$OUT/ae/latent-autoencoder.safetensors"
[ -f "$AE_FILE" ] || AE_FILE=$(newest "$OUT/ae")

stamp "denoiser and fingerprinted decoder side by side"
timeout -s INT "$LDM_SECONDS" "$PY" -m ganprint train-latent --data "$OUT/train" --autoencoder "$AE_FILE" \
  --outdir "$OUT/ldm" --preset "$LDM" --kimg "$LDM_KIMG" --snapshot-kimg "$SNAP" --device "$DEVICE" \
  > "$OUT/ldm.log" 2>&1 &
ldm_pid=$!
timeout -s INT "$FP_SECONDS" "$PY" -m ganprint train-latent-fingerprint --data "$OUT/train" \
  --autoencoder "$AE_FILE" --outdir "$OUT/fp" --preset "$FP" --fingerprint-length "$BITS" --kimg "$FP_KIMG" \
  --snapshot-kimg "$SNAP" --device "$DEVICE" > "$OUT/fp.log" 2>&1 || stamp "fingerprint training stopped (resumable)"
wait "$ldm_pid" || stamp "denoiser stopped by the time limit (resumable)"
tail -n 3 "$OUT/ldm.log" "$OUT/fp.log" || true
LDM_FILE="$OUT/ldm/latent-diffusion.safetensors"
[ -f "$LDM_FILE" ] || LDM_FILE=$(newest "$OUT/ldm")

stamp "attribution: $MODELS issued decoders x $PER_MODEL samples"
"$PY" benchmarks/experiments/latent/attribution.py --ldm "$LDM_FILE" --modulated "$OUT/fp/latent-modulated.safetensors" \
  --decoder "$OUT/fp/fingerprint-decoder.safetensors" --photos "$OUT/heldout" --models "$MODELS" \
  --per-model "$PER_MODEL" --clean "$CLEAN" --steps "$STEPS" --out "$OUT/attribution.json" | tee "$OUT/attribution.md"
stamp "done; results in $OUT"
