#!/usr/bin/env bash
# The oracle measurements of RESULTS-oracle.md: held-out crops fingerprinted by a demo-32 model, a real
# `ganprint serve` on 127.0.0.1 (answer full, then decision) and oracle.py's black-box attackers on /v1/detect.
# Traffic: at most IMAGES x BUDGET x 5 images sent to 127.0.0.1, nothing else.
# Usage (from the repository root): MODEL=path/model.safetensors bash benchmarks/experiments/adversary/oracle.sh [RUNDIR]
set -euo pipefail
R=${1:-/tmp/oracle-work}
PY=${PY:-/work/main/.venv/bin/python}
M=${MODEL:?set MODEL to a trained stega model (e.g. the demo-32 model of run_adversary.sh)}
G="env PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 nice -n 19 $PY"
FP=0x5a17c3e9b2d40f86  # the fingerprint embedded (64 bits), as in run_adversary.sh
IMAGES=${IMAGES:-20}
$G -m ganprint data samples --outdir "$R/data/heldout" --count $IMAGES --photos heldout --seed 1
$G -m ganprint data samples --outdir "$R/data/clean" --count $IMAGES --photos heldout --seed 2
$G -m ganprint embed --model "$M" --data "$R/data/heldout" --outdir "$R/embedded" --identical --fingerprint $FP
$G benchmarks/experiments/adversary/oracle.py --fingerprinted "$R/embedded/fingerprinted_images" \
    --clean "$R/data/clean" --decoder "$M" --fingerprint $FP --images $IMAGES --budget ${BUDGET:-1000} \
    --eps 2,4,8 --outdir "$R/oracle"
