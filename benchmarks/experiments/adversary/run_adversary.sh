#!/usr/bin/env bash
# The adversary measurements of RESULTS-adversary.md: data, a demo-32 model (the preset as `ganprint demo` trains
# it), one fingerprint embedded into held-out crops, then `ganprint adversary` without and with each defence.
# Usage (from the repository root): bash benchmarks/experiments/adversary/run_adversary.sh [RUNDIR]
set -euo pipefail
R=${1:-/work/runs/adversary}
PY=${PY:-/work/main/.venv/bin/python}
G="env PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 nice -n 10 $PY -m ganprint"
FP=0x5a17c3e9b2d40f86  # the fingerprint embedded (64 bits); any fixed key will do
$G data samples --outdir "$R/data/train" --count 4000 --photos train --vary --seed 0
$G data samples --outdir "$R/data/heldout" --count 1000 --photos heldout --seed 1   # to fingerprint (the forger's N)
$G data samples --outdir "$R/data/clean" --count 1000 --photos heldout --seed 2     # clean canvases, other crops
$G data samples --outdir "$R/data/registry" --count 500 --photos train --seed 3    # the registry's own images (energy)
# MODEL=path: measure that export instead (RESULTS-adversary.md used the step-N export of this run, see there)
M=${MODEL:-$R/demo/model.safetensors}
[ -n "${MODEL:-}" ] || [ -f "$M" ] || $G train --data "$R/data/train" --preset demo-32 --outdir "$R/demo"
$G embed --model "$M" --data "$R/data/heldout" --outdir "$R/embedded" --identical --fingerprint $FP
$G embed --model "$M" --data "$R/data/registry" --outdir "$R/registry-emb" --identical --fingerprint $FP
# the genuine fingerprint's own cost: PSNR of each fingerprinted crop against its original
PYTHONPATH=$PWD/src $PY - "$R" <<'PY'
import sys, numpy as np
from pathlib import Path
from PIL import Image
r = Path(sys.argv[1])
q = []
for f in sorted((r / "embedded/fingerprinted_images").glob("*.png")):
    a = np.asarray(Image.open(f), dtype=np.float64) / 255
    b = np.asarray(Image.open(r / "data/heldout" / f.name).convert("RGB"), dtype=np.float64) / 255
    q.append(10 * np.log10(1 / max(((a - b) ** 2).mean(), 1e-10)))
print(f"genuine fingerprint: mean PSNR {np.mean(q):.2f} dB over {len(q)} crops")
import math, torch
from ganprint.evaluation.adversary import _load, estimate_pattern
for sub in ("registry-emb", "embedded"):  # the mean high-pass pattern's own strength, as PSNR
    x, _ = _load(r / sub / "fingerprinted_images", 32, torch.zeros(64), None, sub)
    print(f"{sub}: mean pattern PSNR {-10 * math.log10(float(estimate_pattern(x).pow(2).mean())):.2f} dB")
PY
ADV=(--adversary "average:n=1,10,100,1000:psnr=35,38,42,45"
     --adversary "invert:eps=1,2,4,8:steps=20:images=200"
     --adversary "remove:eps=1,2,4,8,16:steps=20:images=200")
$G adversary --model "$M" --data "$R/embedded/fingerprinted_images" --clean "$R/data/clean" --fingerprint $FP \
    "${ADV[@]}" --outdir "$R/adv-none"
for D in agree:blur=1 agree:blur=0.5 agree:resize=0.75 agree:crop=0.9 energy:min=0.5 energy:min=0.7; do
    $G adversary --model "$M" --data "$R/embedded/fingerprinted_images" --clean "$R/data/clean" \
        --fingerprint $FP --adversary "average:n=1,10,100,1000:psnr=30,32,35,38,42,45" \
        --adversary "average:n=1000:psnr=35,42:sigma=2,4" --defence "$D" \
        --defence-reference "$R/registry-emb/fingerprinted_images" --outdir "$R/adv-${D//[:=.]/-}"
done
