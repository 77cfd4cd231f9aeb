"""`ganprint evaluate` (robustness report) and `ganprint metrics ...` (thresholds, FID/KID, attack list).

Each command imports its library module when it runs, so `ganprint --help` does not load torch.
"""

from __future__ import annotations

import json

import click

from ganprint.cli import params as P
from ganprint.evaluation.adversary import AdversarySpec, run_adversary
from ganprint.evaluation.evaluate import EvaluateSpec, run_evaluate
from ganprint.evaluation.fid import FidSpec, compute_fid_kid
from ganprint.evaluation.metrics import describe_attacks, detection_threshold, match_p_value


@click.command("evaluate")
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="The decoder: a stega model export (.safetensors), full or decoder-only, or a scalable-decoder.")
@click.option("--data", default=None, type=click.Path(exists=True),
              help="The fingerprinted images (a folder, searched recursively, or a packed data set). "
                   "Exactly one of --data and --generator.")
@click.option("--generator", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Or a generator export (stylegan2-G, scalable-G, or an issued scalable-G-issued model) whose "
                   "images for --seeds are evaluated, without writing them.")
@click.option("--seeds", default=None, type=P.Seeds(), help="With --generator: the seeds, e.g. 0-99 or 0,5,7-9.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where the report goes.")
@click.option("--embedded", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Reference per image: an embedded_fingerprints.txt from `ganprint embed`, matched by name.")
@click.option("--fingerprint", default=None,
              help="One reference fingerprint for all images (0/1 string or 0x hex). With --generator: required for "
                   "a stylegan2-G; for a scalable-G it is also the fingerprint the images are generated with "
                   "(default: each seed's own); refused for an issued model (its own fingerprint is the reference).")
@click.option("--attacks", "attacks", multiple=True, default=("standard",), show_default=True,
              help="Attack specs, repeatable: 'jpeg', 'jpeg:50', 'jpeg:q=30,50,70', 'blur:sigma=1', "
                   "'jpeg:50+noise:0.05' (a chain), or a suite: 'standard', 'all'. "
                   "See `ganprint metrics attacks`.")
@click.option("--model-attacks", "model_attacks", multiple=True, default=None,
              help="With --generator: perturbations of its weights, repeatable: 'standard' (the default: quantize, "
                   "weight_noise, prune), 'all' (adds quantize_bits), 'none', or 'prune:0.5', "
                   "'quantize:decimals=2,1', 'weight_noise:std=0.01'. See `ganprint metrics attacks`.")
@click.option("--fpr", default=1e-6, show_default=True, type=P.FPR,
              help="False-positive rate of the per-image decision (one-sided binomial test).")
@click.option("--keys", default=1, show_default=True, type=P.KEYS,
              help="Number of fingerprints in use (Bonferroni: the threshold is set at FPR/keys).")
@click.option("--clean", type=click.Path(exists=True), default=None,
              help="Clean (never fingerprinted) images: measured false-positive rate, empirical TPR and ROC.")
@click.option("--limit", type=P.IMAGES, default=None, help="Use only the first N images of each set.")
@click.option("--batch-size", default=64, show_default=True, type=P.BATCH)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", default=0, show_default=True, type=P.SEED, help="Seed of the random attacks (noise, random crop).")
@click.option("--celeba", is_flag=True, help="The original CelebA preprocessing (128-px models only).")
@click.option("--scale-search", default=None,
              help="Undo unknown crops that were resized back: decode at each candidate scale ('auto' = 1, 0.95, "
                   "..., 0.6, or e.g. 1,0.9,0.8; 'wide' = down to 0.5 and rotations up to 5 degrees undone) and keep "
                   "the most confident; p-values stay exact.")
@click.option("--keep-size", is_flag=True,
              help="Attack every image of --data and --clean at its own size, then decode the decoder's view (centre "
                   "square resized to the model's side), as `detect` reads an image found in the wild.")
@click.option("--tiles", type=P.TILES, default=1, show_default=True,
              help="With --keep-size: read photos embedded with --tiles N, the N x N tiles' readings averaged.")
@click.option("--baselines", default=None,
              help="Run invisible-watermark beside ganprint (extra `baselines`): 'imwatermark' for dwtDct, dwtDctSvd "
                   "and rivaGan, or some of them, comma-separated. They watermark the --clean images (the originals; "
                   "needs --keep-size) and take the same attacks; compare.md is the side-by-side table.")
def evaluate_cmd(**flags):
    """Measure how well fingerprints survive image (and model) perturbations, and write a report.

    Every image under --data, or generated by --generator for --seeds, is perturbed by each attack setting (plus
    no attack), decoded and scored. With --generator, each --model-attacks setting perturbs a copy of the
    generator's weights, which then generates the same seeds (rows with attack 'model:<name>').
    Writes OUTDIR/results.jsonl (one row per image and setting), summary.csv / summary.md, bit_accuracy.png,
    model_attacks.png (with --generator), roc.png (with --clean), report.md and report.html (self-contained),
    eval.json.

    \b
    Examples:
      ganprint evaluate --model model.safetensors --data out/fingerprinted_images \\
          --embedded out/embedded_fingerprints.txt --outdir eval/
      ganprint evaluate --model model.safetensors --data out/fingerprinted_images --fingerprint 0x3fa2... \\
          --clean photos/ --attacks all --attacks "jpeg:50+noise:0.05" --outdir eval/
      ganprint evaluate --model runs/sc/scalable-decoder.safetensors --generator issued/issued-000001-*.safetensors \\
          --seeds 0-99 --attacks standard --model-attacks standard --outdir eval-gen/
    """

    flags["model_attacks"] = flags["model_attacks"] or None  # not given: the spec's default ("standard")
    spec = EvaluateSpec(**{**flags, "baselines": () if flags["baselines"] is None else flags["baselines"]})
    res = run_evaluate(spec)
    click.echo(f"report: {spec.outdir}/report.html (bit accuracy without attack {res['bit_accuracy_no_attack']:.4f})")


@click.command("adversary")
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="The decoder: a stega model export (.safetensors), full or decoder-only, or a scalable-decoder.")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Images fingerprinted with --fingerprint: what a forger collects, what a remover cleans.")
@click.option("--clean", required=True, type=click.Path(exists=True),
              help="Real photos never fingerprinted: the forger's canvases and the measured false-positive rate.")
@click.option("--fingerprint", required=True, help="The fingerprint of --data (0/1 string or 0x hex).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where the report goes.")
@click.option("--adversary", multiple=True, default=("standard",), show_default=True,
              help="Attack specs, repeatable: 'average:n=10,1000:psnr=35,42', 'invert:eps=2,4', "
                   "'remove:eps=1,4,8', 'query-remove:eps=4,8:samples=10' (ONNX Runtime outputs only), "
                   "'regenerate:t=50,200' (with --diffusion), or 'standard'.")
@click.option("--fpr", default=1e-6, show_default=True, type=P.FPR, help="False-positive rate of the decision.")
@click.option("--limit", type=P.IMAGES, default=None,
              help="Use only the first N clean photos and N fingerprinted images for PGD removal.")
@click.option("--defence", default=None,
              help="A second check measured beside the plain decision: 'agree:blur=1' (also 'resize=F', 'crop=F') or "
                   "'energy:min=C' (with --defence-reference); see docs/threat-model.md.")
@click.option("--defence-reference", default=None, type=click.Path(exists=True),
              help="With --defence energy:min=C: images the registry fingerprinted itself with --fingerprint.")
@click.option("--onnx", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The decoder's ONNX file (ganprint export --format onnx) that query-remove queries; "
                   "default: --model's decoder, exported at run time.")
@click.option("--diffusion", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A train-diffusion export at the decoder's resolution, for regenerate.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N.")
def adversary_cmd(**flags):
    """Forge and remove fingerprints as an adversary would, and measure how often the decision is fooled.

    Writes OUTDIR/results.jsonl, summary.csv, summary.md, adversary.png and adversary.json.

    \b
    Example:
      ganprint adversary --model model.safetensors --data out/fingerprinted_images --fingerprint 0x3fa2... \\
          --clean photos/ --adversary "average:n=10,1000:psnr=35,42" --outdir adv/
    """

    spec = AdversarySpec(**flags)  # the flags are the spec's fields
    res = run_adversary(spec)
    click.echo(f"report: {spec.outdir}/summary.md (clean false-positive rate "
               f"{res['clean_false_positive_rate']:.4f})")


@click.group("metrics")
def metrics_group():
    """Detection statistics, FID/KID, and the list of attacks."""


@metrics_group.command("threshold")
@click.option("--fingerprint-length", required=True, type=P.BITS, help="Fingerprint length K (bits).")
@click.option("--fpr", default=1e-6, show_default=True, type=P.FPR, help="Target false-positive rate.")
@click.option("--keys", default=1, show_default=True, type=P.KEYS,
              help="Number of fingerprints searched (Bonferroni: FPR/keys each).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def threshold_cmd(fingerprint_length, fpr, keys, as_json):
    """The number of matching bits an image needs to be called fingerprinted.

    \b
    Example:
      ganprint metrics threshold --fingerprint-length 100 --fpr 1e-6 --keys 1000000     # -> 85 of 100
    """

    res = detection_threshold(fingerprint_length, fpr, keys)
    click.echo(json.dumps(res.as_dict()) if as_json else str(res))


@metrics_group.command("pvalue")
@click.option("--fingerprint-length", required=True, type=P.BITS, help="Fingerprint length K (bits).")
@click.option("--matches", type=P.MATCHES, default=None, help="Number of matching bits.")
@click.option("--bit-accuracy", type=P.FRACTION, default=None,
              help="Or the bit accuracy (matches = round(accuracy * K), as the papers' tables).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pvalue_cmd(fingerprint_length, matches, bit_accuracy, as_json):
    """The p-value of a number of matching bits (one-sided binomial test) and the channel capacity.

    \b
    Example:
      ganprint metrics pvalue --fingerprint-length 100 --bit-accuracy 0.93     # p = 1.4e-20, as in the AGF table
    """

    res = match_p_value(fingerprint_length, matches, bit_accuracy)
    click.echo(json.dumps(res.as_dict()) if as_json else str(res))


@metrics_group.command("fid")
@click.argument("data_a", type=click.Path(exists=True))
@click.argument("data_b", type=click.Path(exists=True))
@click.option("--resolution", required=True, type=P.Int(8, 4096),
              help="Images are centre-cropped/resized to this side first (then to 299 for Inception).")
@click.option("--inception", type=click.Path(dir_okay=False), default=None,
              help="pt_inception-2015-12-05-6726825d.pth (default: $GANPRINT_INCEPTION). Never downloaded.")
@click.option("--kid/--no-kid", default=True, show_default=True, help="Also compute KID.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache [default: $GANPRINT_CACHE/fid or ~/.cache/ganprint/fid].")
@click.option("--batch-size", default=50, show_default=True, type=P.BATCH)
@click.option("--device", default="auto", show_default=True)
@click.option("--allow-unverified", is_flag=True,
              help="Accept Inception weights whose SHA-256 differs (results are then not standard FIDs).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the JSON here.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (never when it is an input).")
def fid_cmd(**flags):
    """FID (and KID) between two image folders or packed data sets.

    \b
    Example:
      ganprint metrics fid real/ fingerprinted/ --resolution 128 --inception ~/pt_inception-2015-12-05-6726825d.pth
    """

    res = compute_fid_kid(FidSpec(**flags))
    click.echo(json.dumps(res, indent=2))


@metrics_group.command("attacks")
def attacks_cmd():
    """List the image attacks and the model-level attacks, their parameter, default sweep and neutral strength.

    \b
    Use them with:
      ganprint evaluate ... --attacks 'jpeg:50+noise:0.05' --attacks standard
      ganprint evaluate ... --generator G.safetensors --seeds 0-63 --model-attacks 'prune:0.5'
    """
    click.echo(describe_attacks())
    click.echo("\nimage attacks: ganprint evaluate --attacks SPEC; model-level attacks: ganprint evaluate "
               "--generator G --model-attacks SPEC")


COMMANDS = [evaluate_cmd, adversary_cmd, metrics_group]
