"""CLI: `ganprint train` (fingerprint autoencoder), `ganprint import-agf`, `ganprint export`."""

from __future__ import annotations

import logging

import click

log = logging.getLogger(__name__)


@click.command("train")
@click.option("--data", type=str, default=None, help="Folder of training images (e.g. from `ganprint data samples`).")
@click.option("--outdir", type=click.Path(file_okay=False), required=True,
              help="Run folder; re-running the same command resumes from its newest training state.")
@click.option("--preset", type=str, default=None,
              help="Named settings (default, demo-32, agf-original); the flags below override it when given.")
@click.option("--resolution", type=int, default=None, help="Image side in pixels, a power of two >= 16.")
@click.option("--celeba", is_flag=True, default=None, help="Original CelebA preprocessing (crop 148, resize 128).")
@click.option("--fingerprint-length", type=int, default=None, help="Bits per fingerprint [default 100].")
@click.option("--batch-size", type=int, default=None, help="Images per step over all processes [default 64].")
@click.option("--epochs", type=int, default=None, help="Passes over the data [default 20].")
@click.option("--steps", type=int, default=None, help="Total steps (overrides --epochs).")
@click.option("--lr", type=float, default=None, help="Adam learning rate [default 1e-4].")
@click.option("--lr-warmup", type=int, default=None, help="Steps of linear lr warm-up [0].")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default=None,
              help="constant (the original) or cosine annealing of each phase to --lr-min-ratio x lr.")
@click.option("--lr-min-ratio", type=float, default=None, help="cosine: final lr as a fraction of --lr [0.05].")
@click.option("--l2-schedule", type=click.Choice(["gated", "psnr"]), default=None,
              help="Image-loss weight: the original accuracy-gated ramp, or gated then steered to --target-psnr.")
@click.option("--l2-threshold", type=float, default=None, help="Batch bit accuracy that switches L2 on [0.9].")
@click.option("--l2-await", type=int, default=None, help="Steps from the switch to the ramp [1000].")
@click.option("--l2-ramp", type=int, default=None, help="Ramp length in steps [3000].")
@click.option("--l2-weight", type=float, default=None, help="Final L2 weight (gated) / starting weight (psnr) [10].")
@click.option("--target-psnr", type=float, default=None, help="PSNR in dB held by --l2-schedule psnr [33].")
@click.option("--psnr-acc-floor", type=float, default=None,
              help="psnr schedule: batch bit accuracy under which the L2 weight falls [0.98].")
@click.option("--psnr-rate", type=float, default=None, help="psnr schedule: controller gain per dB and step [0.002].")
@click.option("--bce-weight", type=float, default=None, help="Bit-loss weight [1].")
@click.option("--init", "init_", type=click.Choice(["torch", "he"]), default=None, help="Weight initialisation.")
@click.option("--identity-warmup", type=int, default=None, help="Steps of encoder-only identity warm start.")
@click.option("--decoder-polish", type=int, default=None,
              help="Final steps training the decoder alone on 8-bit-rounded outputs (demo-32: 400).")
@click.option("--amp/--no-amp", default=None, help="Mixed precision (bf16 autocast on CPU, bf16/fp16 on CUDA).")
@click.option("--augment", "augment", type=str, default=None,
              help="Immunized training: perturbations before the decoder, e.g. 'default' or 'jpegd:40,noise:0.08'; "
                   "ops: jpeg, jpegd (real JPEG with a differentiable-JPEG gradient), blur, noise, crop, resize, "
                   "color (ganprint.augment).")
@click.option("--augment-skew", type=float, default=None,
              help="Augmentation strength U(0,1)**(1/skew); > 1 trains more near the maxima [1; robust-32: 2].")
@click.option("--seed", type=int, default=None, help="Random seed [0].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Where to train [auto].")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--snapshot-every", type=int, default=500, show_default=True, help="Steps between snapshots (0=end).")
@click.option("--checkpoint-every", type=int, default=1000, show_default=True,
              help="Steps between training states and export-<step>.safetensors (0=end only).")
@click.option("--checkpoint-minutes", type=float, default=5.0, show_default=True,
              help="Also keep a training state when this many minutes have passed since the last (0 = by steps only).")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train_cmd(outdir, preset, init_, workers, snapshot_every, checkpoint_every, checkpoint_minutes, dry_run, **flags):
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
    from ganprint.artificial.config import resolve_config
    from ganprint.artificial.train import train_stega
    from ganprint.training.config import config_json

    cfg = resolve_config(preset, init=init_, **flags)
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
def import_agf_cmd(encoder, decoder, out):
    """Convert original ArtificialGANFingerprints checkpoints into a ganprint export.

    \b
    Both files give a `stega` export; the decoder alone gives a `stega-decoder` export:
      ganprint import-agf --encoder E.pth --decoder D.pth model.safetensors
      ganprint import-agf --decoder D.pth decoder.safetensors
    """
    from ganprint.artificial.agf_import import import_agf

    path = import_agf(encoder, decoder, out)
    log.info("wrote %s", path)


@click.command("export")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), required=True,
              help="A `stega` export (e.g. OUTDIR/model.safetensors); with --format onnx also a stega-decoder "
                   "or scalable-decoder export.")
@click.option("--part", type=click.Choice(["dec"]), default="dec", show_default=True,
              help="Which part to export: dec = decoder only (verifiers cannot embed with it).")
@click.option("--format", "fmt", type=click.Choice(["safetensors", "onnx"]), default="safetensors",
              show_default=True, help="onnx: the decoder as an ONNX graph for ONNX Runtime (uint8 [N, R, R, 3] "
                                      "in, logits out; needs the onnx extra).")
@click.argument("out", type=click.Path(dir_okay=False))
def export_cmd(model_path, part, fmt, out):
    """Write one part of a trained model as its own export, e.g. a decoder-only file for verifiers.

    \b
    Examples:
      ganprint export --model runs/fp32/model.safetensors decoder.safetensors
      ganprint export --model runs/sc32/scalable-decoder.safetensors --format onnx decoder.onnx
    """
    if fmt == "onnx":
        from ganprint.nets.onnx import export_onnx

        log.info("wrote %s", export_onnx(model_path, out)["out"])
        return
    from ganprint.artificial.agf_import import export_part

    path = export_part(model_path, part, out)
    log.info("wrote %s", path)


COMMANDS = [train_cmd, import_agf_cmd, export_cmd]
