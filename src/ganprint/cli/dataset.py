"""`ganprint dataset ...`: build packed (memory-mapped) training sets."""

from __future__ import annotations

import click

COMMANDS: list = []


@click.group("dataset")
def dataset() -> None:
    """Build packed training sets (images.npy + dataset.json), read by `train-scalable` and friends.

    \b
    Examples:
      ganprint dataset celeba celeba/Img/img_align_celeba_png data/celeba30k --num-images 30000
      ganprint dataset from-images photos/ data/photos32 --resolution 32 --num-images 2000 --no-shuffle
    """


@dataset.command("celeba")
@click.argument("src", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--num-images", type=int, default=30000, show_default=True, help="Take the first N sorted PNGs.")
@click.option("--shuffle/--no-shuffle", default=False, show_default=True, help="Permute the selected images.")
@click.option("--seed", type=int, default=123, show_default=True, help="Seed of the permutation.")
def celeba_cmd(src: str, out: str, num_images: int, shuffle: bool, seed: int) -> None:
    """Aligned CelebA (178x218 PNGs) -> 128x128 crops centred at x=89, y=121, no resize (the authors' set-up)."""
    from ganprint.data.packed import pack_celeba

    path = pack_celeba(src, out, num_images, shuffle=shuffle, seed=seed)
    click.echo(f"wrote {num_images} images to {path}")


@dataset.command("from-images")
@click.argument("src", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--resolution", type=int, required=True, help="Output side in pixels (a power of two).")
@click.option("--num-images", type=int, default=None, help="Take the first N sorted images [default: all].")
@click.option("--shuffle/--no-shuffle", default=False, show_default=True, help="Permute the selected images.")
@click.option("--seed", type=int, default=123, show_default=True, help="Seed of the permutation.")
def from_images_cmd(src: str, out: str, resolution: int, num_images: int | None, shuffle: bool, seed: int) -> None:
    """Any image folder -> centre-cropped squares resized to RESOLUTION."""
    from ganprint.data.packed import pack_images, read_manifest

    path = pack_images(src, out, resolution, num_images, shuffle=shuffle, seed=seed)
    click.echo(f"wrote {read_manifest(path)['count']} images at {resolution}x{resolution} to {path}")


COMMANDS.append(dataset)
