"""`ganprint data ...` (built-in sample data) and `ganprint dataset ...` (packed training sets)."""

from __future__ import annotations

import click

from ganprint.cli import params as P
from ganprint.cli.vocabulary import OldPositional, take_old
from ganprint.data.packed import pack_celeba, pack_images, read_manifest
from ganprint.data.samples import write_samples


@click.group("data")
def data_group() -> None:
    """Sample data built from photos shipped inside installed packages (no download)."""


@data_group.command("samples")
@click.option("--outdir", type=click.Path(file_okay=False), help="Folder to write the crops into.  [required]")
@click.argument("old_outdir", cls=OldPositional, type=click.Path(file_okay=False))
@click.option("--resolution", default=32, show_default=True, type=P.RESOLUTION, help="Crop side in pixels.")
@click.option("--count", default=1000, show_default=True, type=P.IMAGES, help="Number of crops.")
@click.option("--seed", default=0, show_default=True, type=P.SEED, help="Crops are a pure function of the seed.")
@click.option("--photos", default="all", show_default=True,
              help="Which source photos to crop: the fixed train split (9 photos), the held-out split "
                   "(chelsea, rocket, china), all 12, or a folder of your own photos.")
@click.option("--vary", is_flag=True, help="Also vary each crop (rotation, colour, contrast, gamma, noise, smaller "
                                           "cuts upsampled): training data that generalises to other photos.")
def samples_cmd(outdir: str | None, old_outdir: str | None, resolution: int, count: int, seed: int, photos: str,
                vary: bool) -> None:
    """Write --count random multi-scale crops of real sample photos as PNGs, with SOURCES.md (licences).

    The photos come from scikit-image, scikit-learn and matplotlib as installed; nothing is downloaded.
    Re-running with the same flags keeps finished crops; a larger --count extends the set. (The folder given as
    a positional argument, the old form of --outdir, still works in this release.)

    \b
    Examples:
      ganprint data samples --outdir data/train --count 5000 --photos train
      ganprint data samples --outdir data/test --count 500 --photos heldout --seed 1
      ganprint data samples --outdir data/128 --resolution 128 --count 1000
    """
    outdir = take_old(outdir, old_outdir, "--outdir", "OUTDIR")
    paths = write_samples(outdir, resolution=resolution, count=count, seed=seed, photos=photos, vary=vary)
    click.echo(f"{len(paths)} sample images of {resolution}x{resolution} px in {outdir} (sources: {outdir}/SOURCES.md)",
               err=True)


@click.group("dataset")
def dataset() -> None:
    """Build packed training sets (images.npy + dataset.json), read by `train-scalable` and friends.

    \b
    Examples:
      ganprint dataset celeba --data celeba/Img/img_align_celeba_png --outdir data/celeba30k --limit 30000
      ganprint dataset from-images --data photos/ --outdir data/photos32 --resolution 32 --limit 2000

    (The folders given as positional arguments, SRC OUT, the old form of --data --outdir, still work in this
    release.)
    """


def _folders(fn):
    """--data and --outdir of a `dataset` command, and the old positional SRC OUT that they replace."""
    for deco in reversed((
            click.option("--data", type=click.Path(file_okay=False), help="Folder of source images.  [required]"),
            click.option("--outdir", type=click.Path(file_okay=False),
                         help="New folder for the packed set (must not exist, or be empty).  [required]"),
            click.argument("src", cls=OldPositional, type=click.Path(file_okay=False)),
            click.argument("out", cls=OldPositional, type=click.Path(file_okay=False)))):
        fn = deco(fn)
    return fn


@dataset.command("celeba")
@_folders
@click.option("--limit", type=P.IMAGES, default=30000, show_default=True, help="Take the first N sorted PNGs.")
@click.option("--shuffle/--no-shuffle", default=False, show_default=True, help="Permute the selected images.")
@click.option("--seed", type=P.SEED32, default=123, show_default=True, help="Seed of the permutation.")
def celeba_cmd(data, outdir, src, out, limit: int, shuffle: bool, seed: int) -> None:
    """Aligned CelebA (178x218 PNGs) -> 128x128 crops centred at x=89, y=121, no resize (the authors' set-up)."""
    data, outdir = take_old(data, src, "--data", "SRC"), take_old(outdir, out, "--outdir", "OUT")
    path = pack_celeba(data, outdir, limit, shuffle=shuffle, seed=seed)
    click.echo(f"wrote {limit} images to {path}")


@dataset.command("from-images")
@_folders
@click.option("--resolution", type=P.RESOLUTION, required=True, help="Output side in pixels (a power of two).")
@click.option("--limit", type=P.IMAGES, default=None, help="Take the first N sorted images [default: all].")
@click.option("--shuffle/--no-shuffle", default=False, show_default=True, help="Permute the selected images.")
@click.option("--seed", type=P.SEED32, default=123, show_default=True, help="Seed of the permutation.")
def from_images_cmd(data, outdir, src, out, resolution: int, limit: int | None, shuffle: bool, seed: int) -> None:
    """Any image folder -> centre-cropped squares resized to --resolution."""
    data, outdir = take_old(data, src, "--data", "SRC"), take_old(outdir, out, "--outdir", "OUT")
    path = pack_images(data, outdir, resolution, limit, shuffle=shuffle, seed=seed)
    click.echo(f"wrote {read_manifest(path)['count']} images at {resolution}x{resolution} to {path}")


COMMANDS = [data_group, dataset]
