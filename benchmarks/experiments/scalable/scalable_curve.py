"""Bit accuracy against kimg of a `ganprint train-scalable` run: plot + table.

    python benchmarks/experiments/scalable/scalable_curve.py RUN_DIR [--out benchmarks/experiments/scalable/results/scalable_curve.png]

Reads RUN/metric-bit-accuracy.jsonl (G_ema, random z and random fingerprints, decoded by the run's decoder: the
periodic metric of the training loop) and RUN/stats.jsonl (training-batch bit accuracy, losses, speed). Writes
the plot, a CSV beside it, and prints a markdown table plus the first kimg where the metric reached 0.95.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ganprint.core.files import read_jsonl


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, default=Path("benchmarks/experiments/scalable/results/scalable_curve.png"))
    p.add_argument("--target", type=float, default=0.95)
    a = p.parse_args(argv)
    # A resumed run replays from its last snapshot, so rows of an interrupted segment past that point come twice:
    # keep the last row per kimg (the replay), in kimg order.
    metric = sorted({m["kimg"]: m for m in read_jsonl(a.run / "metric-bit-accuracy.jsonl")}.values(),
                    key=lambda m: m["kimg"])
    stats = sorted({s["kimg"]: s for s in read_jsonl(a.run / "stats.jsonl")}.values(), key=lambda s: s["kimg"])
    # Training time along the kept trajectory: each tick row's seconds per kimg times the kimg it covers.
    elapsed, prev = [], 0.0
    for row in stats:
        prev_t = elapsed[-1] if elapsed else 0.0
        elapsed.append(prev_t + row["sec_per_kimg"] * (row["kimg"] - prev))
        prev = row["kimg"]

    def minutes_at(kimg: float) -> float:
        return next((t for row, t in zip(stats, elapsed) if row["kimg"] >= kimg), elapsed[-1]) / 60
    if not metric:
        print(f"no metric rows in {a.run}", file=sys.stderr)
        return 1

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot([m["kimg"] for m in metric], [m["bit_accuracy"] for m in metric], "o-",
               label=f"G_ema, random fingerprints ({metric[-1]['images']} images)")
    ax[0].plot([s["kimg"] for s in stats], [s.get("bit_acc_train", float("nan")) for s in stats], lw=0.8, alpha=0.6,
               label="training batch (G)")
    ax[0].axhline(a.target, color="k", ls="--", lw=0.8)
    ax[0].set_xlabel("kimg")
    ax[0].set_ylabel("bit accuracy")
    ax[0].set_ylim(0.4, 1.0)
    ax[0].legend(loc="lower right")
    ax[0].set_title(a.run.name)
    for key in ("loss/const", "loss/bits", "loss/G_adv", "loss/D"):
        # Runs written before the stats were named loss/<term> call them loss_<term>.
        old = key.replace("/", "_")
        ax[1].plot([s["kimg"] for s in stats], [s.get(key, s.get(old, float("nan"))) for s in stats], label=key,
                   lw=0.9)
    ax[1].set_yscale("log")
    ax[1].set_xlabel("kimg")
    ax[1].legend()
    ax[1].set_title("losses")
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    with open(a.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kimg", "bit_accuracy", "images", "train_minutes"])
        for m in metric:
            w.writerow([m["kimg"], m["bit_accuracy"], m["images"], round(minutes_at(m["kimg"]), 2)])

    print("| kimg | training minutes | bit accuracy (G_ema) |")
    print("|---:|---:|---:|")
    for m in metric:
        print(f"| {m['kimg']:.1f} | {minutes_at(m['kimg']):.1f} | {m['bit_accuracy']:.4f} |")
    hit = next((m for m in metric if m["bit_accuracy"] >= a.target), None)
    print(f"\nfirst >= {a.target}: " + (f"{hit['kimg']:.1f} kimg after {minutes_at(hit['kimg']):.1f} min of training"
                                        if hit else "not reached") +
          f"; last: {metric[-1]['bit_accuracy']:.4f} at {metric[-1]['kimg']:.1f} kimg "
          f"({elapsed[-1] / 60:.1f} min of training, summed over tick rows)")
    print(f"plot: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
