"""`ganprint train-latent-fingerprint`: fine-tune a latent autoencoder's decoder to carry per-user fingerprints."""

from __future__ import annotations

import json

import click

from ganprint.cli import params as P
from ganprint.latent.fingerprint_config import PRESETS, resolve_config
from ganprint.latent.fingerprint_train import DECODER_EXPORT, MODEL_EXPORT, train_latent_fingerprint
from ganprint.latent.modulated import LAYER_CHOICES
from ganprint.training.config import config_json


@click.command("train-latent-fingerprint")
@click.option("--autoencoder", required=True, type=click.Path(),
              help="The trained autoencoder: a latent-autoencoder export or a diffusers AutoencoderKL "
                   "save_pretrained folder (or a pipeline folder with vae/). It is read, never changed.")
@click.option("--data", required=True, type=click.Path(), help="Image folder or packed data set at its resolution.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run directory (re-run to resume).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="[lfp-32] lfp-32: 2 CPU cores; lfp-64, lfp-256: longer, for GPUs; lfp-smoke: tests only.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Start from a run's config.json (or a --dry-run's output) instead of a preset; flags override it.")
@click.option("--fingerprint-length", type=P.BITS, default=None, help="K, bits per fingerprint [64].")
@click.option("--layers", type=click.Choice(LAYER_CHOICES), default=None,
              help="Decoder convolutions the fingerprint modulates: all, or up (up blocks and output conv) [all].")
@click.option("--demodulate/--no-demodulate", default=None, help="Rescale modulated weights to their norm [off].")
@click.option("--train-decoder/--no-train-decoder", default=None,
              help="Also fine-tune the decoder's own weights (at --decoder-lr) [off].")
@click.option("--kimg", type=P.KIMG_POS, default=None, help="Length: thousands of images decoded [preset].")
@click.option("--batch-size", type=P.BATCH, default=None, help="Total batch over all processes [preset].")
@click.option("--lr", type=P.LR, default=None, help="Adam learning rate of the fingerprint decoder [preset].")
@click.option("--mapping-lr", type=P.LR, default=None, help="Adam learning rate of the mapping and affine layers "
                                                             "[preset].")
@click.option("--decoder-lr", type=P.LR, default=None, help="Adam learning rate of the decoder weights [preset].")
@click.option("--img-weight", type=P.WEIGHT, default=None, help="Weight of MSE(x_c, x_0) against the original "
                                                                 "decoder's image [preset].")
@click.option("--img-gate-acc", type=P.GATE_ACC, default=None,
              help="The image terms wait until the running training bit accuracy reaches this [0.9] ...")
@click.option("--img-gate-kimg", type=P.KIMG, default=None, help="... or N kimg pass [preset].")
@click.option("--ssim-weight", type=P.WEIGHT, default=None, help="Weight of 1 - SSIM(x_c, x_0) [0].")
@click.option("--latent-noise", type=P.Float(0, 10), default=None,
              help="Std of Gaussian noise added to the training latents [0].")
@click.option("--augment", default=None,
              help="Perturbations the fingerprint decoder also reads (ganprint.perturb.augment ops, e.g. "
                   "'jpeg,resize,crop'; 'none' for none) [preset].")
@click.option("--snapshot-kimg", type=P.KIMG_POS, default=None,
              help="Both exports and a training state every N kimg [preset].")
@click.option("--seed", type=P.SEED, default=None, help="Random seed [0].")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:1 ... [auto]")
@click.option("--checkpoint-minutes", type=P.MINUTES, default=5.0, show_default=True,
              help="Also keep a training state when this many minutes have passed since the last (0 = only by kimg).")
@click.option("--workers", type=P.WORKERS, default=0, show_default=True,
              help="Processes decoding the images when the data set does not fit in memory (0: this one).")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train_latent_fingerprint_cmd(autoencoder, data, outdir, preset, config_file, checkpoint_minutes, workers, dry_run,
                                 **flags) -> None:
    """Fine-tune a latent autoencoder's decoder so that every image it decodes carries a fingerprint.

    \b
    Example:
      ganprint train-latent-fingerprint --autoencoder runs/ae/latent-autoencoder.safetensors --data data/train32 \\
          --outdir runs/lfp --fingerprint-length 64
    Outputs in OUTDIR: latent-modulated.safetensors (decodes with any fingerprint; `fold` makes a per-user copy),
    fingerprint-decoder.safetensors (a stega-decoder export), config.json, log.txt, stats.jsonl (held-out bit
    accuracy and PSNR against the original decoder), training-state-<step>.pt.
    """

    cfg = resolve_config(preset, config_file, **flags)
    if dry_run:
        click.echo(config_json(cfg))
        return
    row = train_latent_fingerprint(cfg, autoencoder, data, outdir, checkpoint_minutes=checkpoint_minutes,
                                   workers=workers)
    if row:
        click.echo(json.dumps({k: row[k] for k in ("kimg", "bit_accuracy", "psnr", "bit_accuracy_original")}))
    click.echo(f"wrote {outdir}/{MODEL_EXPORT} and {outdir}/{DECODER_EXPORT}")


COMMANDS = [train_latent_fingerprint_cmd]
