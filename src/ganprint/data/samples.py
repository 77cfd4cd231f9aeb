"""Sample data: random multi-scale square crops of the real photos shipped inside installed packages.

No download: the photos are read from the install folders of scikit-image (`skimage/data`),
scikit-learn (`sklearn/datasets/images`) and matplotlib (`mpl-data/sample_data`). Each crop is a
pure function of (seed, crop index, photo split): a photo is drawn uniformly, a square side is drawn
log-uniformly between `resolution` and the photo's shorter side, its position uniformly; flat crops
(pixel std < 4/255 after resizing) are redrawn, and half of the crops are mirrored left-right.
With `vary`, each crop also gets a random rotation by a multiple of 90 degrees and photometric changes
(saturation, channel order, brightness, contrast, gamma, occasional grey and sensor noise), and one in five is
cut smaller than the resolution and upsampled: a model trained on a dozen photos then meets the colours,
textures and smoothness of photos from other cameras and scenes.

Split of source photos (fixed, so a model can be tested on photos it never saw):
- heldout: chelsea (cat), rocket, china (3 photos, different scenes from every training photo);
- train: the 9 others (the two motorcycle photos are a stereo pair, so both stay in train).
"""

from __future__ import annotations

import ast
import datetime
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganprint._version import __version__
from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.files import (atomic_write_json, atomic_write_text, check_writable_dir, read_input_json,
                                 remove_stale_temporaries)
from ganprint.core.images import read_image, resize, write_png
from ganprint.core.paths import OutputFolder, check_overlap
from ganprint.core.seeds import derive_seed
from ganprint.data.folders import list_images

log = logging.getLogger(__name__)

SPLITS = ("train", "heldout", "all")
MIN_STD = 4.0 / 255.0  # reject nearly flat crops (sky, black borders)
MAX_TRIES = 50
_CROP_NAME = re.compile(r"\d{6,}\.png")  # 000000.png ...: the crops this module writes


@dataclass(frozen=True)
class Photo:
    name: str
    package: str  # distribution name, for the version
    module: str  # import name, for the install folder
    relpath: str  # inside the module's folder
    split: str  # "train" or "heldout"
    licence: str  # as stated by the package
    licence_source: str  # where the package states it
    # (file inside the module, docstring function or None, phrase that must appear there); None = nothing stated
    check: tuple[str, str | None, str] | None


def _skimage(name: str, relpath: str, split: str, licence: str, fetcher: str, phrase: str | None) -> Photo:
    """A scikit-image photo, whose licence its fetcher's docstring states (`phrase`; None = states none)."""
    check = None if phrase is None else ("data/_fetchers.py", fetcher, phrase)
    return Photo(name, "scikit-image", "skimage", relpath, split, licence,
                 f"skimage/data/_fetchers.py: {fetcher}()", check)


PHOTOS: tuple[Photo, ...] = (
    _skimage("astronaut", "data/astronaut.png", "train",
             "public domain (NASA; 'No known copyright restrictions, released into the public domain')",
             "astronaut", "released into the public domain"),
    _skimage("chelsea", "data/chelsea.png", "heldout", "CC0 (photographer Stefan van der Walt)",
             "chelsea", "CC0 by the photographer"),
    _skimage("coffee", "data/coffee.png", "train", "CC0 (photographer Rachel Michetti)",
             "coffee", "CC0 by the photographer"),
    _skimage("hubble_deep_field", "data/hubble_deep_field.jpg", "train", "public domain (NASA)",
             "hubble_deep_field", "public domain"),
    _skimage("ihc", "data/ihc.png", "train", "'No known copyright restrictions' (CMMI)",
             "immunohistochemistry", "No known copyright restrictions"),
    _skimage("motorcycle_left", "data/motorcycle_left.png", "train",
             "unknown (Middlebury 2014 stereo benchmark; no licence stated)", "stereo_motorcycle", None),
    _skimage("motorcycle_right", "data/motorcycle_right.png", "train",
             "unknown (Middlebury 2014 stereo benchmark; no licence stated)", "stereo_motorcycle", None),
    _skimage("retina", "data/retina.jpg", "train", "CC0 1.0 Universal (Wikimedia Commons)",
             "retina", "CC0 1.0 Universal"),
    _skimage("rocket", "data/rocket.jpg", "heldout", "public domain (SpaceX)", "rocket", "public domain"),
    Photo("china", "scikit-learn", "sklearn", "datasets/images/china.jpg", "heldout",
          "CC BY 2.0 (attribution: danielbuechele, Flickr)",
          "sklearn/datasets/images/README.txt",
          ("datasets/images/README.txt", None, "creativecommons.org/licenses/by/2.0")),
    Photo("flower", "scikit-learn", "sklearn", "datasets/images/flower.jpg", "train",
          "CC BY 2.0 (attribution as in README: danielbuechele; source photo by vultilion, Flickr)",
          "sklearn/datasets/images/README.txt", ("datasets/images/README.txt", None, "Image: flower.jpg")),
    Photo("grace_hopper", "matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "train",
          "unknown (matplotlib's sample_data README states none)",
          "matplotlib/mpl-data/sample_data/README.txt", None),
)


def _module_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _docstring(path: Path, func: str | None) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if func is None:
        return text
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == func:
            return ast.get_docstring(node) or ""
    return ""


def _licence(photo: Photo, base: Path) -> str:
    """The licence we recorded, but only if the installed package still states it; else 'unknown'."""
    if photo.check is None:
        return photo.licence
    rel, func, phrase = photo.check
    try:
        found = phrase in _docstring(base / rel, func)
    except (OSError, SyntaxError):
        found = False
    return photo.licence if found else f"unknown (not stated in this version's {photo.licence_source})"


def _folder_photos(folder: Path) -> list[dict]:
    """Every image under a user's folder as a source photo (its licence is the folder owner's business)."""
    return [{"name": str(path.relative_to(folder)), "path": str(path), "package": "folder", "version": "-",
             "file": str(path), "split": "folder", "licence": "unknown (a folder of the user's own photos)",
             "licence_source": str(folder)} for path in list_images(folder)]


def available_photos(photos: str = "all") -> list[dict]:
    """The source photos of split `photos` found in installed packages, or the images of a folder `photos`:
    dicts with name, path, package, version, ..."""
    if photos not in SPLITS:
        if Path(photos).is_dir():
            return _folder_photos(Path(photos))
        raise GanprintError(f"`photos` must be one of {', '.join(SPLITS)} or a folder of photos, got {photos!r}")
    out = []
    for p in PHOTOS:
        if photos != "all" and p.split != photos:
            continue
        base = _module_dir(p.module)
        path = base / p.relpath if base else None
        if path is None or not path.is_file():
            log.warning("sample photo %s not found (package %s not installed or changed; the photos extra "
                        "installs it); skipping it", p.name, p.package)
            continue
        try:
            version = importlib.metadata.version(p.package)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        out.append({"name": p.name, "path": str(path), "package": p.package, "version": version,
                    "file": f"{p.module}/{p.relpath}", "split": p.split, "licence": _licence(p, base),
                    "licence_source": p.licence_source})
    if not out:
        raise GanprintError(
            f"no sample photos of split {photos!r} found; install the photos extra (pip install -e '.[photos]' "
            "in the checkout: scikit-image and scikit-learn) or give a folder of photos")
    return out


def _crop(photo: np.ndarray, resolution: int, rng: np.random.Generator,
          vary: bool = False) -> tuple[np.ndarray, dict]:
    """One random multi-scale crop of `photo` resized to `resolution`, with its box and flip."""
    h, w = photo.shape[:2]
    short = min(h, w)
    lo = min(resolution, short)
    if vary and rng.random() < 0.2:  # a smaller cut, upsampled: smooth images like those of other cameras
        lo = max(4, min(resolution // 2, short))
        short = min(resolution, short)
    out, info = None, {}
    for _ in range(MAX_TRIES):
        side = int(round(math.exp(rng.uniform(math.log(lo), math.log(short)))))
        side = max(1, min(side, short))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        flip = bool(rng.random() < 0.5)
        out = resize(np.ascontiguousarray(photo[top:top + side, left:left + side]), resolution)  # [R, R, 3]
        if flip:
            out = np.ascontiguousarray(out[:, ::-1])
        info = {"box": [left, top, side], "flip": flip}
        if vary:
            out, drawn = _vary(out, rng)
            info.update(drawn)
        if out.astype(np.float32).std() / 255.0 >= MIN_STD:
            break
    return out, info


def _vary(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Random geometric and photometric variation of a uint8 [R, R, 3] crop, and what was drawn."""
    rot = int(rng.integers(4))
    x = np.rot90(img, rot).astype(np.float32) / 255.0
    order = rng.permutation(3) if rng.random() < 0.5 else np.arange(3)
    x = x[..., order]
    grey = x.mean(axis=2, keepdims=True)
    sat = 0.0 if rng.random() < 0.1 else float(rng.uniform(0.3, 1.6))
    x = grey + sat * (x - grey)
    contrast, bright = float(rng.uniform(0.6, 1.4)), float(np.exp(rng.uniform(np.log(0.6), np.log(1.5))))
    x = (x - x.mean()) * contrast + x.mean() * bright
    gamma = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    x = np.clip(x, 0.0, 1.0) ** gamma
    noise = float(rng.uniform(0, 4.0 / 255.0)) if rng.random() < 0.3 else 0.0
    if noise:
        x = x + rng.normal(0.0, noise, x.shape).astype(np.float32)
    out = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out), {"rot90": rot, "channels": order.tolist(), "saturation": round(sat, 3),
                                       "contrast": round(contrast, 3), "brightness": round(bright, 3),
                                       "gamma": round(gamma, 3), "noise": round(noise, 4)}


def write_samples(outdir: str | os.PathLike, resolution: int = 32, count: int = 1000, seed: int = 0,
                  photos: str = "all", vary: bool = False) -> list[Path]:
    """Write `count` PNG crops `<outdir>/<i:06d>.png` plus SOURCES.md and sources.json; returns the image paths.

    A pure function of (resolution, count, seed, photos). Re-running with the same settings keeps the
    crops already written (and extends them when `count` grew), also after an interrupted run; a folder made with
    other settings, or holding files ganprint did not write, is refused (`ganprint.core.paths.OutputFolder`).
    """
    bounds.RESOLUTION.check(resolution, "resolution")
    bounds.IMAGES.check(count, "count")
    bounds.SEED.check(seed, "seed")
    sources = available_photos(photos)
    own = photos not in SPLITS  # a folder of the user's photos
    check_overlap([("photos", photos if own else None, "photo folder")], [("outdir", outdir)])
    outdir = check_writable_dir(outdir, "outdir")
    params = {"resolution": int(resolution), "seed": int(seed), "photos": photos}
    if vary:  # only then, so that folders written before the option existed still resume
        params["vary"] = True
    meta_path = outdir / "sources.json"
    # The record is written before the first crop, so that a run stopped at any point (Ctrl-C, SIGTERM, kill -9)
    # resumes when the same command is run again; sources.json alone, written at the end, recorded older runs.
    folder = OutputFolder(outdir, "outdir", "data samples", params, labels={}, legacy=_recorded_params(meta_path))
    folder.check().claim()
    remove_stale_temporaries(outdir)  # what a killed writer left behind

    cache: dict[int, np.ndarray] = {}
    split_code = SPLITS.index(photos) if photos in SPLITS else len(SPLITS)
    paths, crops, per_photo = [], [], {s["name"]: 0 for s in sources}
    written = 0
    for i in range(count):
        rng = np.random.default_rng(derive_seed(seed, i, split_code))
        k = int(rng.integers(len(sources)))
        name = f"{i:06d}.png"
        path = outdir / name
        if k not in cache:
            cache[k] = read_image(sources[k]["path"])
        img, info = _crop(cache[k], resolution, rng, vary)  # drawn even when the file exists: records stay exact
        if not path.is_file():
            write_png(path, img)
            written += 1
        paths.append(path)
        per_photo[sources[k]["name"]] += 1
        crops.append({"file": name, "photo": sources[k]["name"], **info})
    _drop_surplus(outdir, count)
    for s in sources:
        s["crops"] = per_photo[s["name"]]
    meta = {"params": params, "count": count, "ganprint_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "method": "log-uniform square side in [resolution, short side], uniform position, "
                      f"redraw if std < 4/255 (max {MAX_TRIES} tries), h-flip p=0.5, bicubic resize"
                      + ("; varied: 1 in 5 cut smaller and upsampled, rot90, channel order, saturation, contrast, "
                         "brightness, gamma, noise (drawn values in crops.jsonl)" if vary else ""),
            "photos": [{k: v for k, v in s.items() if k != "path"} for s in sources]}
    atomic_write_text(outdir / "crops.jsonl", "".join(json.dumps(c) + "\n" for c in crops))
    atomic_write_json(meta_path, meta)
    atomic_write_text(outdir / "SOURCES.md", _sources_md(meta))
    log.info("wrote %d new crops (%d total) of %d photos to %s", written, count, len(sources), outdir)
    return paths


def _recorded_params(meta_path: Path) -> dict | None:
    """The settings that an older ganprint recorded in sources.json (no record file then), or None."""
    if not os.path.lexists(meta_path):
        return None
    old = read_input_json(meta_path, "the samples record")  # a FIFO or a huge file: one line, never a hang
    return old.get("params") if isinstance(old, dict) and isinstance(old.get("params"), dict) else None


def _drop_surplus(outdir: Path, count: int) -> None:
    """Remove the crops numbered `count` and above: a smaller `count` than an earlier (or interrupted) run's."""
    for path in outdir.glob("*.png"):
        if _CROP_NAME.fullmatch(path.name) and int(path.name[:-4]) >= count:
            path.unlink(missing_ok=True)


def _sources_md(meta: dict) -> str:
    p = meta["params"]
    lines = [
        "# Sample data sources", "",
        f"{meta['count']} crops of {p['resolution']}x{p['resolution']} px, seed {p['seed']}, photo split "
        f"`{p['photos']}`, written by ganprint {meta['ganprint_version']} (`ganprint data samples`).",
        f"Method: {meta['method']}. Per-crop boxes (`[left, top, side]` in the source photo) are in `crops.jsonl`.",
        "", "| photo | package (version) | file | split | crops | licence (as stated by the package) |",
        "|---|---|---|---|---|---|",
    ]
    for s in meta["photos"]:
        lines.append(f"| {s['name']} | {s['package']} {s['version']} | `{s['file']}` | {s['split']} | {s['crops']} "
                     f"| {s['licence']}; source: `{s['licence_source']}` |")
    lines.append("")
    return "\n".join(lines)
