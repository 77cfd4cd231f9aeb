#!/usr/bin/env bash
# The adversary measurements of RESULTS-robust.md: the same attacks as run_adversary.sh (and the black-box
# removals of blackbox.sh) against a `robust-32` model, whose fingerprint survives blur, resize and crops, without
# and with the second checks that failed on demo-32 because its fingerprint did not survive them.
# Usage (from the repository root): bash benchmarks/experiments/adversary/robust.sh [RUNDIR] [BLACKBOX_WORK]
#   RUNDIR: run_adversary.sh's folder (its data/ is reused; default /work/runs/adversary)
#   BLACKBOX_WORK: blackbox.sh's folder, for its diffusion models (default /tmp/bb-work)
#   MODEL=path: a robust-32 export to attack (default: RUNDIR/robust32, trained here when missing)
# Each adversary run is skipped when its folder holds a finished report.
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
adv() {  # adv OUTDIR ARGS...: one `ganprint adversary` run on the held-out images, unless already reported
    local out=$1; shift
    [ -f "$out/adversary.json" ] || $G adversary --model "$M" --data "$E" --clean "$R/data/clean" --fingerprint $FP \
        --outdir "$out" "$@"
}
adv "$R/robust-adv-none" --diffusion "$B/diffusion/network-final.safetensors" \
    --adversary "average:n=1,10,100,1000:psnr=30,35,38,42,45" \
    --adversary "invert:eps=1,2,4,8:steps=20:images=200" \
    --adversary "remove:eps=1,2,4,8,16:steps=20:images=200" \
    --adversary "query-remove:eps=4,8,16:steps=20:samples=10:sigma=4:images=200" \
    --adversary "regenerate:t=10,25,50,100,200,400:steps=10:images=200"
# regeneration through blackbox.sh's stronger diffusion model (continued to 150 kimg), and combined edits
adv "$R/robust-adv-regen-edit" --diffusion "$B/diffusion150/network-final.safetensors" --limit 200 \
    --adversary "regenerate:t=5,10,25,50,100,200:steps=10" --adversary "edit:level=1,2,4,6,8,10"
for D in agree:resize=0.75 agree:blur=1 agree:crop=0.9 energy:min=0.5; do
    adv "$R/robust-adv-${D//[:=.]/-}" --defence "$D" --defence-reference "$R/robust-registry-emb/fingerprinted_images" \
        --adversary "average:n=1,10,100,1000:psnr=30,35,38,42,45" --adversary "average:n=1000:psnr=35,42:sigma=2,4" \
        --adversary "invert:eps=1,2,4,8:steps=20:images=200"
done
# The crop check chosen on the rows above, confirmed on photos of a source never used for anything else (Debian's
# opencv-doc sample photos, as benchmarks/experiments/generalisation uses them): three crop sizes, read once.
O=$R/opencv-photos
mkdir -p "$O"
for f in aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg basketball1.png building.jpg butterfly.jpg fruits.jpg \
         graf1.png home.jpg leuvenA.jpg lena.jpg messi5.jpg orange.jpg squirrel_cls.jpg stuff.jpg HappyFish.jpg; do
    [ -f "/usr/share/doc/opencv-doc/examples/data/$f" ] && ln -sf "/usr/share/doc/opencv-doc/examples/data/$f" "$O/$f"
done
[ -n "$(ls "$O")" ] || { echo "no photos in /usr/share/doc/opencv-doc/examples/data: apt-get install opencv-doc"; exit 2; }
$G data samples --outdir "$R/data/other" --count 500 --photos "$O" --seed 3
$G data samples --outdir "$R/data/other-clean" --count 500 --photos "$O" --seed 4
$G embed --model "$M" --data "$R/data/other" --outdir "$R/robust-other" --identical --fingerprint $FP
for D in agree:crop=0.8 agree:crop=0.9 agree:crop=0.95; do
    out=$R/robust-other-${D//[:=.]/-}
    [ -f "$out/adversary.json" ] || $G adversary --model "$M" --data "$R/robust-other/fingerprinted_images" \
        --clean "$R/data/other-clean" --fingerprint $FP --defence "$D" --outdir "$out" \
        --adversary "average:n=1,10,100,500:psnr=35,42" --adversary "average:n=500:psnr=35,42:sigma=2,4" \
        --adversary "invert:eps=2,4:steps=20:images=200" --adversary "remove:eps=8,16:steps=20:images=200"
done
for d in "$R"/robust-adv-* "$R"/robust-other-agree-*; do echo "== $d"; cat "$d/summary.md"; done
