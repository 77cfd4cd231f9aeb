"""Artificial fingerprints on the command line: `ganprint train` (the stega model), `embed`, `detect`,
`import-agf` (an original checkpoint) and `export` (a decoder-only or ONNX copy)."""

from __future__ import annotations

import logging

import click

from ganprint.artificial.agf_import import export_part, import_agf
from ganprint.artificial.config import PRESETS, resolve_config
from ganprint.artificial.detect import DetectSpec, detect
from ganprint.artificial.embed import EmbedSpec
from ganprint.artificial.train import train_stega
from ganprint.cli import params as P
from ganprint.cli.provenance import signing_options
from ganprint.core.threat import P_VALUE_COVERS
from ganprint.nets.onnx import export_onnx
from ganprint.provenance.c2pa import C2paSigning, embed_and_sign
from ganprint.training.config import config_json

log = logging.getLogger(__name__)

_COMMON = [
    click.option("--model", required=True, type=click.Path(dir_okay=False),
                 help="A stega model export (.safetensors) from `ganprint train`."),
    click.option("--data", required=True, type=click.Path(exists=True),
                 help="A folder of images (searched recursively; png, jpg, jpeg, webp, bmp, tif) or one image."),
    click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where the results go."),
    click.option("--resolution", type=P.RESOLUTION, default=None,
                 help="Image side; defaults to the model's (a different value is an error)."),
    click.option("--celeba", is_flag=True,
                 help="The original CelebA preprocessing: centre crop 148, resize to 128 (128-px models only)."),
    click.option("--batch-size", default=64, show_default=True, type=P.BATCH),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    click.option("--skip-bad", is_flag=True,
                 help="Skip unreadable image files (listed at the end) instead of stopping at the first."),
    click.option("--precision", type=P.Precision("auto", "fp32", "bf16"), default="auto", show_default=True,
                 help="Network arithmetic. auto = bf16 where the hardware computes it natively (CPUs with "
                      "AVX512-BF16/AMX, recent GPUs), about 2x faster; fp32 = the original's arithmetic."),
    click.option("--workers", type=P.WORKERS, default=None,
                 help="DataLoader worker processes for image decoding [default: 0, which keeps memory flat]."),
    click.option("--jobs", default="auto", show_default=True, type=P.Jobs(),
                 help="CPU processes that split the images (one torch thread each). auto = one per core for "
                      "models of at most 64 px with at least 500 images per process, else 1. GPUs: use torchrun."),
]


def _common(f):
    for opt in reversed(_COMMON):
        f = opt(f)
    return f


@click.command("embed")
@_common
@click.option("--identical", is_flag=True,
              help="One fingerprint for all images (fingerprinting a data set, hence the GAN trained on it).")
@click.option("--fingerprint", default=None,
              help="With --identical: the fingerprint as a 0/1 string or hex (0x...); default: drawn from --seed.")
@click.option("--seed", default=42, show_default=True, type=P.SEED,
              help="Seed of the fingerprints (the original's default, 42).")
@click.option("--check", is_flag=True, help="Decode the written PNGs and report their bit accuracy.")
@click.option("--keep-size", is_flag=True,
              help="Write each image at its own size (any size up to 16384 px a side): the fingerprint is made at the "
                   "model's resolution and upsampled onto the image's centre square, the margins left as they were. "
                   "Without it, images are centre-cropped and resized to the model's resolution (training sets).")
@click.option("--strength", type=P.STRENGTH, default=1.0, show_default=True,
              help="Scale of the fingerprint residual: below 1 for a higher PSNR, above 1 for more robustness.")
@click.option("--tiles", type=P.TILES, default=1, show_default=True,
              help="With --keep-size: fingerprint the centre square as N x N tiles with the same bits; detect with the "
                   "same --tiles, which averages the tiles and so reads the fingerprint at a much higher PSNR "
                   "(4 is the robust setting for photos).")
@click.option("--target-psnr", type=P.PSNR, default=None,
              help="With --keep-size: each image's --strength chosen so that its PSNR (at its own size) is this, "
                   "in dB (e.g. 38 or 40 for photos to publish).")
@click.option("--output-format", type=click.Choice(["png", "same"]), default="png", show_default=True,
              help="png: lossless RGB PNGs. same (with --keep-size): each photo in its own format (JPEG and WebP at "
                   "quality 95, PNG; others as PNG) and greyscale photos kept greyscale.")
@click.option("--registry", default=None,
              help="With --identical and --name: record the data set's fingerprint in this registry (a SQLite path or "
                   "postgresql:// URL), so that `ganprint serve` detects it.")
@click.option("--name", default=None, help="The data set's name in --registry.")
@signing_options("With --registry, --name, --c2pa-cert and --c2pa-key", "fingerprinted image", "the fingerprint")
def embed_cmd(registry, name, c2pa_outdir, c2pa_cert, c2pa_key, **flags):
    """Embed fingerprints into every image under --data.

    Writes OUTDIR/fingerprinted_images/ (PNG, relative paths kept), OUTDIR/embedded_fingerprints.txt
    (`<name>.png <bits>`, the original's format; a name holding a newline or another control character is
    written as a JSON string, "a\\nb.png") and OUTDIR/manifest.json. Images are centre-cropped
    and resized to the model's resolution, or kept at their own size with --keep-size (photos to publish:
    `detect` reads both). Re-running the same command resumes; a different
    configuration needs a new --outdir. Under torchrun the files are split across processes.

    \b
    Examples:
      # photos of any size kept at their size, one fingerprint for all:
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical --keep-size
      # one fingerprint for a whole data set (then train any GAN on OUT/fingerprinted_images):
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical
      # a chosen fingerprint, given in hex:
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical --fingerprint 0x3fa2...
      # a different fingerprint per image, bad files skipped, 2 processes:
      torchrun --standalone --nproc_per_node 2 -m ganprint embed --model model.safetensors \\
          --data photos/ --outdir out/ --skip-bad
      # fingerprint a data set and register it, so that `ganprint serve --registry reg.sqlite` detects it:
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical \\
          --registry reg.sqlite --name photos-v1
      # ... and also write C2PA-signed copies whose soft binding is that fingerprint:
      ganprint embed --model model.safetensors --data photos/ --outdir out/ --identical \\
          --registry reg.sqlite --name photos-v1 --c2pa-outdir signed/ --c2pa-cert chain.pem --c2pa-key key.pem
    """

    # `ganprint.embed`'s own call, without importing the whole API (every other flag is a field of the spec)
    embed_and_sign(EmbedSpec(**flags), registry, name, C2paSigning.of(c2pa_outdir, c2pa_cert, c2pa_key))
    # The summary (counts, fingerprint, skipped files) is logged to stderr by the library.


@click.command("detect")
@_common
@click.option("--fingerprint", default=None, help="The reference fingerprint of all images (0/1 string or 0x hex).")
@click.option("--embedded", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Reference per image: an embedded_fingerprints.txt, matched by file name.")
@click.option("--fpr", default=1e-6, show_default=True, type=P.FPR,
              help="False-positive rate of the per-image decision (one-sided binomial test).")
@click.option("--scale-search", default=None,
              help="Read images that were cropped and resized back: decode at each candidate scale ('auto' = 1, "
                   "0.95, ..., 0.6, or e.g. 1,0.9,0.8; 'wide' = down to 0.5 and rotations up to 5 degrees undone) "
                   "and keep the most confident; p-values stay exact.")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Decode with PyTorch, or with ONNX Runtime on the CPU (the onnx extra; same bits).")
@click.option("--tiles", type=P.TILES, default=1, show_default=True,
              help="Read images embedded with --tiles N: the decoder's readings of the N x N tiles averaged.")
def detect_cmd(**flags):
    """Decode the fingerprint of every image under --data, and test it against a reference.

    Writes OUTDIR/detected_fingerprints.txt (the original's format), OUTDIR/detections.jsonl (one row per
    image: name, bits, and with a reference bit_accuracy, matches, p_value, log10_p, detected) and
    OUTDIR/summary.json. Images get the same preprocessing as in embed. An image counts as detected when
    its matching bits reach the binomial threshold for --fpr.

    \b
    Examples:
      # did these images come from the fingerprinted data set (or a GAN trained on it)?
      ganprint detect --model model.safetensors --data samples/ --outdir det/ --fingerprint 0110...
      # per-image check after `ganprint embed`:
      ganprint detect --model model.safetensors --data out/fingerprinted_images --outdir det/ \\
          --embedded out/embedded_fingerprints.txt
      # just decode the bits:
      ganprint detect --model model.safetensors --data samples/ --outdir det/
    """

    detect(DetectSpec(**flags))
    # The summary (images, mean bit accuracy, share detected, skipped files) is logged to stderr by the library;
    # with a reference there is a decision, so say beside it what its p-values cover.
    if flags["fingerprint"] is not None or flags["embedded"] is not None:
        click.echo(f"p-values cover {P_VALUE_COVERS}", err=True)


@click.command("train")
@click.option("--data", type=str, default=None, help="Folder of training images (e.g. from `ganprint data samples`).")
@click.option("--outdir", type=click.Path(file_okay=False), required=True,
              help="Run folder; re-running the same command resumes from its newest training state.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Start from a run's config.json (or a --dry-run's output) instead of a preset; flags override it.")
@click.option("--preset", type=str, default=None,
              help=f"Named settings ({', '.join(PRESETS)}); the flags below override it when given.")
@click.option("--resolution", type=P.RESOLUTION, default=None, help="Image side in pixels, a power of two >= 16.")
@click.option("--celeba", is_flag=True, default=None, help="Original CelebA preprocessing (crop 148, resize 128).")
@click.option("--fingerprint-length", type=P.BITS, default=None, help="Bits per fingerprint [default 100].")
@click.option("--batch-size", type=P.BATCH, default=None, help="Images per step over all processes [default 64].")
@click.option("--epochs", type=P.STEPS, default=None, help="Passes over the data [default 20].")
@click.option("--steps", type=P.STEPS, default=None, help="Total steps (overrides --epochs).")
@click.option("--lr", type=P.LR, default=None, help="Adam learning rate [default 1e-4].")
@click.option("--lr-warmup", type=P.STEPS0, default=None, help="Steps of linear lr warm-up [0].")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default=None,
              help="constant (the original) or cosine annealing of each phase to --lr-min-ratio x lr.")
@click.option("--lr-min-ratio", type=P.FRACTION, default=None, help="cosine: final lr as a fraction of --lr [0.05].")
@click.option("--l2-schedule", type=click.Choice(["gated", "psnr"]), default=None,
              help="Image-loss weight: the original accuracy-gated ramp, or gated then steered to --target-psnr.")
@click.option("--l2-threshold", type=P.FRACTION, default=None, help="Batch bit accuracy that switches L2 on [0.9].")
@click.option("--l2-await", type=P.STEPS0, default=None, help="Steps from the switch to the ramp [1000].")
@click.option("--l2-ramp", type=P.STEPS0, default=None, help="Ramp length in steps [3000].")
@click.option("--l2-weight", type=P.WEIGHT, default=None, help="Final L2 weight (gated) / starting weight (psnr) [10].")
@click.option("--target-psnr", type=P.PSNR, default=None, help="PSNR in dB held by --l2-schedule psnr [33].")
@click.option("--psnr-acc-floor", type=P.FRACTION, default=None,
              help="psnr schedule: batch bit accuracy under which the L2 weight falls [0.98].")
@click.option("--psnr-rate", type=P.RATE, default=None, help="psnr schedule: controller gain per dB and step [0.002].")
@click.option("--bce-weight", type=P.WEIGHT_POS, default=None, help="Bit-loss weight [1].")
@click.option("--init", type=click.Choice(["torch", "he"]), default=None, help="Weight initialisation.")
@click.option("--identity-warmup", type=P.STEPS0, default=None, help="Steps of encoder-only identity warm start.")
@click.option("--decoder-polish", type=P.STEPS0, default=None,
              help="Final steps training the decoder alone on 8-bit-rounded outputs (demo-32: 400).")
@click.option("--amp/--no-amp", default=None, help="Mixed precision (bf16 autocast on CPU, bf16/fp16 on CUDA).")
@click.option("--augment", "augment", type=str, default=None,
              help="Immunized training: perturbations before the decoder, e.g. 'default' or 'jpegd:40,noise:0.08'; "
                   "ops: jpeg, jpegd (real JPEG with a differentiable-JPEG gradient), blur, noise, crop, resize, "
                   "color (ganprint.perturb.augment).")
@click.option("--augment-skew", type=P.SKEW, default=None,
              help="Augmentation strength U(0,1)**(1/skew); > 1 trains more near the maxima [1; robust-32: 2].")
@click.option("--seed", type=P.SEED, default=None, help="Random seed [0].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to train [auto].")
@click.option("--workers", type=P.WORKERS, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--snapshot-every", type=P.STEPS0, default=500, show_default=True, help="Steps between snapshots (0=end).")
@click.option("--checkpoint-every", type=P.STEPS0, default=1000, show_default=True,
              help="Steps between training states and export-<step>.safetensors (0=end only).")
@click.option("--checkpoint-minutes", type=P.MINUTES, default=5.0, show_default=True,
              help="Also keep a training state when this many minutes have passed since the last (0 = by steps only).")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train_cmd(outdir, preset, workers, snapshot_every, checkpoint_every, checkpoint_minutes, dry_run, **flags):
    """Train the fingerprint encoder/decoder on a folder of images.

    \b
    Examples:
      ganprint train --data data/ --preset demo-32 --outdir runs/fp32
      ganprint train --data celeba/ --celeba --resolution 128 --outdir runs/celeba --preset agf-original
      torchrun --nproc_per_node 2 -m ganprint.cli train --data data/ --resolution 32 --outdir runs/ddp

    Writes OUTDIR/config.json, log.txt, stats.jsonl, snapshots/<step>.png, training-state-<step>.pt,
    export-<step>.safetensors, and at the end model.safetensors (encoder+decoder) and model-decoder.safetensors
    (for verifiers).
    """

    cfg = resolve_config(preset, **flags)
    if dry_run:
        click.echo(config_json(cfg))
        return
    final = train_stega(cfg, outdir, workers=workers, snapshot_every=snapshot_every,
                        checkpoint_every=checkpoint_every, checkpoint_minutes=checkpoint_minutes)
    log.info("model: %s", final)


@click.command("import-agf")
@click.option("--encoder", type=click.Path(dir_okay=False), default=None, help="Original *_encoder.pth.")
@click.option("--decoder", type=click.Path(dir_okay=False), default=None, help="Original *_decoder.pth.")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (never when it is an input).")
def import_agf_cmd(encoder, decoder, out, overwrite):
    """Convert original ArtificialGANFingerprints checkpoints into a ganprint export.

    \b
    Both files give a `stega` export; the decoder alone gives a `stega-decoder` export:
      ganprint import-agf --encoder E.pth --decoder D.pth model.safetensors
      ganprint import-agf --decoder D.pth decoder.safetensors
    """

    path = import_agf(encoder, decoder, out, overwrite=overwrite)
    log.info("wrote %s", path)


@click.command("export")
@click.option("--model", type=click.Path(dir_okay=False), required=True,
              help="A `stega` export (e.g. runs/fp32/model.safetensors); with --format onnx also a stega-decoder "
                   "or scalable-decoder export.")
@click.option("--part", type=click.Choice(["dec"]), default="dec", show_default=True,
              help="Which part to export: dec = decoder only (verifiers cannot embed with it).")
@click.option("--format", "fmt", type=click.Choice(["safetensors", "onnx"]), default="safetensors",
              show_default=True, help="onnx: the decoder as an ONNX graph for ONNX Runtime (uint8 [N, R, R, 3] "
                                      "in, logits out; needs the onnx extra).")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (never when it is the model).")
def export_cmd(model, part, fmt, out, overwrite):
    """Write one part of a trained model as its own export, e.g. a decoder-only file for verifiers.

    \b
    Examples:
      ganprint export --model runs/fp32/model.safetensors decoder.safetensors
      ganprint export --model runs/sc32/scalable-decoder.safetensors --format onnx decoder.onnx
    """
    if fmt == "onnx":

        log.info("wrote %s", export_onnx(model, out, overwrite=overwrite)["out"])
        return

    path = export_part(model, part, out, overwrite=overwrite)
    log.info("wrote %s", path)


COMMANDS = [embed_cmd, detect_cmd, train_cmd, import_agf_cmd, export_cmd]

