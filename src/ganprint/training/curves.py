"""curves.png: a run's training curves, drawn from its JSONL logs (stats.jsonl and the trainer's metric log).

Panels, each only when the logs hold it: the loss terms, the bit accuracies, the PSNR. The x axis is kimg where the
rows carry it (the GAN, scalable and diffusion trainers), else the step. Rewritten atomically at every checkpoint and
at the end, so the picture always matches the rows that a resumed run keeps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ganprint.core.files import atomic_path, read_jsonl

CURVES_FILE = "curves.png"
_SKIP = {"step", "kimg", "tick", "images", "world_size"}


def _panel_of(key: str) -> str | None:
    if "loss" in key or key in ("bce", "l2", "loss_G", "loss_D"):
        return "loss terms"
    if key.startswith("bit_acc"):
        return "bit accuracy"
    if key == "psnr":
        return "PSNR (dB)"
    return None


def curve_series(rows: list[dict]) -> tuple[str, dict[str, dict[str, list[tuple[float, float]]]]]:
    """(x axis name, {panel: {key: [(x, y), ...]}}) of the finite numeric values of `rows`."""
    axis = "kimg" if any("kimg" in r for r in rows) else "step"
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for row in rows:
        x = row.get(axis)
        if not isinstance(x, (int, float)):
            continue
        for key, y in row.items():
            panel = None if key in _SKIP else _panel_of(key)
            if panel and isinstance(y, (int, float)) and not isinstance(y, bool) and math.isfinite(y):
                panels.setdefault(panel, {}).setdefault(key, []).append((float(x), float(y)))
    return axis, panels


def write_curves(outdir: str | os.PathLike, logs: tuple[str, ...]) -> Path | None:
    """Draw the curves of the JSONL `logs` in `outdir` into outdir/curves.png; None when there is nothing to draw."""
    paths = [Path(outdir) / name for name in logs]
    rows = [r for p in paths if p.is_file() for r in read_jsonl(p) if isinstance(r, dict)]
    axis, panels = curve_series(rows)
    if not panels:
        return None
    # matplotlib takes longer to import than the rest of a training start; only the plot needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(panels), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, series) in enumerate(sorted(panels.items())):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key, marker="." if len(points) < 20 else None)
        ax.set_title(title)
        ax.set_xlabel(axis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(outdir) / CURVES_FILE
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
