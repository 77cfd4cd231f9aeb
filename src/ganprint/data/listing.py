"""Which files of a folder are images: the one listing every data reader and writer uses.

Hidden entries are skipped, and so are the entries that the record of a ganprint output folder lists as not data
(`ganprint.core.paths.not_data`): the grid.png that `generate` writes when asked for `grid` is not one of the
generated samples.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ganprint.core.errors import GanprintError
from ganprint.core.images import IMAGE_EXTENSIONS, is_image_file
from ganprint.core.paths import RECORD, not_data


def list_images(root: str | os.PathLike) -> list[Path]:
    """All image files under `root` (recursive, sorted by relative path, hidden entries skipped), or [root] for a file.

    Raises GanprintError when `root` is missing, is not an image file, or holds no images.
    """
    return [Path(p) for _, p in find_images(root)]


_shared: dict[str, list[tuple[str, str]]] | None = None  # listings kept inside `one_listing()`


@contextlib.contextmanager
def one_listing():
    """Within this block each folder is walked once. A run over `jobs` processes counts the images before it forks
    them, and they inherit the listing (forked memory) instead of walking the folder again, each of them."""
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def find_images(root: str | os.PathLike) -> list[tuple[str, str]]:
    """`list_images` as (POSIX path relative to `root`, path) string pairs: a data set of 10k files names and opens
    them without building 10k Path objects."""
    if _shared is None:
        return _walk_images(root)
    key = os.path.realpath(root)
    if key not in _shared:
        _shared[key] = _walk_images(root)
    return _shared[key]


def _walk_images(root: str | os.PathLike) -> list[tuple[str, str]]:
    root = Path(root)
    exts = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    if not root.is_dir():
        if not os.path.lexists(root):
            raise GanprintError(f"data path {root} does not exist; pass a folder of images or one image file")
        if not is_image_file(root):
            raise GanprintError(f"{root} is not an image file (supported extensions: {exts})")
        return [(root.name, os.fspath(root))]  # read under the image-file rule, which refuses non-regular files
    found: list[tuple[str, str]] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop: do not walk the same folder twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        # ganprint's own outputs that are not data (a generator's grid.png, evaluate's plots, training snapshots)
        skip = not_data(dirpath) if RECORD in filenames else set()
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in skip)
        reldir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if reldir == "." else reldir + "/"
        for name in filenames:
            if name.startswith(".") or name in skip or not is_image_file(name):
                continue
            found.append((prefix + name, os.path.join(dirpath, name)))
    if not found:
        raise GanprintError(f"no images ({exts}) found under {root}; check `data`")
    found.sort(key=lambda t: t[0])
    return found
