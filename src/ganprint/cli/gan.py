"""`ganprint train-gan` (StyleGAN2 training) and `ganprint generate` (images from an exported generator)."""

from __future__ import annotations

import logging

import click

from ganprint.api import generate_and_sign
from ganprint.cli import params as P
from ganprint.cli.provenance import signing_options
from ganprint.gan.config import PRESETS, resolve_config
from ganprint.gan.train import train_gan
from ganprint.inference.generation import GenerateSpec
from ganprint.provenance.c2pa import C2paSigning
from ganprint.training.config import config_json

log = logging.getLogger(__name__)


@click.command("train-gan")
@click.option("--data", type=click.Path(), default=None,
              help="Folder of images or a packed data set; required unless --config names it.")
@click.option("--resolution", type=P.RESOLUTION, default=None, help="Image side in pixels (32, 64, 128, 256); picks the preset.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run folder; re-running resumes.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Start from a run's config.json (or a --dry-run's output) instead of a preset; flags override it.")
@click.option("--preset", default=None, help=f"{', '.join(PRESETS)} (default: the --resolution preset).")
@click.option("--kimg", "total_kimg", type=P.KIMG, default=None, help="Training length in thousands of real images.")
@click.option("--batch-size", type=P.BATCH, default=None, help="Total batch over all processes.")
@click.option("--seed", type=P.SEED, default=None, help="Seed of initialisation, data order and noise.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--snapshot-kimg", type=P.KIMG_POS, default=None, help="Grid, export and training state every N kimg.")
@click.option("--tick-kimg", "kimg_per_tick", type=P.KIMG_POS, default=None,
              help="A status line and a stats.jsonl row every N kimg.")
@click.option("--mirror/--no-mirror", default=None, help="Random x-flips of the training images.")
@click.option("--checkpoint-minutes", type=P.MINUTES, default=5.0, show_default=True,
              help="Also keep a training state when this many minutes have passed since the last (0 = only by kimg).")
@click.option("--workers", type=P.WORKERS, default=2, show_default=True,
              help="Processes decoding the images when the data set does not fit in memory.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train_gan_cmd(data, resolution, outdir, preset, config_file, device, checkpoint_minutes, workers, dry_run,
                  **overrides):
    """Train a StyleGAN2 generator on images (e.g. fingerprinted ones); exports the EMA generator.

    \b
    Outputs in OUTDIR: config.json, log.txt, stats.jsonl, snapshots/ (reals.png, fakes-<step>.png),
    network-<kimg>.safetensors, network-final.safetensors, training-state-<step>.pt.
    \b
    Examples:
      ganprint train-gan --data fp_out/fingerprinted_images --resolution 32 --preset small \\
          --outdir runs/gan-small --kimg 50
      torchrun --nproc_per_node 2 "$(which ganprint)" train-gan --data data/ --resolution 64 --outdir runs/gan64
    """

    cfg = resolve_config(preset, resolution, config_file, data=data, **overrides)
    if dry_run:
        click.echo(config_json(cfg))
        return
    train_gan(cfg, outdir, device=device, checkpoint_minutes=checkpoint_minutes, workers=workers)


@click.command("generate")
@click.option("--model", required=True, type=click.Path(), help="Generator export (.safetensors).")
@click.option("--seeds", default="0-63", show_default=True, type=P.Seeds(), help="Seeds, e.g. 0-63 or 0,5,7-9.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where seed<NNNNNN>.png go.")
@click.option("--batch-size", type=P.BATCH, default=16, show_default=True, help="Images per forward pass.")
@click.option("--grid", is_flag=True, help="Also write grid.png of all images.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--trunc", type=P.TRUNCATION, default=1.0, show_default=True, help="Truncation psi (stylegan2-G; 1 = none).")
@click.option("--precision", type=P.Precision("fp64", "fp32"), default="fp64", show_default=True,
              help="fp64 makes every image independent of --batch-size; fp32 is faster.")
@click.option("--fingerprint", default=None, help="Scalable generators: fingerprint as 0/1 bits or 0x hex.")
@click.option("--identical-latent", is_flag=True, help="Scalable generators: one latent for all seeds.")
@click.option("--identical-fingerprint", is_flag=True, help="Scalable generators: one fingerprint for all seeds.")
@click.option("--sampler", type=click.Choice(["ddim", "ddpm", "dpm"]), default=None,
              help="Diffusion models: the sampler [default: ddim].")
@click.option("--steps", type=P.SAMPLER_STEPS, default=None,
              help="Diffusion models: sampler steps [default: 50].")
@click.option("--decoder", type=click.Path(dir_okay=False), default=None,
              help="Latent diffusion models: decode with this autoencoder export (of the model's autoencoder "
                   "config, e.g. an issued one) instead of the model's own.")
@click.option("--registry", default=None,
              help="With --c2pa-outdir: the registry of the issued --model (SQLite path or postgresql:// URL).")
@signing_options("For an issued model, with --registry, --c2pa-cert and --c2pa-key", "image", "the model's fingerprint")
def generate_cmd(registry, c2pa_outdir, c2pa_cert, c2pa_key, **flags):
    """Generate images; each image is a pure function of its seed (file seed<seed:06d>.png).

    \b
    Examples:
      ganprint generate --model runs/gan-small/network-final.safetensors --seeds 0-63 --outdir samples --grid
      ganprint generate --model scalable.safetensors --seeds 0-9 --fingerprint 0x6f3a... --outdir out
      ganprint generate --model runs/diff/network-final.safetensors --sampler dpm --steps 20 --outdir samples
      ganprint generate --model runs/ldm/latent-diffusion.safetensors --decoder issued.safetensors --outdir out
    """

    # every other flag is a field of the spec
    paths = generate_and_sign(GenerateSpec(**flags), registry, C2paSigning.of(c2pa_outdir, c2pa_cert, c2pa_key))
    click.echo(f"wrote {len(paths) if paths is not None else 0} images to {flags['outdir']}")


COMMANDS = [train_gan_cmd, generate_cmd]
