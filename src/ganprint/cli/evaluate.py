"""`ganprint evaluate` (robustness report) and `ganprint metrics ...` (thresholds, FID/KID, attack list)."""

from __future__ import annotations

import json

import click


@click.command("evaluate")
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="A stega model export (.safetensors), full or decoder-only.")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="The fingerprinted images (a folder, searched recursively, or a packed data set).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where the report goes.")
@click.option("--embedded", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Reference per image: an embedded_fingerprints.txt from `ganprint embed`, matched by name.")
@click.option("--fingerprint", default=None, help="One reference fingerprint for all images (0/1 string or 0x hex).")
@click.option("--attacks", "attacks", multiple=True, default=("standard",), show_default=True,
              help="Attack specs, repeatable: 'jpeg', 'jpeg:50', 'jpeg:q=30,50,70', 'blur:sigma=1', "
                   "'jpeg:50+noise:0.05' (a chain), or a suite: 'standard', 'all'. "
                   "See `ganprint metrics attacks`.")
@click.option("--fpr", default=1e-6, show_default=True, type=float,
              help="False-positive rate of the per-image decision (one-sided binomial test).")
@click.option("--keys", "n_keys", default=1, show_default=True, type=click.IntRange(min=1),
              help="Number of fingerprints in use (Bonferroni: the threshold is set at FPR/keys).")
@click.option("--clean", type=click.Path(exists=True), default=None,
              help="Clean (never fingerprinted) images: measured false-positive rate, empirical TPR and ROC.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images of each set.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random attacks (noise, random crop).")
@click.option("--celeba", is_flag=True, help="The original CelebA preprocessing (128-px models only).")
def evaluate_cmd(model, data, outdir, embedded, fingerprint, attacks, fpr, n_keys, clean, limit, batch_size, device,
                 seed, celeba):
    """Measure how well fingerprints survive image perturbations, and write a report.

    Every image under --data is perturbed by each attack setting (plus no attack), decoded and scored.
    Writes OUTDIR/results.jsonl (one row per image and setting), summary.csv / summary.md, bit_accuracy.png,
    roc.png (with --clean), report.md and report.html (self-contained), eval.json.

    \b
    Examples:
      ganprint evaluate --model model.safetensors --data out/fingerprinted_images \\
          --embedded out/embedded_fingerprints.txt --outdir eval/
      ganprint evaluate --model model.safetensors --data out/fingerprinted_images --fingerprint 0x3fa2... \\
          --clean photos/ --attacks all --attacks "jpeg:50+noise:0.05" --outdir eval/
    """
    from ..eval import run_evaluate

    res = run_evaluate(model, data, outdir, embedded=embedded, fingerprint=fingerprint, attacks=list(attacks),
                       fpr=fpr, clean=clean, batch_size=batch_size, device=device, seed=seed, celeba=celeba,
                       limit=limit, n_keys=n_keys)
    click.echo(f"report: {outdir}/report.html (bit accuracy without attack {res['bit_accuracy_no_attack']:.4f})")


@click.group("metrics")
def metrics_group():
    """Detection statistics, FID/KID, and the list of attacks."""


@metrics_group.command("threshold")
@click.option("--bits", "k", required=True, type=click.IntRange(min=1), help="Fingerprint length K.")
@click.option("--fpr", default=1e-6, show_default=True, type=float, help="Target false-positive rate.")
@click.option("--keys", "n_keys", default=1, show_default=True, type=click.IntRange(min=1),
              help="Number of fingerprints searched (Bonferroni: FPR/keys each).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def threshold_cmd(k, fpr, n_keys, as_json):
    """The number of matching bits an image needs to be called fingerprinted.

    \b
    Example:
      ganprint metrics threshold --bits 100 --fpr 1e-6 --keys 1000000     # -> 85 of 100
    """
    from ..errors import GanprintError
    from ..metrics.bits import p_value, match_threshold

    if not 0 < fpr < 1:
        raise GanprintError(f"--fpr must be in (0, 1), got {fpr}")
    m = match_threshold(k, fpr, n_keys)
    out = {"bits": k, "fpr": fpr, "keys": n_keys, "threshold": m, "bit_accuracy": m / k if m <= k else None,
           "p_value_at_threshold": p_value(m, k) if m <= k else None}
    if as_json:
        click.echo(json.dumps(out))
    elif m > k:
        click.echo(f"no threshold: even {k} of {k} matching bits has p = {p_value(k, k):.3g} > {fpr:g}/{n_keys}; "
                   f"use longer fingerprints")
    else:
        click.echo(f"{m} of {k} bits (bit accuracy >= {m / k:.2f}); a clean image passes with p = "
                   f"{out['p_value_at_threshold']:.3g} <= {fpr:g}" + (f"/{n_keys} keys" if n_keys > 1 else ""))


@metrics_group.command("pvalue")
@click.option("--bits", "k", required=True, type=click.IntRange(min=1), help="Fingerprint length K.")
@click.option("--matches", type=click.IntRange(min=0), default=None, help="Number of matching bits.")
@click.option("--bit-accuracy", "acc", type=click.FloatRange(0, 1), default=None,
              help="Or the bit accuracy (matches = round(accuracy * K), as the papers' tables).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pvalue_cmd(k, matches, acc, as_json):
    """The p-value of a number of matching bits (one-sided binomial test) and the channel capacity.

    \b
    Example:
      ganprint metrics pvalue --bits 100 --bit-accuracy 0.93     # p = 1.4e-20, as in the AGF table
    """
    from ..errors import GanprintError
    from ..metrics.bits import capacity, log10_p_value, p_value

    if (matches is None) == (acc is None):
        raise GanprintError("pass exactly one of --matches or --bit-accuracy")
    m = int(round(acc * k)) if acc is not None else matches
    if m > k:
        raise GanprintError(f"--matches {m} is larger than --bits {k}")
    out = {"bits": k, "matches": m, "bit_accuracy": m / k, "p_value": p_value(m, k),
           "log10_p": log10_p_value(m, k), "capacity_bits": capacity(k, m / k)}
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"{m} of {k} bits match: p = {out['p_value']:.3g} (log10 p = {out['log10_p']:.2f}); "
                   f"BSC capacity at this accuracy {out['capacity_bits']:.1f} bits")


@metrics_group.command("fid")
@click.argument("data_a", type=click.Path(exists=True))
@click.argument("data_b", type=click.Path(exists=True))
@click.option("--resolution", required=True, type=click.IntRange(min=8),
              help="Images are centre-cropped/resized to this side first (then to 299 for Inception).")
@click.option("--inception", type=click.Path(dir_okay=False), default=None,
              help="pt_inception-2015-12-05-6726825d.pth (default: $GANPRINT_INCEPTION). Never downloaded.")
@click.option("--kid/--no-kid", default=True, show_default=True, help="Also compute KID.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache [default: $GANPRINT_CACHE/fid or ~/.cache/ganprint/fid].")
@click.option("--batch-size", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True)
@click.option("--allow-unverified", is_flag=True,
              help="Accept Inception weights whose SHA-256 differs (results are then not standard FIDs).")
@click.option("--out", "out_json", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
def fid_cmd(data_a, data_b, resolution, inception, kid, cache_dir, batch_size, device, allow_unverified, out_json):
    """FID (and KID) between two image folders or packed data sets.

    \b
    Example:
      ganprint metrics fid real/ fingerprinted/ --resolution 128 --inception ~/pt_inception-2015-12-05-6726825d.pth
    """
    from ..metrics.fid import compute_fid_kid
    from ..utils import atomic_write_json

    res = compute_fid_kid(data_a, data_b, resolution, inception=inception, kid=kid, cache_dir=cache_dir,
                          batch_size=batch_size, device=device, allow_unverified=allow_unverified)
    if out_json:
        atomic_write_json(out_json, res)
    click.echo(json.dumps(res, indent=2))


@metrics_group.command("attacks")
def attacks_cmd():
    """List the image attacks, their parameter, default sweep and neutral strength."""
    from ..attacks import ATTACKS, SUITES

    click.echo(f"{'name':<11} {'parameter=default sweep':<32} {'neutral':<8} description")
    for a in ATTACKS.values():
        sweep = a.param + "=" + ",".join(f"{v:g}" for v in a.sweep)
        neutral = "-" if a.neutral is None else f"{a.neutral:g}"  # codecs: lossy at any quality
        aliases = f" (also: {', '.join(a.aliases)})" if a.aliases else ""
        click.echo(f"{a.name:<11} {sweep:<32} {neutral:<8} {a.description}{aliases}")
    for n, members in SUITES.items():
        click.echo(f"suite {n}: {' '.join(members)}")


COMMANDS = [evaluate_cmd, metrics_group]
