"""`ganprint train-autoencoder` and `ganprint train-latent`: the two halves of a latent diffusion model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ganprint.cli import params as P
from ganprint.core.errors import GanprintError
from ganprint.latent.config import AUTOENCODER_PRESETS, LATENT_PRESETS, LOSSES, resolve_autoencoder_config
from ganprint.latent.model import FINAL as LATENT_FINAL
from ganprint.latent.train_autoencoder import FINAL as AE_FINAL
from ganprint.latent.train_autoencoder import config_from_model, train_autoencoder
from ganprint.latent.train_latent import resolve_latent_run_config, train_latent
from ganprint.training.config import apply_overrides


def _common(fn):
    """The options both trainers share, in the order --help lists them."""
    for option in reversed([
        click.option("--data", required=True, type=click.Path(), help="Folder of images or packed data set."),
        click.option("--outdir", required=True, type=click.Path(file_okay=False),
                     help="Run folder; re-running resumes."),
        click.option("--kimg", "total_kimg", type=P.KIMG, default=None, help="Training length in thousands of images."),
        click.option("--batch-size", type=P.BATCH, default=None, help="Total batch over all processes."),
        click.option("--lr", type=P.LR, default=None, help="Adam learning rate after warm-up."),
        click.option("--seed", type=P.SEED, default=None, help="Seed of initialisation, data order and noise."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
        click.option("--snapshot-kimg", type=P.KIMG_POS, default=None,
                     help="Grid, export and training state every N kimg."),
        click.option("--tick-kimg", "kimg_per_tick", type=P.KIMG_POS, default=None,
                     help="A status line and stats.jsonl row every N kimg."),
        click.option("--checkpoint-minutes", type=P.MINUTES, default=5.0, show_default=True,
                     help="Also keep a training state when this many minutes have passed since the last "
                          "(0 = only by kimg)."),
        click.option("--workers", type=P.WORKERS, default=0, show_default=True,
                     help="Processes decoding the images when the data set does not fit in memory (0: this one)."),
        click.option("--dry-run", is_flag=True, help="Print the resolved config and exit."),
    ]):
        fn = option(fn)
    return fn


@click.command("train-autoencoder")
@_common
@click.option("--preset", default=None, help=f"{', '.join(AUTOENCODER_PRESETS)} [ae-32].")
@click.option("--loss", type=click.Choice(LOSSES), default=None, help="Reconstruction loss [l1].")
@click.option("--kl-weight", type=P.WEIGHT, default=None, help="Weight of the KL term [1e-6].")
@click.option("--holdout", type=P.IMAGES, default=None,
              help="The data set's last N images are never trained on; stats.jsonl logs their reconstruction PSNR.")
@click.option("--norm-groups", type=P.NORM_GROUPS, default=None,
              help="GroupNorm groups of the architecture; must divide every width (ae-32: 32, i.e. 1-2 channels "
                   "per group; Stable Diffusion's VAE has 4-16).")
@click.option("--resume-from", type=click.Path(), default=None,
              help="Fine-tune: start from this latent-autoencoder export or diffusers AutoencoderKL save_pretrained "
                   "folder (its architecture replaces the preset's).")
def train_autoencoder_cmd(data, outdir, preset, device, resume_from, checkpoint_minutes, workers, dry_run,
                          **overrides):
    """Train the autoencoder of a latent diffusion model on images; exports its EMA weights (kind
    latent-autoencoder).

    \b
    Outputs in OUTDIR: config.json, log.txt, stats.jsonl (loss, kl, psnr_held_out), snapshots/
    (reconstructions-<step>.png: held-out images over their reconstructions), network-<nimg>.safetensors,
    latent-autoencoder.safetensors, training-state-<step>.pt.
    \b
    Examples:
      ganprint train-autoencoder --data photos/ --outdir runs/ae --preset ae-32
      ganprint train-autoencoder --data photos/ --outdir runs/ae-ft --kimg 5 --resume-from released/vae
    """
    if resume_from is not None and overrides.get("norm_groups") is not None:
        raise GanprintError("--norm-groups sets the architecture, and --resume-from brings its own: give one of them")
    cfg = resolve_autoencoder_config(preset, **overrides)
    if dry_run:
        cfg = cfg if resume_from is None else config_from_model(cfg, resume_from).validate()
        click.echo(json.dumps({**cfg.to_dict(), "data": data, "resume_from": resume_from}, indent=2))
        return
    result = train_autoencoder(cfg, outdir, data, device=device, resume_from=resume_from,
                               checkpoint_minutes=checkpoint_minutes, workers=workers)
    click.echo(f"trained to {result['cur_nimg'] / 1000:.3f} kimg: {Path(outdir) / AE_FINAL}")


@click.command("train-latent")
@_common
@click.option("--autoencoder", required=True, type=click.Path(dir_okay=False),
              help="The frozen autoencoder (a latent-autoencoder export, from train-autoencoder) whose latents the "
                   "UNet denoises.")
@click.option("--preset", default=None, help=f"{', '.join(LATENT_PRESETS)} [ldm-32]; the UNet takes the "
                                             "autoencoder's latent side and channels.")
@click.option("--resume-from", type=click.Path(), default=None,
              help="Fine-tune: start from this latent-diffusion export or diffusers UNet2DModel save_pretrained "
                   "folder whose in_channels are the autoencoder's latent channels.")
def train_latent_cmd(data, outdir, autoencoder, preset, device, resume_from, checkpoint_minutes, workers, dry_run,
                     **overrides):
    """Train a latent diffusion UNet on the latents of a frozen autoencoder; exports UNet and autoencoder in one
    file (kind latent-diffusion).

    \b
    Outputs in OUTDIR: what train-diffusion writes, with latent-diffusion.safetensors as the final export.
    \b
    Examples:
      ganprint train-latent --data photos/ --autoencoder runs/ae/latent-autoencoder.safetensors --outdir runs/ldm
      ganprint generate --model runs/ldm/latent-diffusion.safetensors --seeds 0-15 --outdir samples
    """
    cfg = apply_overrides(preset, LATENT_PRESETS, "ldm-32", **overrides)
    if dry_run:
        cfg = resolve_latent_run_config(cfg, autoencoder, resume_from)
        click.echo(json.dumps({**cfg.to_dict(), "data": data, "autoencoder": autoencoder,
                               "resume_from": resume_from}, indent=2))
        return
    result = train_latent(cfg, outdir, data, autoencoder, device=device, resume_from=resume_from,
                          checkpoint_minutes=checkpoint_minutes, workers=workers)
    click.echo(f"trained to {result['cur_nimg'] / 1000:.3f} kimg: {Path(outdir) / LATENT_FINAL}")


COMMANDS = [train_autoencoder_cmd, train_latent_cmd]
