"""Benchmark `ganprint embed` / `ganprint detect` against the ORIGINAL ArtificialGANFingerprints scripts.

Both sides run as whole processes, as a user runs them, timed from start to exit (interpreter start-up and
imports included): ganprint through its `ganprint` CLI, the original through the embed_fingerprints.py /
detect_fingerprints.py of the checkout given with --original, started by agf_original_baseline.py with the same
weights written in the original layout. Without --original the benchmark says what to pass and exits 0 (skipped),
unless both original kinds are skipped (`--skip orig-embed orig-detect`: ganprint alone, e.g. to make the inputs
that profile_embed_detect.py reads from --workdir).

For each resolution R and count N: N sample crops of R x R px (`ganprint data samples`, seed 0: already at the
model's size, since the original detect does not resize), and one model per R: `--model R=FILE`, else an
untrained K=100 model from `ganprint train --steps 1` (speed does not depend on the weights). One round runs
ours-embed, ours-detect (with --embedded, so it also computes p-values), orig-embed and orig-detect; rounds are
interleaved because a shared machine's speed wanders, and the table gives medians, ours/orig being the median of
the per-round wall-time ratios with their range.

Per run (JSONL rows with --json): wall s; CPU s (user + system of the whole process tree, from wait4); the largest
single process's peak RSS (exact) and the whole tree's summed RSS (sampled every 0.1 s, an upper-bound flavour:
pages shared between processes count in each). After the rounds, an untimed check decodes each side's
fingerprinted images with the other side's detector: the original's bits must agree with ganprint's.

    python benchmarks/perf/bench_embed_detect.py --original ../ArtificialGANFingerprints --counts 10000 \\
        --resolutions 32 --threads 2 --repeat 5 --json benchmarks/perf/results/embed-detect-original.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
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

log = logging.getLogger("bench_embed_detect")
KINDS = ("ours-embed", "ours-detect", "orig-embed", "orig-detect")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", default=None, help="checkout of ningyu1991/ArtificialGANFingerprints; without it "
                   "the benchmark is skipped (exit 0) unless both orig-* kinds are in --skip")
    p.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 128])
    p.add_argument("--repeat", type=int, default=1, help="rounds of the four runs, interleaved; medians reported")
    p.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of every process (both sides)")
    p.add_argument("--batch-size", type=int, default=64, help="both sides (the original's default is 64)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="ours only (auto = bf16 on CPUs with native bf16); the original is always fp32")
    p.add_argument("--jobs", default="auto", help="ours only: `--jobs` of the CLI (default auto, as the CLI)")
    p.add_argument("--num-workers", type=int, default=None, help="ours only; default: the CLI's")
    p.add_argument("--model", nargs="*", default=[], metavar="R=FILE",
                   help="a ganprint stega export to use at resolution R (default: an untrained K=100 model)")
    p.add_argument("--workdir", default="/tmp/ganprint-bench", help="inputs, models and outputs (kept)")
    p.add_argument("--skip", nargs="*", default=[], choices=KINDS, help="kinds to skip")
    p.add_argument("--no-check", action="store_true", help="skip the untimed cross-decoding check")
    p.add_argument("--ganprint", default=None, help="the ganprint CLI (default: the one beside this Python)")
    p.add_argument("--original-python", default=sys.executable, help="interpreter for the original scripts")
    p.add_argument("--json", default=None, help="append result rows to this JSONL file")
    return p.parse_args(argv)


def ganprint_cli(given: str | None) -> str:
    cli = given or str(Path(sys.executable).with_name("ganprint"))
    if not (shutil.which(cli) or Path(cli).is_file()):
        raise orig.OriginalError(f"--ganprint {cli}: no ganprint CLI there; install ganprint or pass --ganprint PATH")
    return cli


def _quiet(cmd: list[str]) -> None:
    """Run a set-up command (not timed); its output shows only when it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise orig.OriginalError(f"{' '.join(cmd)} failed:\n{(res.stdout + res.stderr)[-3000:]}")


def make_inputs(gp: str, work: Path, res: int, n: int) -> Path:
    data = work / f"in-{res}-{n}"
    log.info("inputs: %d sample crops of %d px in %s", n, res, data)
    _quiet([gp, "data", "samples", str(data), "--resolution", str(res), "--count", str(n), "--seed", "0"])
    return data


def make_model(gp: str, work: Path, res: int, data: Path, given: dict[int, str]) -> Path:
    """The export used at resolution `res`: the one given with --model, else an untrained K=100 model."""
    if res in given:
        return Path(given[res])
    model = work / f"model-{res}.safetensors"  # the path profile_embed_detect.py & co. read
    if not model.exists():
        log.info("model: untrained, K=100, %d px, in %s", res, model)
        run = work / f"model-{res}-train"
        _quiet([gp, "train", "--data", str(data), "--resolution", str(res), "--fingerprint-length", "100",
                "--steps", "1", "--batch-size", "4", "--outdir", str(run), "--snapshot-every", "0",
                "--checkpoint-every", "0"])
        shutil.copyfile(run / "model.safetensors", model)
    return model


def ours_cmd(gp: str, kind: str, model: Path, data: Path, out: Path, a: argparse.Namespace,
             embedded: Path | None = None, precision: str | None = None) -> list[str]:
    cmd = [gp, kind, "--model", str(model), "--data", str(data), "--outdir", str(out), "--device", "cpu",
           "--batch-size", str(a.batch_size), "--precision", precision or a.precision, "--jobs", str(a.jobs)]
    if a.num_workers is not None:
        cmd += ["--workers", str(a.num_workers)]
    return cmd + (["--embedded", str(embedded)] if embedded else [])


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _ours_precision(out: Path) -> str:
    for name in ("manifest.json", "summary.json"):
        if (out / name).is_file():
            return json.loads((out / name).read_text()).get("precision", "?")
    return "?"


def run_one(kind: str, cmd: list[str], env: dict, out: Path, n: int) -> dict:
    """One timed whole-process run; checks that it wrote one line per image."""
    shutil.rmtree(out, ignore_errors=True)
    row = orig.run_measured(cmd, env, out.with_name(out.name + ".log"))
    written = out / ("embedded_fingerprints.txt" if kind.endswith("embed") else "detected_fingerprints.txt")
    images = _lines(written)
    if images != n:
        raise orig.OriginalError(f"{kind} wrote {images} lines to {written}, expected {n}")
    precision = _ours_precision(out) if kind.startswith("ours") else "fp32"
    return {"kind": kind, "precision": precision, "images": images, **row,
            "images_per_s": round(images / row["wall_s"], 1), "images_per_cpu_s": round(images / row["cpu_s"], 1)}


def plan(gp: str, session: orig.OriginalSession | None, model: Path, data: Path, work: Path, a) -> list[tuple]:
    """(kind, command, output folder) of one round, in run order, without the skipped kinds."""
    ours_emb, orig_emb = work / "ours-emb", work / "orig-emb"
    steps = [
        ("ours-embed", ours_cmd(gp, "embed", model, data, ours_emb, a), ours_emb),
        ("ours-detect", ours_cmd(gp, "detect", model, ours_emb / "fingerprinted_images", work / "ours-det", a,
                                 embedded=ours_emb / "embedded_fingerprints.txt"), work / "ours-det"),
    ]
    if session is not None:
        steps += [
            ("orig-embed", session.embed_cmd(data, orig_emb, a.batch_size), orig_emb),
            ("orig-detect", session.detect_cmd(orig_emb / "fingerprinted_images", work / "orig-det", a.batch_size),
             work / "orig-det"),
        ]
    return [step for step in steps if step[0] not in a.skip]


def _bits(work: Path, run: str) -> Path:
    return work / run / "detected_fingerprints.txt"


def _embedded(work: Path, run: str) -> Path:
    return work / run / "embedded_fingerprints.txt"


def cross_check(gp: str, session: orig.OriginalSession, model: Path, work: Path, a, env: dict) -> dict:
    """Untimed: the original decodes ganprint's images and ganprint (fp32) the original's; bits must agree."""
    orig.run_measured(session.detect_cmd(work / "ours-emb" / "fingerprinted_images", work / "check-orig-det",
                                         a.batch_size), session.env(a.threads), work / "check-orig-det.log")
    orig.run_measured(ours_cmd(gp, "detect", model, work / "orig-emb" / "fingerprinted_images",
                               work / "check-ours-det", a, precision="fp32"), env, work / "check-ours-det.log")
    on_ours = {"orig_vs_ours_bits": orig.compare_bits(_bits(work, "check-orig-det"), _bits(work, "ours-det")),
               "ours_bit_accuracy": orig.compare_bits(_bits(work, "ours-det"), _embedded(work, "ours-emb")),
               "orig_bit_accuracy": orig.compare_bits(_bits(work, "check-orig-det"), _embedded(work, "ours-emb"))}
    on_orig = {"ours_fp32_vs_orig_bits": orig.compare_bits(_bits(work, "check-ours-det"), _bits(work, "orig-det")),
               "orig_bit_accuracy": orig.compare_bits(_bits(work, "orig-det"), _embedded(work, "orig-emb")),
               "ours_fp32_bit_accuracy": orig.compare_bits(_bits(work, "check-ours-det"),
                                                           _embedded(work, "orig-emb"))}
    for part in (on_ours, on_orig):  # keep the accuracies as plain numbers
        for key in [k for k in part if k.endswith("_accuracy")]:
            part[key] = part[key]["bit_accuracy"]
    return {"kind": "check", "ours_detect_precision": _ours_precision(work / "ours-det"),
            "on_ganprint_images": on_ours, "on_original_images": on_orig}


def _emit(row: dict, a) -> None:
    print(json.dumps(row), file=sys.stderr)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(row) + "\n")


def _needs_original(a) -> bool:
    """Runs of ganprint alone (`--skip orig-embed orig-detect`, e.g. to make inputs for profile_embed_detect.py)
    do not need the checkout."""
    return not {"orig-embed", "orig-detect"} <= set(a.skip)


def bench_resolution(gp: str, res: int, a, given: dict[int, str], common: dict) -> list[dict]:
    """All counts and rounds at one resolution; returns the timed rows."""
    work = Path(a.workdir)
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    rows = []
    inputs = {n: make_inputs(gp, work, res, n) for n in a.counts}
    model = make_model(gp, work, res, inputs[min(a.counts)], given)
    with (orig.original_session(a.original, model, a.original_python) if _needs_original(a)
          else contextlib.nullcontext()) as session:
        if session is not None and session.weights.resolution != res:
            raise orig.OriginalError(f"--model {res}={model}: that model is for {session.weights.resolution} px")
        for n in a.counts:
            steps = plan(gp, session, model, inputs[n], work, a)
            for rnd in range(a.repeat):
                for kind, cmd, out in steps:
                    run_env = session.env(a.threads) if kind.startswith("orig") else env
                    row = run_one(kind, cmd, run_env, out, n)
                    row.update(resolution=res, count=n, round=rnd, load_avg_1min=round(os.getloadavg()[0], 2),
                               torchvision=session.torchvision if kind.startswith("orig") else None, **common)
                    rows.append(row)
                    _emit(row, a)
            if not a.no_check and not a.skip:
                _emit({**cross_check(gp, session, model, work, a, env), "resolution": res, "count": n, **common}, a)
    return rows


def print_medians(rows: list[dict]) -> None:
    print("| R | N | run | precision | rounds | images/s (median) | wall s (median, min-max) | CPU s (median) | "
          "largest process MB | process tree MB (sampled) | processes | ours / orig wall (median, min-max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["resolution"], r["count"], r["kind"]), []).append(r)
    for (res, n, kind), rs in groups.items():
        walls = [r["wall_s"] for r in rs]
        ratio = ""
        if kind.startswith("ours"):
            theirs = {r["round"]: r["wall_s"] for r in groups.get((res, n, "orig" + kind[4:]), [])}
            per_round = [theirs[r["round"]] / r["wall_s"] for r in rs if r["round"] in theirs]
            if per_round:
                ratio = f"**{statistics.median(per_round):.2f}x** ({min(per_round):.2f}-{max(per_round):.2f})"
        print(f"| {res} | {n} | {kind} | {rs[0]['precision']} | {len(rs)} | {n / statistics.median(walls):.1f} | "
              f"{statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f}) | "
              f"{statistics.median(r['cpu_s'] for r in rs):.2f} | {max(r['max_process_rss_mb'] for r in rs):.0f} | "
              f"{max(r['tree_rss_mb'] for r in rs):.0f} | {max(r['processes'] for r in rs)} | {ratio} |")


def main(argv=None) -> None:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if _needs_original(a):
        orig.skip_without_original(a.original)
    try:
        given = {int(r): f for r, f in (m.split("=", 1) for m in a.model)}
    except ValueError:
        sys.exit("error: --model takes R=FILE, e.g. --model 32=runs/fp32/model.safetensors")
    try:
        root = orig.check_original(a.original) if _needs_original(a) else None
        gp = ganprint_cli(a.ganprint)
        version = subprocess.run([gp, "--version"], capture_output=True, text=True, check=False).stdout.split()[-1:]
        common = {"threads": a.threads, "batch_size": a.batch_size, "jobs": a.jobs, "ganprint_version": "".join(version),
                  "original_commit": orig.checkout_commit(root) if root else None}
        Path(a.workdir).mkdir(parents=True, exist_ok=True)
        rows = [r for res in a.resolutions for r in bench_resolution(gp, res, a, given, common)]
    except orig.OriginalError as e:
        sys.exit(f"error: {e}")
    print_medians(rows)


if __name__ == "__main__":
    main()
