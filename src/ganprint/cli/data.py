"""`ganprint data ...`: built-in sample data."""

from __future__ import annotations

import click

from ganprint.data.samples import write_samples


@click.group("data")
def data_group() -> None:
    """Sample data built from photos shipped inside installed packages (no download)."""


@data_group.command("samples")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--resolution", default=32, show_default=True, type=click.IntRange(min=1), help="Crop side in pixels.")
@click.option("--count", default=1000, show_default=True, type=click.IntRange(min=1), help="Number of crops.")
@click.option("--seed", default=0, show_default=True, type=int, help="Crops are a pure function of the seed.")
@click.option("--photos", type=click.Choice(["train", "heldout", "all"]), default="all", show_default=True,
              help="Which source photos to crop: the fixed train split (9 photos), the held-out split "
                   "(chelsea, rocket, china) or all 12.")
@click.option("--vary", is_flag=True, help="Also vary each crop (rotation, colour, contrast, gamma, noise, smaller "
                                           "cuts upsampled): training data that generalises to other photos.")
def samples_cmd(outdir: str, resolution: int, count: int, seed: int, photos: str, vary: bool) -> None:
    """Write COUNT random multi-scale crops of real sample photos as PNGs, with SOURCES.md (licences).

    The photos come from scikit-image, scikit-learn and matplotlib as installed; nothing is downloaded.
    Re-running with the same flags keeps finished crops; a larger --count extends the set.

    \b
    Examples:
      ganprint data samples data/train --count 5000 --photos train
      ganprint data samples data/test --count 500 --photos heldout --seed 1
      ganprint data samples data/128 --resolution 128 --count 1000
    """
    paths = write_samples(outdir, resolution=resolution, count=count, seed=seed, photos=photos, vary=vary)
    click.echo(f"{len(paths)} sample images of {resolution}x{resolution} px in {outdir} (sources: {outdir}/SOURCES.md)",
               err=True)


COMMANDS = [data_group]
