"""Benchmark `ganprint embed` / `ganprint detect` against a port of the original scripts on the same CPU.

For each resolution R and image count N: N sample crops of R x R px are generated once (`write_samples`,
seed 0) and an untrained StegaModel(R, K=100) is exported (speed does not depend on the weights). Then four
fresh processes run one after another, each timed around the call only (imports excluded):
ours-embed (api.embed, per-image fingerprints), ours-detect (api.detect with --embedded, so it also computes
p-values), orig-embed and orig-detect (benchmarks/agf_original_baseline.py). Peak RSS is the process's
ru_maxrss; DataLoader workers are reported separately (RUSAGE_CHILDREN). CPU s = user + system time of the
process and its workers during the call (less sensitive than wall time to other jobs on a shared machine).

    python benchmarks/bench_embed_detect.py --counts 1000 10000 --resolutions 32 --threads 2 [--jobs auto|N] \
        [--repeat 5]

With --repeat N the four runs are repeated N times, interleaved (ours, orig, ours, orig, ...), because this
machine's speed wanders by up to 40 % over minutes; the table then gives medians, and ours/orig is the median of
the N per-round ratios with their range.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _child(kind: str, model: str, data: str, out: str, threads: int, num_workers: int | None,
           precision: str = "auto", jobs: str = "auto") -> dict:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(HERE))
    from ganprint import api
    from ganprint.artificial import jobs as jobs_mod
    from ganprint.artificial.batches import plan_jobs
    import agf_original_baseline as orig

    me = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = me.ru_utime + me.ru_stime  # CPU seconds (all threads; workers added at the end), less load-sensitive
    min_per_job = jobs_mod.MIN_IMAGES_PER_DETECT_JOB if kind == "ours-detect" else jobs_mod.MIN_IMAGES_PER_JOB
    n_jobs = plan_jobs(jobs, "cpu", data, model, min_per_job) if kind.startswith("ours") else 1  # as the call does
    t = time.perf_counter()
    if kind == "ours-embed":
        summary = api.embed(model, data, out, device="cpu", num_workers=num_workers, precision=precision, jobs=jobs)
        n, precision = summary["fingerprinted"], summary["precision"]
    elif kind == "ours-detect":
        summary = api.detect(model, data, out, embedded=str(Path(data).parent / "embedded_fingerprints.txt"),
                             device="cpu", num_workers=num_workers, precision=precision, jobs=jobs)
        n, precision = summary["images"], summary["precision"]
    elif kind == "orig-embed":
        n, precision = orig.embed_fingerprints(model, data, out), "fp32"
    elif kind == "orig-detect":
        n, precision = orig.detect_fingerprints(model, data, out), "fp32"
    else:
        raise ValueError(kind)
    wall = time.perf_counter() - t
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - cpu0
    main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kid_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child, not a sum
    return {"kind": kind, "precision": precision, "jobs": n_jobs, "images": n, "wall_s": round(wall, 3),
            "images_per_s": round(n / wall, 1), "cpu_s": round(cpu, 2), "images_per_cpu_s": round(n / cpu, 1),
            "peak_rss_mb": round(main_mb, 1), "workers_peak_rss_mb": round(kid_mb, 1),
            # --jobs N: the parent plus N children, each at most the largest child's peak (an upper bound)
            "total_rss_mb_bound": round(main_mb + (n_jobs * kid_mb if n_jobs > 1 else 0), 1)}


def _run_child(kind, model, data, out, threads, num_workers, precision="auto", jobs="auto") -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", kind, "--model", str(model), "--data", str(data), "--out", str(out),
           "--threads", str(threads), "--precision", precision, "--jobs", str(jobs)]
    if num_workers is not None:
        cmd += ["--num-workers", str(num_workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="ours only (auto = bf16 on CPUs with native bf16); the original is always fp32")
    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num-workers", type=int, default=None, help="ours only; default: api's choice")
    p.add_argument("--jobs", default="auto", help="ours only: processes (`--jobs` of the CLI; default auto, as the CLI)")
    p.add_argument("--workdir", default="/tmp/ganprint-bench")
    p.add_argument("--skip", nargs="*", default=[], help="kinds to skip, e.g. orig-embed")
    p.add_argument("--repeat", type=int, default=1, help="rounds of the four runs, interleaved; medians reported")
    p.add_argument("--json", default=None, help="append result rows to this JSONL file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(_child(a.child, a.model, a.data, a.out, a.threads, a.num_workers, a.precision, a.jobs)))
        return

    import torch

    from ganprint.checkpoint import save_export
    from ganprint.models.stega import StegaConfig, StegaModel, stega_config_dict
    from ganprint.samples import write_samples

    work = Path(a.workdir)
    rows = []
    for res in a.resolutions:
        model = work / f"model-{res}.safetensors"
        if not model.exists():
            torch.manual_seed(0)
            m = StegaModel(StegaConfig(res, 100))
            save_export(model, m, "stega", stega_config_dict(m.cfg))
        for n in a.counts:
            data = work / f"in-{res}-{n}"
            t = time.perf_counter()
            write_samples(data, resolution=res, count=n, seed=0)
            print(f"inputs {data}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
            plan = [("ours-embed", data, work / "ours-emb"),
                    ("ours-detect", work / "ours-emb" / "fingerprinted_images", work / "ours-det"),
                    ("orig-embed", data, work / "orig-emb"),
                    ("orig-detect", work / "orig-emb" / "fingerprinted_images", work / "orig-det")]
            for rep in range(a.repeat):
                for kind, d, out in plan:
                    if kind in a.skip:
                        continue
                    ours = kind.startswith("ours")
                    r = _run_child(kind, model, d, out, a.threads, a.num_workers if ours else None, a.precision,
                                   a.jobs)
                    r.update({"resolution": res, "count": n, "threads": a.threads, "round": rep,
                              "load_avg_1min": round(os.getloadavg()[0], 2)})
                    rows.append(r)
                    print(json.dumps(r), file=sys.stderr)
                    if a.json:
                        with open(a.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
    if a.repeat > 1:
        _print_medians(rows)
        return
    print("| R | N | run | precision | jobs | images/s | wall s | CPU s | peak RSS MB (main) | all processes MB (bound) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['resolution']} | {r['count']} | {r['kind']} | {r['precision']} | {r['jobs']} | {r['images_per_s']} | "
              f"{r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['total_rss_mb_bound']} |")


def _print_medians(rows: list[dict]) -> None:
    import statistics

    print("| R | N | run | precision | jobs | rounds | images/s (median) | wall s (median, min-max) | CPU s (median) "
          "| peak RSS MB (main) | all processes MB (bound) | ours / orig (median, min-max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["resolution"], r["count"], r["kind"]), []).append(r)
    for (res, n, kind), rs in groups.items():
        walls = [r["wall_s"] for r in rs]
        ratio = ""
        if kind.startswith("ours"):
            orig = {r["round"]: r["wall_s"] for r in groups.get((res, n, "orig" + kind[4:]), [])}
            per_round = [orig[r["round"]] / r["wall_s"] for r in rs if r["round"] in orig]
            if per_round:
                ratio = (f"**{statistics.median(per_round):.2f}x** ({min(per_round):.2f}-{max(per_round):.2f})")
        print(f"| {res} | {n} | {kind} | {rs[0]['precision']} | {rs[0]['jobs']} | {len(rs)} | "
              f"{n / statistics.median(walls):.1f} | {statistics.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f}) "
              f"| {statistics.median(r['cpu_s'] for r in rs):.2f} | {max(r['peak_rss_mb'] for r in rs):.0f} | "
              f"{max(r['total_rss_mb_bound'] for r in rs):.0f} | {ratio} |")


if __name__ == "__main__":
    main()
