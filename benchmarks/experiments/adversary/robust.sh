#!/usr/bin/env bash
# The adversary measurements of RESULTS-robust.md: the same attacks as run_adversary.sh (and the black-box
# removals of blackbox.sh) against a `robust-32` model, whose fingerprint survives blur, resize and crops, without
# and with the second checks that failed on demo-32 because its fingerprint did not survive them.
# Usage (from the repository root): bash benchmarks/experiments/adversary/robust.sh [RUNDIR] [BLACKBOX_WORK]
#   RUNDIR: run_adversary.sh's folder (its data/ is reused; default /work/runs/adversary)
#   BLACKBOX_WORK: blackbox.sh's folder, for its diffusion model (default /tmp/bb-work)
#   MODEL=path: a robust-32 export to attack (default: RUNDIR/robust32, trained here when missing)
set -euo pipefail
R=${1:-/work/runs/adversary}
B=${2:-/tmp/bb-work}
PY=${PY:-/work/main/.venv/bin/python}
G="env PYTHONPATH=$PWD/src OMP_NUM_THREADS=2 nice -n 10 $PY -m ganprint"
FP=0x5a17c3e9b2d40f86  # the key of run_adversary.sh
[ -d "$R/data/train" ] || { echo "run benchmarks/experiments/adversary/run_adversary.sh $R first (its data)"; exit 2; }
M=${MODEL:-$R/robust32/model.safetensors}
[ -f "$M" ] || $G train --data "$R/data/train" --preset robust-32 --outdir "$R/robust32"
$G embed --model "$M" --data "$R/data/heldout" --outdir "$R/robust-embedded" --identical --fingerprint $FP
$G embed --model "$M" --data "$R/data/registry" --outdir "$R/robust-registry-emb" --identical --fingerprint $FP
E=$R/robust-embedded/fingerprinted_images
ADV=(--adversary "average:n=1,10,100,1000:psnr=30,35,38,42,45"
     --adversary "invert:eps=1,2,4,8:steps=20:images=200"
     --adversary "remove:eps=1,2,4,8,16:steps=20:images=200"
     --adversary "query-remove:eps=4,8,16:steps=20:samples=10:sigma=4:images=200"
     --adversary "regenerate:t=10,25,50,100,200,400:steps=10:images=200")
$G adversary --model "$M" --data "$E" --clean "$R/data/clean" --fingerprint $FP "${ADV[@]}" \
    --diffusion "$B/diffusion/network-final.safetensors" --outdir "$R/robust-adv-none"
for D in agree:resize=0.75 agree:blur=1 agree:crop=0.9 energy:min=0.5; do
    $G adversary --model "$M" --data "$E" --clean "$R/data/clean" --fingerprint $FP \
        --adversary "average:n=1,10,100,1000:psnr=30,35,38,42,45" --adversary "average:n=1000:psnr=35,42:sigma=2,4" \
        --adversary "invert:eps=1,2,4,8:steps=20:images=200" --defence "$D" \
        --defence-reference "$R/robust-registry-emb/fingerprinted_images" --outdir "$R/robust-adv-${D//[:=.]/-}"
done
for d in "$R"/robust-adv-*; do echo "== $d"; cat "$d/summary.md"; done
