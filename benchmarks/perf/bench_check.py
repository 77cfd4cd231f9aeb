"""Benchmark `ganprint check` (and `ganprint detect`) against the ORIGINAL detect_fingerprints.py, whole processes.

The question of issue 24: how long does a user wait, from typing the command to its end, to check N images? Every
run is timed from start to exit (interpreter start-up and imports included) by agf_original_baseline.run_measured,
with the same weights on both sides. The original is the detect_fingerprints.py of the checkout given with
--original, started by agf_original_baseline.py (weights written in the original layout and the stand-ins it needs
in a temporary folder outside this repository; nothing in the checkout changes). Without --original the benchmark
says what to pass and exits 0 (skipped).

Set-up (not timed): N sample crops of R x R px (`ganprint data samples`, seed 0), one model (`--model FILE`, else
an untrained K=100 model from `ganprint train --steps 1`: the speed does not depend on the weights), those crops
fingerprinted by `ganprint embed --identical` (one fingerprint, which every check is given), and the model's
decoder as ONNX (`ganprint export --format onnx`). One round runs, interleaved because a shared machine's speed
wanders:
- orig-detect: detect_fingerprints.py on the folder (it writes the bits; it computes no p-value);
- check-onnx: `ganprint check FILES... --model decoder.onnx --fingerprint FP --json` (ONNX Runtime, no torch);
- check-torch: the same with the safetensors model (PyTorch; `--precision` auto);
- detect: `ganprint detect --data DIR --fingerprint FP` (`--jobs` auto; writes its outdir).
`check` gets the N file names on its command line, as a shell glob would give them. Each run's output is checked:
N rows (N lines of bits for the original). The table gives medians, and orig/ours as the median of the per-round
wall-time ratios with their range.

    python benchmarks/perf/bench_check.py --original /tmp/agf --count 10000 --resolution 32 --threads 2 \\
        --repeat 3 --json benchmarks/perf/results/check-original.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import agf_original_baseline as orig  # the runner beside this file
import bench_embed_detect as ed  # its inputs and model

log = logging.getLogger("bench_check")
KINDS = ("orig-detect", "check-onnx", "check-torch", "detect")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", default=None, help="checkout of ningyu1991/ArtificialGANFingerprints; without it "
                   "the benchmark is skipped (exit 0)")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="rounds of the runs, interleaved; medians reported")
    p.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of every process (both sides)")
    p.add_argument("--batch-size", type=int, default=64, help="both sides (the original's default is 64)")
    p.add_argument("--model", default=None, help="a ganprint stega export (default: an untrained K=100 model)")
    p.add_argument("--workdir", default="/tmp/ganprint-bench-check", help="inputs, models and outputs (kept)")
    p.add_argument("--skip", nargs="*", default=[], choices=KINDS, help="kinds to skip")
    p.add_argument("--ganprint", default=None, help="the ganprint CLI (default: the one beside this Python)")
    p.add_argument("--original-python", default=sys.executable, help="interpreter for the original script")
    p.add_argument("--json", default=None, help="append result rows to this JSONL file")
    return p.parse_args(argv)


def prepare(gp: str, a: argparse.Namespace) -> dict:
    """Inputs, model, fingerprinted images, their fingerprint and the ONNX decoder (not timed)."""
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    crops = ed.make_inputs(gp, work, a.resolution, a.count) if not (work / f"in-{a.resolution}-{a.count}").is_dir() \
        else work / f"in-{a.resolution}-{a.count}"
    model = ed.make_model(gp, work, a.resolution, crops, {a.resolution: a.model} if a.model else {})
    emb = work / "emb"
    if not (emb / "embedded_fingerprints.txt").is_file():
        ed._quiet([gp, "embed", "--model", str(model), "--data", str(crops), "--outdir", str(emb), "--identical",
                   "--device", "cpu"])
    fingerprint = (emb / "embedded_fingerprints.txt").read_text().split("\n", 1)[0].split()[-1]
    onnx = work / f"{model.stem}.onnx"
    if not onnx.is_file():
        ed._quiet([gp, "export", "--model", str(model), "--format", "onnx", str(onnx)])
    images = emb / "fingerprinted_images"
    files = sorted(str(p) for p in images.glob("*.png"))
    if len(files) != a.count:
        raise orig.OriginalError(f"{images} holds {len(files)} images, expected {a.count}")
    return {"work": work, "model": model, "onnx": onnx, "images": images, "files": files, "fingerprint": fingerprint}


def commands(gp: str, session: orig.OriginalSession, s: dict, a: argparse.Namespace) -> list[tuple[str, list, Path]]:
    """(kind, command, output folder) of one round, without the skipped kinds."""
    work, fp = s["work"], s["fingerprint"]
    check = [gp, "check", *s["files"], "--fingerprint", fp, "--json", "--batch-size", str(a.batch_size)]
    steps = [
        ("orig-detect", session.detect_cmd(s["images"], work / "orig-det", a.batch_size), work / "orig-det"),
        ("check-onnx", [*check, "--model", str(s["onnx"])], work / "check-onnx"),
        ("check-torch", [*check, "--model", str(s["model"])], work / "check-torch"),
        ("detect", [gp, "detect", "--model", str(s["model"]), "--data", str(s["images"]), "--outdir",
                    str(work / "det"), "--fingerprint", fp, "--device", "cpu", "--batch-size", str(a.batch_size)],
         work / "det"),
    ]
    return [step for step in steps if step[0] not in a.skip]


def rows_written(kind: str, out: Path) -> int:
    """How many images a run answered for: JSON rows of `check` (its log is its stdout), lines of bits else."""
    if kind.startswith("check"):
        return sum(1 for line in out.with_name(out.name + ".log").read_text().splitlines()
                   if line.startswith("{") and "matches" in json.loads(line))
    return ed._lines(out / "detected_fingerprints.txt")


def run_one(kind: str, cmd: list, env: dict, out: Path, n: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    # check exits 1 when an image is not detected (an untrained model detects nothing): both are a finished run
    row = orig.run_measured(cmd, env, out.with_name(out.name + ".log"), ok=(0, 1) if kind.startswith("check")
                            else (0,))
    images = rows_written(kind, out)
    if images != n:
        raise orig.OriginalError(f"{kind} answered for {images} images, expected {n}")
    return {"kind": kind, "images": images, **row, "images_per_s": round(images / row["wall_s"], 1)}


def print_medians(rows: list[dict]) -> None:
    print("| run | rounds | wall s (median, min-max) | images/s (median) | CPU s (median) | largest process MB | "
          "orig / ours wall (median, min-max) |")
    print("|---|---|---|---|---|---|---|")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["kind"], []).append(r)
    theirs = {r["round"]: r["wall_s"] for r in groups.get("orig-detect", [])}
    for kind, rs in groups.items():
        walls = [r["wall_s"] for r in rs]
        per_round = [theirs[r["round"]] / r["wall_s"] for r in rs if r["round"] in theirs]
        ratio = "" if kind == "orig-detect" or not per_round else \
            f"**{statistics.median(per_round):.2f}x** ({min(per_round):.2f}-{max(per_round):.2f})"
        print(f"| {kind} | {len(rs)} | {statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f}) | "
              f"{rs[0]['images'] / statistics.median(walls):.0f} | {statistics.median(r['cpu_s'] for r in rs):.2f} | "
              f"{max(r['max_process_rss_mb'] for r in rs):.0f} | {ratio} |")


def main(argv=None) -> None:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    orig.skip_without_original(a.original)
    try:
        root = orig.check_original(a.original)
        gp = ed.ganprint_cli(a.ganprint)
        version = subprocess.run([gp, "--version"], capture_output=True, text=True, check=False).stdout.split()[-1:]
        s = prepare(gp, a)
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
        common = {"resolution": a.resolution, "count": a.count, "threads": a.threads, "batch_size": a.batch_size,
                  "ganprint_version": "".join(version), "original_commit": orig.checkout_commit(root)}
        rows = []
        with orig.original_session(a.original, s["model"], a.original_python) as session:
            steps = commands(gp, session, s, a)
            for rnd in range(a.repeat):
                for kind, cmd, out in steps:
                    run_env = session.env(a.threads) if kind.startswith("orig") else env
                    row = run_one(kind, cmd, run_env, out, a.count)
                    row.update(round=rnd, load_avg_1min=round(os.getloadavg()[0], 2),
                               torchvision=session.torchvision if kind.startswith("orig") else None, **common)
                    rows.append(row)
                    ed._emit(row, a)
    except orig.OriginalError as e:
        sys.exit(f"error: {e}")
    print_medians(rows)


if __name__ == "__main__":
    main()
