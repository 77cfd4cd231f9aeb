"""`ganprint demo`: train, embed and detect on built-in sample photos."""

from __future__ import annotations

import click

from ganprint.cli import params as P
from ganprint.demo import format_summary, run_demo


@click.command("demo")
@click.option("--outdir", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="Where everything is written; re-running resumes.")
@click.option("--seed", type=P.SEED, default=0, show_default=True, help="Seed for data, training and the fingerprint.")
@click.option("--steps", type=P.STEPS, default=None,
              help="Override the number of training steps of the demo-32 preset (2800).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
def demo_cmd(outdir: str, seed: int, steps: int | None, device: str) -> None:
    """Train a 32-px fingerprint autoencoder on sample photos, embed, detect, report (about 10 min on 2 CPU cores).

    \b
    Example:
      ganprint demo --outdir demo-out
      # then open demo-out/report.md (figure: demo-out/examples.png)
    """
    s = run_demo(outdir, seed=seed, steps=steps, device=device)
    click.echo(format_summary(s))
    click.echo(f"report: {outdir}/report.md")
    click.echo(f"serve it: ganprint serve --registry {outdir}/registry.sqlite "
               f"--stega-decoder {outdir}/train/model.safetensors   (then open http://127.0.0.1:8000/)")


COMMANDS = [demo_cmd]
