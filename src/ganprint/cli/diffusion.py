"""`ganprint train-diffusion`: train or fine-tune a diffusion UNet (diffusers) on a folder of images;
`ganprint export-diffusers`: write one as a diffusers pipeline folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ganprint.cli import params as P
from ganprint.core.paths import check_overlap
from ganprint.diffusion.config import PRESETS
from ganprint.diffusion.diffusers_folder import export_diffusers
from ganprint.diffusion.train import resolve_run_config, run_config, train_diffusion


@click.command("train-diffusion")
@click.option("--data", required=True, type=click.Path(), help="Folder of images (e.g. fingerprinted ones).")
@click.option("--resolution", type=P.RESOLUTION, default=None,
              help="Image side in pixels (the preset's, or the --resume-from model's, by default).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run folder; re-running resumes.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Start from a run's config.json (or a --dry-run's output) instead of a preset; flags override it.")
@click.option("--preset", default=None,
              help=f"{', '.join(PRESETS)} [cpu-32; ddpm-32 is the DDPM CIFAR-10 UNet, for GPUs]; --resolution gives "
                   "its UNet another image side.")
@click.option("--kimg", "total_kimg", type=P.KIMG, default=None, help="Training length in thousands of images.")
@click.option("--batch-size", type=P.BATCH, default=None, help="Total batch over all processes.")
@click.option("--lr", type=P.LR, default=None, help="Adam learning rate after warm-up.")
@click.option("--warmup-kimg", type=P.KIMG, default=None, help="Linear learning-rate warm-up in kimg.")
@click.option("--seed", type=P.SEED, default=None, help="Seed of initialisation, data order and noise.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--snapshot-kimg", type=P.KIMG_POS, default=None, help="Grid, export and training state every N kimg.")
@click.option("--resume-from", type=click.Path(), default=None,
              help="Fine-tune: start from this diffusion-unet export or diffusers save_pretrained folder of a "
                   "UNet2DModel or its pipeline (its architecture replaces the preset's).")
@click.option("--checkpoint-minutes", type=P.MINUTES, default=5.0, show_default=True,
              help="Also keep a training state when this many minutes have passed since the last (0 = only by kimg).")
@click.option("--workers", type=P.WORKERS, default=0, show_default=True,
              help="Processes decoding the images when the data set does not fit in memory (0: this one).")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train_diffusion_cmd(data, resolution, outdir, preset, config_file, device, resume_from, checkpoint_minutes,
                        workers, dry_run, **overrides):
    """Train a denoising diffusion UNet on images; exports its EMA weights (kind diffusion-unet).

    \b
    Outputs in OUTDIR: config.json, log.txt, stats.jsonl, snapshots/ (reals.png, fakes-<step>.png),
    network-<nimg>.safetensors (nimg: images seen), network-final.safetensors, training-state-<step>.pt.
    \b
    Examples:
      ganprint train-diffusion --data fp/fingerprinted_images --outdir runs/diff-fp --preset cpu-32
      ganprint train-diffusion --data fp/fingerprinted_images --outdir runs/diff-ft --kimg 10 \\
          --resume-from runs/diff-clean/network-final.safetensors
      ganprint train-diffusion --data fp64/fingerprinted_images --outdir runs/ft64 --kimg 10 \\
          --resume-from released/ddpm-64                           # a diffusers save_pretrained folder
      torchrun --nproc_per_node 8 -m ganprint train-diffusion --data data/ --outdir runs/ddpm --preset ddpm-32
    """

    if resume_from is not None and not dry_run:  # before the model to fine-tune is read: it sets the config
        check_overlap([("`data`", data, "data"), ("`resume_from`", resume_from, "model")], [("`outdir`", outdir)])
    cfg = resolve_run_config(preset, resolution, resume_from, config_file, **overrides)
    if dry_run:
        click.echo(json.dumps(run_config(cfg, data, resume_from), indent=2))
        return
    result = train_diffusion(cfg, outdir, data, device=device, resume_from=resume_from,
                             checkpoint_minutes=checkpoint_minutes, workers=workers)
    click.echo(f"trained to {result['cur_nimg'] / 1000:.3f} kimg: {Path(outdir) / 'network-final.safetensors'}")


@click.command("export-diffusers")
@click.option("--model", required=True, type=click.Path(dir_okay=False),
              help="A diffusion-unet export, e.g. runs/diff/network-final.safetensors.")
@click.option("--decoder", required=True, type=click.Path(dir_okay=False),
              help="The decoder that reads the fingerprint of the model's training data (a stega or "
                   "stega-decoder export); the model card names its sha256.")
@click.option("--fpr", default=1e-6, show_default=True, type=P.FPR,
              help="False-positive rate of the detection threshold the model card states.")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT when it already holds files.")
def export_diffusers_cmd(model, decoder, fpr, out, overwrite):
    """Write a diffusion export as a diffusers pipeline folder with a model card.

    \b
    OUT gets model_index.json, unet/, scheduler/ (DDPMPipeline.from_pretrained(OUT) loads it) and README.md, a
    model card naming the fingerprint length, the decoder's sha256 and the detection threshold at --fpr.
    \b
    Example:
      ganprint export-diffusers --model runs/diff/network-final.safetensors --decoder decoder.safetensors hub/diff
    """
    click.echo(f"wrote {export_diffusers(model, out, decoder, fpr=fpr, overwrite=overwrite)}")


COMMANDS = [train_diffusion_cmd, export_diffusers_cmd]
