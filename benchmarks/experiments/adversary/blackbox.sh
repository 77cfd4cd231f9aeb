#!/usr/bin/env bash
# The black-box removal measurements of RESULTS-blackbox.md on the demo-32 model: white-box PGD (the reference),
# removal through the decoder's ONNX file alone (query-remove) and regeneration through a diffusion model that
# the script trains itself on clean photos (regenerate). One command; everything is written under WORK.
# Usage (from the repository root): bash benchmarks/experiments/adversary/blackbox.sh [WORK]
#   MODEL=path  the demo-32 stega export to attack (default below; without it, one is trained as `ganprint demo` does)
#   KIMG=n      the diffusion model's training length (default 6)
set -euo pipefail
W=${1:-/tmp/bb-work}
PY=${PY:-/work/main/.venv/bin/python}
G="env PYTHONPATH=$PWD/src OMP_NUM_THREADS=2 nice -n 19 $PY -m ganprint"
FP=0x5a17c3e9b2d40f86  # the fingerprint embedded (64 bits), as in run_adversary.sh
M=${MODEL:-/tmp/fc2/demo-out/train/model.safetensors}
mkdir -p "$W"
$G data samples --outdir "$W/data/train" --count 4000 --photos train --vary --seed 0    # clean: diffusion's data
$G data samples --outdir "$W/data/heldout" --count 1000 --photos heldout --seed 1       # to fingerprint
$G data samples --outdir "$W/data/clean" --count 1000 --photos heldout --seed 2         # clean FPR rows
[ -f "$M" ] || $G train --data "$W/data/train" --preset demo-32 --outdir "$W/demo"
[ -f "$M" ] || M=$W/demo/model.safetensors
[ -f "$W/embedded/manifest.json" ] || \
    $G embed --model "$M" --data "$W/data/heldout" --outdir "$W/embedded" --identical --fingerprint $FP
# what the query attacker holds: the decoder as a verifier gets it
[ -f "$W/decoder.onnx" ] || $G export --model "$M" --format onnx "$W/decoder.onnx"
# the regenerator: ganprint's cpu-32 diffusion preset trained on clean crops only (never fingerprinted ones)
$G train-diffusion --data "$W/data/train" --preset cpu-32 --kimg "${KIMG:-6}" --snapshot-kimg 2 --seed 0 \
    --device cpu --outdir "$W/diffusion"
$G generate --model "$W/diffusion/network-final.safetensors" --seeds 0-15 --grid --precision fp32 --device cpu --outdir "$W/diffusion-samples"
$G adversary --model "$M" --data "$W/embedded/fingerprinted_images" --clean "$W/data/clean" --fingerprint $FP \
    --onnx "$W/decoder.onnx" --diffusion "$W/diffusion/network-final.safetensors" --limit 200 \
    --adversary "remove:eps=1,2,4,8,16:steps=20" \
    --adversary "query-remove:eps=2,4,8,16:steps=20:samples=10:sigma=4" \
    --adversary "query-remove:eps=4,8,16:steps=20:samples=40:sigma=4" \
    --adversary "regenerate:t=10,25,50,100,200,400:steps=10" \
    --outdir "$W/adv-blackbox"
cat "$W/adv-blackbox/summary.md"
