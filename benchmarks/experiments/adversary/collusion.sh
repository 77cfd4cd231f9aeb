#!/usr/bin/env bash
# Collusion of issued scalable models (RESULTS-collusion.md): a tiny scalable generator (16 px, 32 bits, CPU),
# five models issued with fixed keys (alice and bob collude; carol, dave and erin are innocent holders), then the
# colluders' images (pixel average, weighted average, spliced halves, a three-holder average with carol) and
# their weight-averaged model, each attributed with `ganprint attribute` at FPR 1e-6 and 1e-2.
# Usage (from the repository root): bash benchmarks/experiments/adversary/collusion.sh [RUNDIR]    (~6 min)
set -euo pipefail
R=${1:-/tmp/adv-work/collusion}
PY=${PY:-/work/main/.venv/bin/python}
G="env PYTHONPATH=$PWD/src nice -n 19 $PY -m ganprint"
H="env PYTHONPATH=$PWD/src nice -n 19 $PY benchmarks/experiments/adversary/collusion.py"
SEEDS=0-199
$G data samples --outdir "$R/train" --resolution 16 --count 512 --seed 0 --photos train
$G data samples --outdir "$R/real" --resolution 16 --count 200 --seed 1 --photos heldout   # clean photos
# the fingerprint phase only (adversarial and consistency gates kept shut), as tests/scalable/test_trained.py
[ -f "$R/run/scalable-decoder.safetensors" ] || $G train-scalable --data "$R/train" --outdir "$R/run" \
    --resolution 16 --fingerprint-length 32 --modulated-res 4-16 --preset small --kimg 26.5 --batch-size 8 --lr 0.004 \
    --gate-acc 2 --gate-kimg 1000000 --snapshot-kimg 1000000 --metric-kimg 2 --metric-images 256 --seed 0 --device cpu
# five keys drawn once with numpy default_rng(22); alice and bob differ in 18 of 32 bits
KEYS=(alice:0xa9151621 bob:0x2b016dde carol:0x9581e776 dave:0x1d6d3ca0 erin:0x7e433dd3)
if [ ! -f "$R/registry.sqlite" ]; then
    for kv in "${KEYS[@]}"; do
        $G issue --model "$R/run/scalable-G.safetensors" --registry "$R/registry.sqlite" --models-dir "$R/issued" \
            --who "${kv%%:*}" --fingerprint "${kv#*:}"
    done
fi
$G registry list --json "$R/registry.sqlite" > "$R/keys.jsonl"
issued() { ls "$R"/issued/issued-00000"$1"-*.safetensors; }
for i in 1 2 3 4 5; do
    [ -d "$R/img-$i" ] || $G generate --model "$(issued $i)" --seeds $SEEDS --outdir "$R/img-$i" --device cpu
done
$H images mean "$R/mix/mean-ab" "$R/img-1" "$R/img-2"
$H images w=0.75 "$R/mix/w075-ab" "$R/img-1" "$R/img-2"
$H images halves "$R/mix/halves-ab" "$R/img-1" "$R/img-2"
$H images mean "$R/mix/mean-abc" "$R/img-1" "$R/img-2" "$R/img-3"
for L in 0.5 0.75; do
    $H weights $L "$R/weights-$L.safetensors" "$(issued 1)" "$(issued 2)"
    [ -d "$R/mix/weights-$L" ] || $G generate --model "$R/weights-$L.safetensors" --seeds $SEEDS \
        --outdir "$R/mix/weights-$L" --device cpu
done
for FPR in 1e-6 1e-2; do
    mkdir -p "$R/attr-$FPR"
    for d in "$R/img-1" "$R/img-3" "$R/real" "$R"/mix/*; do
        $G attribute --model "$R/run/scalable-decoder.safetensors" --registry "$R/registry.sqlite" --data "$d" \
            --outdir "$R/attr-$FPR/attr-$(basename "$d")" --fpr $FPR --device cpu > /dev/null
    done
    echo "FPR $FPR"
    $H table "$R/attr-$FPR" "$R/keys.jsonl"
done
# the single-model attacks of `ganprint adversary` on the same scalable decoder, framing carol (her images are the
# forger's N; the held-out photos are the canvases and the clean rows)
[ -f "$R/adv-scalable/adversary.json" ] || $G adversary --model "$R/run/scalable-decoder.safetensors" \
    --data "$R/img-3" --clean "$R/real" --fingerprint 0x9581e776 \
    --adversary "average:n=1,10,100,200:psnr=35,38,42,45" --adversary "invert:eps=1,2,4:steps=20:images=100" \
    --adversary "remove:eps=1,2,4,8:steps=20:images=100" --outdir "$R/adv-scalable"
# larger budgets: where does white-box PGD start to move this decoder?
[ -f "$R/adv-scalable-big/adversary.json" ] || $G adversary --model "$R/run/scalable-decoder.safetensors" \
    --data "$R/img-3" --clean "$R/real" --fingerprint 0x9581e776 --limit 50 \
    --adversary "invert:eps=8,16,32:steps=20" --adversary "remove:eps=16,32:steps=20" --outdir "$R/adv-scalable-big"
cat "$R/adv-scalable/summary.md" "$R/adv-scalable-big/summary.md"
PYTHONPATH=$PWD/src nice -n 19 $PY benchmarks/experiments/adversary/probe_scalable_pgd.py "$R"
