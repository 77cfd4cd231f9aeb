"""Evaluation outputs: tidy JSONL, per-attack summary tables (CSV, Markdown), plots, and a readable report.

Rows of model-level attacks (attack names `model:<name>`, from `evaluate_model_attacks`) are summarized like image
attacks; the report gives them their own table and plot (`model_attacks.png`).
All files are written atomically. Plots use matplotlib's Agg canvas directly (no pyplot, no global backend).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from ganprint._version import __version__
from ganprint.core.files import atomic_path, atomic_write_json, atomic_write_text
from ganprint.core.stats import capacity, detection_rate
from ganprint.evaluation.model_attacks import MODEL_ATTACK_SPECS, PREFIX
from ganprint.evaluation.roc import roc_auc, roc_curve, tpr_at_fpr
from ganprint.perturb.attacks import ATTACKS

log = logging.getLogger(__name__)

# Reference points of the AGF paper (Yu et al. ICCV 2021, Fig. 3: ProGAN on CelebA 128 px, 100 bits), read off the
# published plot, so approximate. Crop is "crop to 100 px of 128, resized back (inferred)" -> frac 100/128.
PAPER_POINTS: dict[str, list[tuple[float, float]]] = {
    "jpeg": [(50.0, 0.76)],
    "noise": [(0.1, 0.74)],
    "crop": [(100 / 128, 0.75)],
}
PAPER_LABEL = "AGF paper (ProGAN CelebA-128, read off Fig. 3)"

SUMMARY_COLUMNS = ["attack", "strength", "spec", "n", "mean_bit_accuracy", "std_bit_accuracy", "detected",
                   "tpr_analytic_1e-3", "tpr_analytic_1e-6", "capacity_bits", "clean_n", "clean_mean_bit_accuracy",
                   "clean_detected", "tpr_empirical", "tpr_empirical_1e-3", "tpr_empirical_1e-6", "auc"]


def is_model_attack(attack: str) -> bool:
    """Whether an attack label names a model-level attack ('model:prune')."""
    return attack.startswith(PREFIX)


def _axis(name: str) -> tuple[str, bool]:
    """(x-axis label, reversed?) of an attack's panel: reversed where smaller values are stronger."""
    if is_model_attack(name) and name[len(PREFIX):] in MODEL_ATTACK_SPECS:
        a = MODEL_ATTACK_SPECS[name[len(PREFIX):]]
        return a.param + " (model weights)", a.descending
    label = ATTACKS[name].param if name in ATTACKS else "strength of the swept step"
    return label, name in ("jpeg", "webp", "crop", "cropnr", "randcrop", "resize")


def summarize(rows: list[dict], fpr: float, k: int, n_keys: int = 1) -> list[dict]:
    """One row per attack setting (spec, in first-seen order) of the fingerprinted set, with the clean set's
    numbers for the same setting when present.

    detected = share of fingerprinted images with matches >= match_threshold(K, fpr, n_keys) (the analytic TPR);
    tpr_analytic_1e-3 / 1e-6 = the same at those FPRs; clean_detected = share of clean images detected (the
    measured FPR); tpr_empirical(_1e-3, _1e-6) = TPR at `fpr` (1e-3, 1e-6) with the threshold set on the clean
    images' match counts (resolved down to FPR 1/n_clean only);
    auc = ROC AUC of match counts, fingerprinted vs clean.
    """
    by: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        by.setdefault(r["spec"], {}).setdefault(r["set"], []).append(r)
    out = []
    for spec, sets in by.items():
        pos = sets.get("fingerprinted", [])
        neg = sets.get("clean", [])
        if not pos:
            continue
        acc = np.array([r["bit_accuracy"] for r in pos])
        m = np.array([r["matches"] for r in pos])
        row = {"attack": pos[0]["attack"], "strength": pos[0]["strength"], "spec": spec, "n": len(pos),
               "mean_bit_accuracy": float(acc.mean()), "std_bit_accuracy": float(acc.std()),
               "detected": float(np.mean([r["detected"] for r in pos])),
               "tpr_analytic_1e-3": detection_rate(m, k, 1e-3, n_keys),
               "tpr_analytic_1e-6": detection_rate(m, k, 1e-6, n_keys),
               "capacity_bits": capacity(k, float(acc.mean())),
               "clean_n": len(neg), "clean_mean_bit_accuracy": None, "clean_detected": None, "tpr_empirical": None,
               "tpr_empirical_1e-3": None, "tpr_empirical_1e-6": None, "auc": None}
        if neg:
            mn = np.array([r["matches"] for r in neg])
            row.update({"clean_mean_bit_accuracy": float(np.mean([r["bit_accuracy"] for r in neg])),
                        "clean_detected": float(np.mean([r["detected"] for r in neg])),
                        "tpr_empirical": tpr_at_fpr(m, mn, fpr)[0], "tpr_empirical_1e-3": tpr_at_fpr(m, mn, 1e-3)[0],
                        "tpr_empirical_1e-6": tpr_at_fpr(m, mn, 1e-6)[0], "auc": roc_auc(m, mn)})
        out.append(row)
    return out


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2g}"
    return str(v)


def markdown_table(summary: list[dict], with_clean: bool) -> str:
    """The summary as a Markdown table (the columns a reader needs; everything is in summary.csv)."""
    cols = [("attack", "attack"), ("strength", "strength"), ("n", "n"), ("mean_bit_accuracy", "bit acc"),
            ("std_bit_accuracy", "± std"), ("detected", "detected"), ("tpr_analytic_1e-3", "TPR@1e-3"),
            ("tpr_analytic_1e-6", "TPR@1e-6"), ("capacity_bits", "capacity (bits)")]
    if with_clean:
        cols += [("clean_mean_bit_accuracy", "clean bit acc"), ("clean_detected", "clean detected (FPR)"),
                 ("tpr_empirical", "TPR@FPR (empirical)"), ("auc", "AUC")]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in summary:
        lines.append("| " + " | ".join(_fmt(r[c[0]]) if c[0] != "strength" else f"{r['strength']:g}"
                                       for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _canvas(w: float, h: float):
    # matplotlib takes longer to import than the rest of `import ganprint` beside torch; only plots need it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")


def plot_accuracy(summary: list[dict], path: Path, k: int, threshold: int) -> bool:
    """Bit accuracy against strength, one panel per attack (fingerprinted ± std, clean, chance, the detection
    threshold, and the paper's points where known). Returns False when there is nothing to plot."""
    clean_ref = next((r for r in summary if r["attack"] == "none"), None)
    attacks = [a for a in dict.fromkeys(r["attack"] for r in summary) if a != "none"]
    if not attacks:
        return False
    cols = min(3, len(attacks))
    nrows = math.ceil(len(attacks) / cols)
    fig = _canvas(4.2 * cols, 3.3 * nrows)
    for i, name in enumerate(attacks):
        ax = fig.add_subplot(nrows, cols, i + 1)
        pts = sorted((r for r in summary if r["attack"] == name), key=lambda r: r["strength"])
        xs = np.array([r["strength"] for r in pts])
        ys = np.array([r["mean_bit_accuracy"] for r in pts])
        sd = np.array([r["std_bit_accuracy"] for r in pts])
        ax.errorbar(xs, ys, yerr=sd, marker="o", ms=4, capsize=2, label="fingerprinted (mean ± std)")
        if any(r["clean_mean_bit_accuracy"] is not None for r in pts):
            ax.plot(xs, [r["clean_mean_bit_accuracy"] for r in pts], "s--", ms=3, color="grey", label="clean images")
        if clean_ref is not None:
            ax.axhline(clean_ref["mean_bit_accuracy"], color="tab:blue", lw=0.8, ls=":", label="no attack")
        ax.axhline(0.5, color="black", lw=0.6, label="chance")
        ax.axhline(threshold / k, color="tab:red", lw=0.8, ls="--", label=f"detection threshold ({threshold}/{k})")
        if name in PAPER_POINTS:
            px, py = zip(*PAPER_POINTS[name])
            ax.plot(px, py, "*", ms=11, color="tab:orange", label=PAPER_LABEL)
        ax.set_title(name)
        xlabel, reverse = _axis(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("bit accuracy")
        ax.set_ylim(0.3, 1.02)
        if reverse:
            ax.invert_xaxis()  # smaller values are stronger: keep "stronger to the right"
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_roc(rows: list[dict], path: Path, specs: list[str]) -> bool:
    """ROC (log-scale FPR) of match counts, fingerprinted vs clean, for the given attack settings."""
    fig = _canvas(5, 4)
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for spec in specs:
        pos = [r["matches"] for r in rows if r["spec"] == spec and r["set"] == "fingerprinted"]
        neg = [r["matches"] for r in rows if r["spec"] == spec and r["set"] == "clean"]
        if not pos or not neg:
            continue
        f, t, _ = roc_curve(pos, neg)
        floor = 0.5 / len(neg)  # FPR 0 drawn at half the resolution of the clean set
        ax.step(np.maximum(f, floor), t, where="post", label=f"{spec} (AUC {roc_auc(pos, neg):.3f})")
        drawn = True
    if not drawn:
        return False
    ax.set_xscale("log")
    ax.set_xlabel("false-positive rate (clean images; 0 drawn at 0.5/n)")
    ax.set_ylabel("true-positive rate (fingerprinted)")
    ax.set_title("ROC, score = matching bits")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    return True


def _write_csv(path: Path, summary: list[dict], columns: tuple | list = SUMMARY_COLUMNS) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(columns))
            w.writeheader()
            for r in summary:
                w.writerow({c: ("" if r[c] is None else r[c]) for c in columns})


_EXPLAIN = """\
**How to read this.** Each image's fingerprint is decoded after the perturbation and compared with the
reference bits. *bit acc* is the share of matching bits (0.5 = chance). An image is *detected* when its number
of matching bits reaches the threshold at which an image without the fingerprint would pass with probability at
most the chosen false-positive rate (one-sided binomial test, bits of a clean image match with probability 1/2).
*TPR@1e-3 / TPR@1e-6* are the shares detected at those false-positive rates. *capacity* is K·(1 − H(bit acc)),
the information the decoded bits still carry. With clean images: *clean detected* is the measured
false-positive rate, *TPR@FPR (empirical)* uses a threshold set on the clean images' scores instead of the
binomial model (with n clean images it resolves FPRs down to 1/n only), and *AUC* is the area under the ROC curve
of fingerprinted vs clean images under the same perturbation.
"""

_EXPLAIN_MODEL = """\
Model-level attacks perturb the generator's weights (a perturbed copy per setting; the evaluated file is never
changed): *quantize* rounds every parameter to 10^-decimals, *quantize_bits* quantizes each tensor uniformly
to that many bits, *weight_noise* adds Gaussian noise of that standard deviation, *prune* zeroes that fraction
of the smallest weights of every layer. The perturbed copy generates the same seeds, and the images are decoded
without image attack; the *none* row is the unperturbed generator.
"""


def write_outputs(outdir: str | Path, rows: list[dict], meta: dict) -> dict:
    """Write results.jsonl, summary.csv/.md, plots, report.md/.html and eval.json into `outdir`; returns eval.json."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    k, fpr, n_keys = meta["fingerprint_length"], meta["fpr"], meta.get("n_keys", 1)
    mine = [r for r in rows if r.get("method", "ganprint") == "ganprint"]
    summary = summarize(mine, fpr, k, n_keys)
    with_clean = any(r["clean_n"] for r in summary)
    _write_csv(out / "summary.csv", summary)
    image_part = [r for r in summary if not is_model_attack(r["attack"])]
    model_part = [r for r in summary if is_model_attack(r["attack"])]
    if model_part:  # the unperturbed generator as the reference row of the model-attack table
        model_part = [r for r in summary if r["attack"] == "none"] + model_part
    table = markdown_table(image_part, with_clean)
    model_table = markdown_table(model_part, False) if model_part else ""
    atomic_write_text(out / "summary.md", table + (f"\nModel-level attacks:\n\n{model_table}" if model_part else ""))

    plots = []
    if plot_accuracy(image_part, out / "bit_accuracy.png", k, meta["match_threshold"]):
        plots.append(("bit_accuracy.png", "Bit accuracy against attack strength"))
    if model_part and plot_accuracy(model_part, out / "model_attacks.png", k, meta["match_threshold"]):
        plots.append(("model_attacks.png", "Bit accuracy against model-level attack strength"))
    if with_clean:
        specs = ["none"]
        for name in dict.fromkeys(r["attack"] for r in image_part if r["attack"] != "none"):
            pts = [r for r in image_part if r["attack"] == name]
            specs.append(pts[len(pts) // 2]["spec"])  # the middle strength of each attack
        if plot_roc(mine, out / "roc.png", specs[:8]):
            plots.append(("roc.png", "ROC: fingerprinted vs clean images (no attack, and each attack's middle "
                                     "strength)"))

    clean = next((r for r in summary if r["attack"] == "none"), None)
    headline = {"bit_accuracy_no_attack": clean["mean_bit_accuracy"] if clean else None,
                "detected_no_attack": clean["detected"] if clean else None,
                "clean_false_positive_rate": clean["clean_detected"] if clean else None}
    result = {**meta, **headline, "summary": summary, "ganprint_version": __version__,
              "files": ["results.jsonl", "summary.csv", "summary.md", *[p for p, _ in plots], "report.md",
                        "report.html", "eval.json"]}

    lines = ["# Fingerprint robustness report\n",
             f"- model: `{meta['model']}` ({meta['fingerprint_length']} bits, {meta['resolution']} px)",
             f"- fingerprinted images: generated by `{meta['generator']}` from seeds {_seeds_text(meta['seeds'])} "
             f"({meta['images']} images)" if meta.get("generator") else
             f"- fingerprinted images: `{meta['data']}` ({meta['images']} images)",
             f"- clean images: `{meta['clean']}` ({meta['clean_images']} images)" if meta.get("clean") else
             "- clean images: none given (no measured false-positive rate, no ROC)",
             f"- reference: {meta['reference'][:80]}",
             *([f"- scale search: each image decoded after undoing a centre crop of "
                f"{', '.join(f'{v:g}' for v in meta['scale_search'])}; the most confident decoding kept"]
               if meta.get("scale_search") else []),
             (f"- decision: detected when matching bits ≥ {meta['match_threshold']} of {k} "
              f"(false-positive rate {fpr:g}" + (f", {n_keys} keys" if n_keys > 1 else "") + ")"
              if meta["match_threshold"] <= k else
              f"- decision: **no image can be detected**: even {k} of {k} matching bits is not significant at "
              f"false-positive rate {fpr:g}; use longer fingerprints or a larger false-positive rate"),
             f"- attacks: {len(meta['attacks'])} settings" +
             (f", model-level attacks: {len(meta['model_attacks'])} settings" if meta.get("model_attacks") else "") +
             f"; seed {meta['seed']}; ganprint {__version__}\n"]
    if clean:
        lines.append(f"**Without attack:** mean bit accuracy {clean['mean_bit_accuracy']:.4f}, "
                     f"{100 * clean['detected']:.1f} % detected" +
                     (f"; clean images detected: {100 * clean['clean_detected']:.2f} %" if with_clean else "") + ".\n")
    lines += [_EXPLAIN, "## Summary\n", table]
    tables = {"Summary": (image_part, with_clean)}
    if meta.get("baselines"):
        lines += _write_compare(out, rows, meta, result)
    for p, title in plots:
        if p == "model_attacks.png":
            lines += ["## Model-level attacks\n", _EXPLAIN_MODEL, model_table]
            tables["Model-level attacks"] = (model_part, False)
        lines += [f"## {title}\n", f"![{title}]({p})\n"]
    if any(r["attack"] in PAPER_POINTS for r in summary):
        lines.append(f"Stars: {PAPER_LABEL}; approximate values, another data set and model, for orientation only.\n")
    lines.append("Per-image rows: `results.jsonl`; all summary columns: `summary.csv`.\n")
    md = "\n".join(lines)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", _html(md, out, plots, tables))
    atomic_write_json(out / "eval.json", result)
    return result


_EXPLAIN_COMPARE = ("The same images (`clean`, the originals) watermarked by each method of `invisible-watermark` "
                    "with a 32-bit message, the same attacks with the same randomness, scored like ganprint's rows. "
                    "TPR@1e-6 is the analytic rate for each method's own length (32 bits for the baselines).\n")


def _write_compare(out: Path, rows: list[dict], meta: dict, result: dict) -> list[str]:
    """compare.csv / compare.md beside the summary, listed in `result`; returns the report's section."""
    side = compare_methods(rows, meta)
    table = compare_table(side, meta["baselines"])
    _write_csv(out / "compare.csv", side, ("method", *SUMMARY_COLUMNS))
    atomic_write_text(out / "compare.md", table)
    result["files"][3:3] = ["compare.csv", "compare.md"]
    result["compare"] = side
    return ["## Side by side with invisible-watermark\n", _EXPLAIN_COMPARE, table]


def compare_methods(rows: list[dict], meta: dict) -> list[dict]:
    """One row per (method, image attack setting): ganprint first, then each baseline of `meta["baselines"]`."""
    fpr, out = meta["fpr"], []
    lengths = {"ganprint": meta["fingerprint_length"], **{m: meta["baseline_bits"] for m in meta["baselines"]}}
    for method, k in lengths.items():
        part = [r for r in rows if r.get("method", "ganprint") == method and not is_model_attack(r["attack"])]
        out += [{"method": method, **r} for r in summarize(part, fpr, k, meta.get("n_keys", 1) if
                                                             method == "ganprint" else 1)]
    return out


def compare_table(side: list[dict], psnr: dict) -> str:
    """Bit accuracy and TPR at FPR 1e-6 per attack setting (rows) and method (columns), PSNR under the names."""
    methods = list(dict.fromkeys(r["method"] for r in side))
    specs = list(dict.fromkeys(r["spec"] for r in side))
    cell = {(r["method"], r["spec"]): r for r in side}
    head = ["attack"] + [f"{m} bit acc / TPR@1e-6" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if psnr:
        lines.append("| PSNR (dB) | " + " | ".join("see embed" if m == "ganprint" else f"{psnr[m]:.2f}"
                                                  for m in methods) + " |")
    for spec in specs:
        vals = [f"{cell[m, spec]['mean_bit_accuracy']:.3f} / {cell[m, spec]['tpr_analytic_1e-6']:.2f}"
                if (m, spec) in cell else "–" for m in methods]
        lines.append(f"| {spec} | " + " | ".join(vals) + " |")
    clean = [f"{m}: {100 * cell[m, 'none']['clean_detected']:.1f} %" for m in methods
             if (m, "none") in cell and cell[m, "none"]["clean_detected"] is not None]
    if clean:
        lines.append("\nClean images detected (no attack): " + ", ".join(clean) + ".")
    return "\n".join(lines) + "\n"


def _seeds_text(seeds) -> str:
    """The seeds as given ('0-99'), or a list shortened to its ends."""
    if isinstance(seeds, str):
        return seeds
    seeds = list(seeds or [])
    return ",".join(map(str, seeds)) if len(seeds) <= 8 else f"{seeds[0]},{seeds[1]},…,{seeds[-1]}"


def _html(md: str, out: Path, plots, tables: dict) -> str:
    """A self-contained HTML page: the same text, the table as HTML, the plots embedded as base64 PNG."""
    body = []
    for block in md.split("\n\n"):
        b = block.strip()
        if not b or b.startswith("|") or b.startswith("!["):
            continue
        if b.startswith("# "):
            body.append(f"<h1>{html.escape(b[2:])}</h1>")
        elif b.startswith("## "):
            title = b[3:]
            body.append(f"<h2>{html.escape(title)}</h2>")
            if title in tables:
                body.append(_html_table(*tables[title]))
            for p, t in plots:
                if t == title:
                    data = base64.b64encode((out / p).read_bytes()).decode()
                    body.append(f'<img alt="{html.escape(t)}" src="data:image/png;base64,{data}">')
        elif b.startswith("- "):
            items = "".join(f"<li>{_inline(x[2:])}</li>" for x in b.splitlines())
            body.append(f"<ul>{items}</ul>")
        else:
            body.append(f"<p>{_inline(b)}</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
             "text-align:right}th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ganprint evaluation</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"\*(.+?)\*", r"<i>\1</i>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _html_table(summary, with_clean) -> str:
    md = markdown_table(summary, with_clean).splitlines()
    head = [c.strip() for c in md[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md[2:]]
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
