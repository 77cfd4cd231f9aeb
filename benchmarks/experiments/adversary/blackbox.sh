#!/usr/bin/env bash
# The black-box removal measurements of RESULTS-blackbox.md on the demo-32 model: white-box PGD (the reference),
# removal through the decoder's ONNX file alone (query-remove), regeneration through a diffusion model that the
# script trains itself on clean photos (regenerate), and strong combined edits (edit). One command; everything is
# written under WORK, and each adversary run is skipped when its folder holds a finished report.
# Usage (from the repository root): bash benchmarks/experiments/adversary/blackbox.sh [WORK]
#   MODEL=path  the demo-32 stega export to attack (without it, one is trained as `ganprint demo` does)
#   KIMG=n      the first diffusion model's training length (default 6); KIMG2=n the stronger one's (default 150)
set -euo pipefail
W=${1:-/tmp/bb-work}
PY=${PY:-/work/main/.venv/bin/python}
G="env PYTHONPATH=$PWD/src OMP_NUM_THREADS=2 nice -n 19 $PY -m ganprint"
FP=0x5a17c3e9b2d40f86  # the fingerprint embedded (64 bits), as in run_adversary.sh
M=${MODEL:-$W/demo/model.safetensors}
K2=${KIMG2:-150}
mkdir -p "$W"
$G data samples --outdir "$W/data/train" --count 4000 --photos train --vary --seed 0    # clean: diffusion's data
$G data samples --outdir "$W/data/heldout" --count 1000 --photos heldout --seed 1       # to fingerprint
$G data samples --outdir "$W/data/clean" --count 1000 --photos heldout --seed 2         # clean FPR rows
[ -f "$M" ] || $G train --data "$W/data/train" --preset demo-32 --outdir "$W/demo"
[ -f "$W/embedded/manifest.json" ] || \
    $G embed --model "$M" --data "$W/data/heldout" --outdir "$W/embedded" --identical --fingerprint $FP
# what the query attacker holds: the decoder as a verifier gets it
[ -f "$W/decoder.onnx" ] || $G export --model "$M" --format onnx "$W/decoder.onnx"
adv() {  # adv OUTDIR ARGS...: one `ganprint adversary` run on 200 fingerprinted images, unless already reported
    local out=$1; shift
    [ -f "$out/adversary.json" ] || $G adversary --model "$M" --data "$W/embedded/fingerprinted_images" \
        --clean "$W/data/clean" --fingerprint $FP --limit 200 --outdir "$out" "$@"
}
diffusion() {  # diffusion OUTDIR KIMG: ganprint's cpu-32 preset on clean crops only, and a grid of its samples
    $G train-diffusion --data "$W/data/train" --preset cpu-32 --kimg "$2" --snapshot-kimg 10 --seed 0 \
        --device cpu --outdir "$1"
    [ -d "$1-samples" ] || $G generate --model "$1/network-final.safetensors" --seeds 0-15 --grid \
        --precision fp32 --device cpu --outdir "$1-samples"
}
diffusion "$W/diffusion" "${KIMG:-6}"
adv "$W/adv-blackbox" --onnx "$W/decoder.onnx" --diffusion "$W/diffusion/network-final.safetensors" \
    --adversary "remove:eps=1,2,4,8,16:steps=20" \
    --adversary "query-remove:eps=2,4,8,16:steps=20:samples=10:sigma=4" \
    --adversary "query-remove:eps=4,8,16:steps=20:samples=40:sigma=4" \
    --adversary "regenerate:t=10,25,50,100,200,400:steps=10"
# a stronger regenerator: the same diffusion run continued (in a copy) to KIMG2 kimg; and combined edits
[ -d "$W/diffusion$K2" ] || cp -r "$W/diffusion" "$W/diffusion$K2"
diffusion "$W/diffusion$K2" "$K2"
adv "$W/adv-regen-edit" --diffusion "$W/diffusion$K2/network-final.safetensors" \
    --adversary "regenerate:t=5,10,25,50,100,200:steps=10" --adversary "edit:level=1,2,4,6,8,10"
cat "$W/adv-blackbox/summary.md" "$W/adv-regen-edit/summary.md"
