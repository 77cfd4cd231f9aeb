"""Scalable fingerprinting commands: `train-scalable`, `issue`, `attribute`, `registry list`."""

from __future__ import annotations

import json

import click

COMMANDS: list = []


@click.command("train-scalable")
@click.option("--data", required=True, type=click.Path(), help="Image folder or packed data set (ganprint dataset).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Run directory (re-run to resume).")
@click.option("--resolution", type=int, default=32, show_default=True, help="Image side (power of two).")
@click.option("--fingerprint-bits", type=int, default=128, show_default=True, help="K, bits per fingerprint.")
@click.option("--modulated-res", default="4-128", show_default=True,
              help="Resolutions whose convs the fingerprint modulates (A-B); plain convs elsewhere.")
@click.option("--kimg", type=float, default=100.0, show_default=True, help="Length: thousands of real images shown.")
@click.option("--preset", type=click.Choice(["small", "paper", "authors-celeba", "tiny"]), default="small",
              show_default=True, help="small: 2 CPU cores; paper: config-e widths, weights 2/1/2; "
                                      "authors-celeba: paper with consistency 0.2; tiny: tests only.")
@click.option("--batch-size", type=int, default=None, help="Total batch over all processes [preset].")
@click.option("--consistency-weight", type=float, default=None, help="Weight of ||G(z,c)-G(z,c')||^2 [preset].")
@click.option("--lr", type=float, default=None, help="Adam learning rate [preset].")
@click.option("--snapshot-kimg", type=float, default=None, help="Grids, exports and state every N kimg [preset].")
@click.option("--metric-kimg", type=float, default=None, help="Bit-accuracy metric every N kimg [preset].")
@click.option("--metric-images", type=int, default=None, help="Images per bit-accuracy evaluation [preset].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
def train_scalable_cmd(**kw) -> None:
    """Train a generator whose every image carries its fingerprint (Yu et al., ICLR 2022).

    \b
    Examples:
      ganprint train-scalable --data data/samples32 --resolution 32 --fingerprint-bits 64 \\
          --modulated-res 4-32 --outdir runs/sc32 --kimg 60
      torchrun --nproc_per_node 2 -m ganprint.cli train-scalable --data data/celeba30k --resolution 128 \\
          --outdir runs/celeba --preset authors-celeba --kimg 10000
    Outputs in OUTDIR: scalable-G.safetensors (G_ema), scalable-decoder.safetensors, stats.jsonl,
    metric-bit-accuracy.jsonl, reals.png, fakes-*.png, training-state-*.pt.
    """
    from ..train.scalable_loop import ScalableTrainConfig, train_scalable

    row = train_scalable(ScalableTrainConfig(**kw))
    if row:
        click.echo(json.dumps({k: row[k] for k in ("kimg", "bit_acc_train", "bit_accuracy") if k in row}))


COMMANDS.append(train_scalable_cmd)
