"""ganprint in the wild, beside invisible-watermark, at matched PSNR (RESULTS-wild.md).

For each image side R: photos of a source never used for training or tuning (Debian's opencv-doc sample photos)
cut into R x R crops; ganprint embeds one fingerprint at each photo's own size (`--keep-size`) at strength 1, then
`ganprint evaluate --keep-size --attacks wild --baselines imwatermark` attacks them and the three
invisible-watermark methods on the same originals. ganprint is then re-embedded at 35 dB and at each baseline's
measured PSNR (strength from the measured PSNR at strength 1, one correction step) and evaluated again; the crops are
also read with the scale search. With `--tiles N` (default 4) ganprint is also embedded as N x N tiles at 35 dB and
at each baseline's PSNR and read with `--tiles N --scale-search wide`. Every step is a `ganprint` command, printed
as it runs; finished steps (a complete embed, an eval.json) are kept, so a re-run only does what is missing.

    python benchmarks/experiments/wild/wild.py --model MODEL --work DIR [--sizes 256 512] [--counts 40 30]
        [--photos DIR] [--tiles 4] [--out benchmarks/experiments/wild/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
# Colour photographs of real scenes (the folder also holds charts, boards and greyscale pairs).
PHOTOS = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "building.jpg", "butterfly.jpg",
          "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "lena.jpg", "messi5.jpg", "orange.jpg",
          "squirrel_cls.jpg", "stuff.jpg", "HappyFish.jpg", "starry_night.jpg", "pca_test1.jpg", "left.jpg",
          "rubberwhale1.png", "ela_original.jpg", "licenseplate_motion.jpg")
FP = "0x5a17c3e9b2d40f86"
KEY_ROWS = ("none:0", "jpeg:90", "jpeg:75", "jpeg:50", "shrink:0.5", "shrink:0.25", "crop:0.75", "crop:0.5",
            "blur:1", "noise:0.02", "brightness:0.75", "brightness:1.25", "contrast:0.75", "contrast:1.25",
            "saturation:0.5", "saturation:1.5", "rotate:2", "rotate:5", "crop:0.9+shrink:0.5+jpeg:75",
            "shrink:0.7+sharpen:1+jpeg:80")


def g(*args: str) -> None:
    cmd = [sys.executable, "-m", "ganprint", *args]
    print("$ ganprint " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "GANPRINT_LOG": "WARNING"})


def photo_folder(work: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    folder = work / "opencv-photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        if (OPENCV / name).is_file() and not (folder / name).exists():
            os.symlink(OPENCV / name, folder / name)
    if not any(folder.iterdir()):
        raise SystemExit(f"no photos in {OPENCV}: apt-get install opencv-doc, or pass --photos")
    return folder


def embed(model: str, clean: Path, out: Path, strength: float, fp: str, tiles: int = 1) -> float:
    if not (out / "manifest.json").is_file() or json.loads((out / "manifest.json").read_text())["status"] != "complete":
        g("embed", "--model", model, "--data", str(clean), "--outdir", str(out), "--identical", "--fingerprint", fp,
          "--keep-size", "--strength", f"{strength:.4f}", "--jobs", "1",
          *(["--tiles", str(tiles)] if tiles > 1 else []))
    return json.loads((out / "manifest.json").read_text())["mean_psnr"]


def mean_ssim(clean: Path, out: Path) -> float:
    """Mean SSIM of the fingerprinted photos against their originals, at their own size."""
    import torch

    from ganprint.core.images import read_image
    from ganprint.evaluation.quality import ssim

    vals = []
    for p in sorted(clean.glob("*.png")):
        a, b = (torch.from_numpy(read_image(f)).permute(2, 0, 1)[None].float() / 255
                for f in (p, out / "fingerprinted_images" / p.name))
        vals.append(float(ssim(a, b)[0]))
    return sum(vals) / len(vals)


def evaluate(model: str, data: Path, clean: Path, out: Path, fp: str, *extra: str) -> dict:
    if not (out / "eval.json").is_file():
        g("evaluate", "--model", model, "--data", str(data / "fingerprinted_images"), "--fingerprint", fp,
          "--clean", str(clean), "--keep-size", "--outdir", str(out), *extra)
    return json.loads((out / "eval.json").read_text())


def at_psnr(model: str, clean: Path, work: Path, p1: float, target: float, fp: str,
            tiles: int = 1) -> tuple[float, float, Path]:
    """Embed at the strength whose PSNR is `target` (dB): from strength 1's PSNR, then one correction."""
    tag = f"emb-t{tiles}-s" if tiles > 1 else "emb-s"
    s = min(max(10 ** ((p1 - target) / 20), 0.01), 10.0)
    out = work / f"{tag}{s:.4f}"
    got = embed(model, clean, out, s, fp, tiles)
    if abs(got - target) > 0.25:
        s = min(max(s * 10 ** ((got - target) / 20), 0.01), 10.0)
        out = work / f"{tag}{s:.4f}"
        got = embed(model, clean, out, s, fp, tiles)
    return s, got, out


def one_size(args, res: int, count: int, photos: Path) -> dict:
    work = Path(args.work) / f"{res}px"
    clean = work / "clean"
    if not (clean / "sources.json").is_file():
        g("data", "samples", "--outdir", str(clean), "--count", str(count), "--resolution", str(res),
          "--photos", str(photos), "--seed", str(11 + res))
    fp = args.fingerprint
    p1 = embed(args.model, clean, work / "emb-s1.0000", 1.0, fp)
    base = evaluate(args.model, work / "emb-s1.0000", clean, work / "ev-s1", fp, "--attacks", "wild",
                    "--baselines", "imwatermark")
    runs = {"strength 1": {"strength": 1.0, "psnr": p1, "ssim": mean_ssim(clean, work / "emb-s1.0000"),
                           "summary": _rows(base["compare"], "ganprint")}}
    for name, target in [("35 dB", 35.0), *[(f"at {m}", v) for m, v in base["baselines"].items()]]:
        s, got, emb = at_psnr(args.model, clean, work, p1, target, fp)
        ev = evaluate(args.model, emb, clean, work / f"ev-s{s:.4f}", fp, "--attacks", "wild")
        runs[name] = {"strength": s, "psnr": got, "ssim": mean_ssim(clean, emb), "summary": _rows(ev["summary"])}
        if name == "35 dB":
            sc = evaluate(args.model, emb, clean, work / f"ev-s{s:.4f}-scales", fp, "--scale-search", "auto",
                          "--attacks", "crop:0.75,0.5 crop:0.9+shrink:0.5+jpeg:75")
            runs["35 dB, scale search"] = {"strength": s, "psnr": got, "summary": _rows(sc["summary"])}
    if args.tiles > 1:
        runs.update(tiled_runs(args, work, clean, base["baselines"]))
    methods = {m: {"psnr": v, "summary": _rows(base["compare"], m)} for m, v in base["baselines"].items()}
    return {"resolution": res, "images": count, "photos": str(photos), "ganprint": runs, "baselines": methods,
            "fingerprint_length": base["fingerprint_length"], "match_threshold": base["match_threshold"]}


def tiled_runs(args, work: Path, clean: Path, baseline_psnr: dict) -> dict:
    """ganprint with `--tiles` at 35 dB and at each baseline's PSNR, read with the wide search (every attack)."""
    n, fp, runs = args.tiles, args.fingerprint, {}
    p1 = embed(args.model, clean, work / f"emb-t{n}-s1.0000", 1.0, fp, n)
    done: dict[float, dict] = {}
    for name, target in [("35 dB", 35.0), *[(f"at {m}", v) for m, v in baseline_psnr.items()]]:
        near = next((t for t in done if abs(t - target) <= 0.1), None)
        if near is not None:  # dwtDct and dwtDctSvd land within 0.1 dB of each other: one run serves both
            runs[f"tiles {n}, {name}"] = done[near]
            continue
        s, got, emb = at_psnr(args.model, clean, work, p1, target, fp, n)
        ev = evaluate(args.model, emb, clean, work / f"ev-t{n}-s{s:.4f}", fp, "--attacks", "wild", "--tiles", str(n),
                      "--scale-search", "wide")
        runs[f"tiles {n}, {name}"] = done[target] = {"strength": s, "psnr": got, "ssim": mean_ssim(clean, emb),
                                                     "tiles": n, "summary": _rows(ev["summary"])}
    return runs


def _rows(summary: list[dict], method: str | None = None) -> dict:
    keep = ("mean_bit_accuracy", "detected", "tpr_analytic_1e-3", "tpr_analytic_1e-6", "clean_detected",
            "tpr_empirical_1e-3")
    return {r["spec"]: {k: r.get(k) for k in keep} for r in summary if method is None or r["method"] == method}


def table(result: dict) -> str:
    """Markdown: attack rows; ganprint at strength 1 and 35 dB (one reading), tiled at 35 dB, then each baseline
    beside tiled ganprint at that baseline's PSNR (the one-reading runs at those PSNRs are in the JSON)."""
    g_runs, b = result["ganprint"], result["baselines"]
    t = next((r["tiles"] for r in g_runs.values() if "tiles" in r), None)
    cols = [("ganprint strength 1", g_runs["strength 1"]), ("ganprint 35 dB", g_runs["35 dB"])]
    if t is not None:
        cols.append((f"ganprint tiles {t}, 35 dB", g_runs[f"tiles {t}, 35 dB"]))
    for m in b:
        key = f"tiles {t}, at {m}" if t is not None else f"at {m}"
        cols += [(f"ganprint{' tiles ' + str(t) if t else ''} @ {m} PSNR", g_runs[key]), (m, b[m])]
    head = "| attack | " + " | ".join(f"{n} ({c['psnr']:.1f} dB" + (f", SSIM {c['ssim']:.3f})" if "ssim" in c else ")")
                                      for n, c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for spec in KEY_ROWS:
        cells = []
        for _, c in cols:
            r = c["summary"].get(spec)
            cells.append("–" if r is None else f"{r['mean_bit_accuracy']:.3f} / {r['tpr_analytic_1e-6']:.2f}")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    clean = [f"{n}: {100 * c['summary']['none:0']['clean_detected']:.1f} %" for n, c in cols
             if c["summary"].get("none:0", {}).get("clean_detected") is not None]
    sc = g_runs.get("35 dB, scale search", {}).get("summary", {})
    extra = [f"| {k} with scale search | {v['mean_bit_accuracy']:.3f} / {v['tpr_analytic_1e-6']:.2f} |"
             for k, v in sc.items() if k != "none:0"]
    return "\n".join(lines + ["", "Clean photos detected (no attack): " + ", ".join(clean) + ".", "",
                              "| ganprint 35 dB, one reading | bit acc / TPR@1e-6 |", "|---|---|", *extra]) + "\n"


def plot(results: list[dict], path: Path) -> None:
    """Bit accuracy against PSNR: ganprint's strengths as curves (one reading; tiles), each baseline as a point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    specs = ("jpeg:50", "crop:0.9+shrink:0.5+jpeg:75", "shrink:0.7+sharpen:1+jpeg:80", "shrink:0.25")
    fig = Figure(figsize=(4 * len(specs), 3.4 * len(results)), dpi=100)
    FigureCanvasAgg(fig)
    for i, res in enumerate(results):
        one = sorted((r for n, r in res["ganprint"].items() if "scale" not in n and "tiles" not in r),
                     key=lambda r: r["psnr"])
        tiled = sorted((r for r in res["ganprint"].values() if "tiles" in r), key=lambda r: r["psnr"])
        for j, spec in enumerate(specs):
            ax = fig.add_subplot(len(results), len(specs), i * len(specs) + j + 1)
            for runs, label in ((one, "ganprint"), (tiled, "ganprint tiles, wide search")):
                if runs:
                    ax.plot([r["psnr"] for r in runs], [r["summary"][spec]["mean_bit_accuracy"] for r in runs], "o-",
                            label=label)
            for m, b in res["baselines"].items():
                ax.plot([b["psnr"]], [b["summary"][spec]["mean_bit_accuracy"]], "s", label=m)
            ax.set_title(f"{res['resolution']} px: {spec}", fontsize=9)
            ax.set_xlabel("PSNR (dB)")
            ax.set_ylabel("bit accuracy")
            ax.set_ylim(0.4, 1.02)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--counts", type=int, nargs="+", default=[40, 30])
    ap.add_argument("--photos", default=None)
    ap.add_argument("--fingerprint", default=FP, help="the one fingerprint embedded (the model's length)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tables-only", action="store_true", help="rewrite the tables and plot from the JSON files")
    ap.add_argument("--tiles", type=int, default=4, help="also embed as N x N tiles and read them with the wide "
                    "search (1: not)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.tables_only:
        results = [json.loads((out / f"wild-{res}.json").read_text()) for res in args.sizes]
        for r in results:
            (out / f"wild-{r['resolution']}.md").write_text(table(r))
        plot(results, out / "wild-psnr.png")
        return
    if len(args.counts) != len(args.sizes):
        raise SystemExit("--counts needs one count per --sizes entry")
    photos = photo_folder(Path(args.work), args.photos)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for res, n in zip(args.sizes, args.counts):
        r = one_size(args, res, n, photos)
        results.append(r)
        (out / f"wild-{res}.json").write_text(json.dumps(r, indent=1, allow_nan=True) + "\n")
        (out / f"wild-{res}.md").write_text(table(r))
        print(table(r), flush=True)
    plot(results, out / "wild-psnr.png")
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
