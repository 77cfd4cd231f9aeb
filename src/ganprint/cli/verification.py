"""`ganprint check`: images in, one row per image on stdout, the decision in the exit status."""

from __future__ import annotations

import json
import sys

import click

from ganprint.cli import params as P
from ganprint.verification.detector import Detector, DetectorOptions, check_files

DETECTED, NOT_DETECTED, ERROR = 0, 1, 2  # exit statuses


@click.command("check")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="A decoder export: .safetensors (stega, stega-decoder, scalable-decoder) or an .onnx graph from "
                   "`ganprint export --format onnx` (read by ONNX Runtime without PyTorch).")
@click.option("--fingerprint", default=None,
              help="The fingerprint every image is tested against (0/1 string or 0x hex).")
@click.option("--registry", default=None,
              help="Attribute to the issued fingerprints of this registry instead (a SQLite path or postgresql:// "
                   "URL; scalable-decoder models, or the stega-decoder of latent issued decoders).")
@click.option("--fpr", default=1e-6, show_default=True, type=P.FPR,
              help="False-positive rate of the per-image decision (with --registry, for all issued fingerprints).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image (JSON Lines).")
@click.option("--runtime", type=click.Choice(["auto", "torch", "onnx"]), default="auto", show_default=True,
              help="auto = ONNX Runtime for an .onnx model, PyTorch for a .safetensors one.")
@click.option("--device", default="cpu", show_default=True, help="PyTorch only: cpu, cuda, cuda:N or auto.")
@click.option("--precision", type=P.Precision("auto", "fp32", "bf16"), default="auto", show_default=True,
              help="PyTorch only, as in `ganprint detect`.")
@click.option("--batch-size", default=64, show_default=True, type=P.BATCH, help="Images decoded at a time.")
@click.option("--tiles", type=P.TILES, default=1, show_default=True,
              help="Read photos embedded with `ganprint embed --keep-size --tiles N`: the decoder's readings of the "
                   "N x N tiles averaged, as `ganprint detect --tiles N` reads them (one reading per image: exact "
                   "p-values).")
def check_cmd(images, model, fingerprint, registry, fpr, as_json, runtime, device, precision, batch_size, tiles):
    """Check images for a fingerprint: one line per image on stdout, the decision in the exit status.

    IMAGES are image files of any size (png, jpg, webp, ...), or - for one image on standard input. Each is
    centre-cropped and resized to the model's resolution, as in `ganprint detect`, and tested against
    --fingerprint (detection) or attributed against --registry. Nothing is written: the rows go to stdout, one
    line per image, in order (with --json one JSON object per line, the fields of `ganprint detect`'s
    detections.jsonl or of `ganprint attribute`'s rows, with "image" first).

    \b
    Exit status:
      0  every image is detected (or attributed to an issued fingerprint)
      1  at least one image is not
      2  an error: a bad flag, an unreadable model, registry or image (after the rows before it)

    \b
    Examples:
      ganprint check photo.png --model decoder.onnx --fingerprint 0x3fa2... --json
      curl -s https://example.org/a.jpg | ganprint check - --model model.safetensors --fingerprint 0110...
      ganprint check a.png b.png --model scalable-decoder.safetensors --registry reg.sqlite
      # a photo that `ganprint embed --keep-size --tiles 2` fingerprinted as 2 x 2 tiles:
      ganprint check photo.jpg --model decoder.onnx --fingerprint 0x3fa2... --tiles 2
    """
    if fingerprint is None and registry is None:
        raise click.UsageError("give --fingerprint (detection) or --registry (attribution): check tests images "
                               "against one of them")
    options = DetectorOptions(runtime=runtime, fpr=fpr, device=device, precision=precision, batch_size=batch_size,
                              tiles=tiles)
    detector = Detector.from_file(model, fingerprint, registry, options=options)
    status = DETECTED
    for row in check_files(detector, list(images), sys.stdin.buffer):
        click.echo(json.dumps(row) if as_json else _line(row, detector))
        if not detector.decision(row):
            status = NOT_DETECTED
    sys.exit(status)


def _line(row: dict, detector: Detector) -> str:
    """One readable line: the image, the decision, the matching bits and the p-value."""
    k = detector.k
    if "attributed" in row:
        who = f" ({row['who']})" if row.get("who") else ""
        verdict = f"attributed to fingerprint {row['attributed']}{who}" if row["attributed"] != "unknown" else \
            f"unknown (nearest fingerprint {row['nearest_fp_id']})"
        return f"{row['image']}: {verdict}, {row['matches']}/{k} bits match, corrected p = " \
               f"{row['p_value_corrected']:.3g}"
    verdict = "detected" if row["detected"] else "not detected"
    return f"{row['image']}: {verdict}, {row['matches']}/{k} bits match, p = {row['p_value']:.3g}"


check_cmd.error_status = ERROR  # the group's error boundary exits with this status on a failure of `check`

COMMANDS = [check_cmd]
