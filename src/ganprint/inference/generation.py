"""What every generator's `generate` shares: `GenerateSpec` (what to generate, checked once for every kind of
generator) and the loop that writes one PNG per seed, a batch at a time, plus the optional grid.

Each image is a pure function of its seed (each generator draws its inputs from the seed alone), so the loop only
cuts the seeds into batches of `batch_size` and names each file after its seed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.files import check_writable_dir
from ganprint.core.images import write_grid, write_png
from ganprint.core.paths import GRID, check_overlap, claim_generated
from ganprint.core.progress import progress_bar, status_line
from ganprint.core.runtime import precision_name, resolve_device
from ganprint.core.seeds import check_seed_list
from ganprint.core.specs import Spec, SpecError

log = logging.getLogger(__name__)

PRECISIONS = {"fp64": torch.float64, "fp32": torch.float32}
# The folder record keeps generate's first spellings, so folders written by earlier versions resume.
RECORDED_PRECISION = {"fp64": "float64", "fp32": "float32"}


@dataclass(frozen=True)
class GenerateSpec(Spec):
    """What one generate run is asked to do (the fields are `generate`'s keyword arguments and the command's flags).

    `trunc`: truncation psi of stylegan2-G generators (1 = none). `precision`: fp64 (no image depends on
    `batch_size`) or fp32 (faster; a pixel may differ by one level); float64 and float32 are the old spellings.
    `fingerprint`, `identical_latent`, `identical_fingerprint`: scalable generators (a fixed c; every image takes
    the first seed's z / c).
    `sampler` (ddim, ddpm, dpm; default ddim) and `steps` (default 50): diffusion models.
    `decoder`: latent diffusion models, an autoencoder export of the model's config whose decoder makes the pixels.
    """

    model: str | os.PathLike
    seeds: list[int]
    outdir: str | os.PathLike
    batch_size: int = 16
    grid: bool = False
    device: str = "auto"
    trunc: float = 1.0
    precision: str = "fp64"
    fingerprint: str | None = None
    identical_latent: bool = False
    identical_fingerprint: bool = False
    sampler: str | None = None
    steps: int | None = None
    decoder: str | os.PathLike | None = None

    def check(self) -> None:
        bounds.BATCH.check(self.batch_size, "`batch_size`")
        bounds.TRUNCATION.check(self.trunc, "`trunc`")
        object.__setattr__(self, "seeds", check_seed_list(self.seeds, "`seeds`"))  # ints, in a list of its own
        if not self.seeds:
            raise SpecError("`seeds` selects no seeds")
        object.__setattr__(self, "precision", precision_name(self.precision))
        if self.precision not in PRECISIONS:
            raise SpecError(f"`precision` must be fp64 or fp32, got {self.precision!r}")
        if self.steps is not None:
            bounds.SAMPLER_STEPS.check(self.steps, "`steps`")

    def refuse(self, fields: tuple[str, ...], whose: str) -> None:
        """Refuse the fields of `fields` that are set (away from their defaults): they are for `whose`, which the
        spec's model is not."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        given = [f"`{f}`" for f in fields if getattr(self, f) != defaults[f]]
        if given:
            verb, it = ("is", "it") if len(given) == 1 else ("are", "them")
            raise SpecError(f"{', '.join(given)} {verb} for {whose}, not for {self.model}: drop {it}")


def open_generation(spec: GenerateSpec) -> tuple[Path, torch.device]:
    """The output folder (created, writable, not an input) and the device of a run, before the model loads."""
    check_overlap([("`model`", spec.model, "model")], [("`outdir`", spec.outdir)])
    return check_writable_dir(spec.outdir, "`outdir`"), resolve_device(spec.device)


def claim(spec: GenerateSpec, outdir: Path, dev: torch.device, settings: Mapping[str, Any]) -> None:
    """Check and claim `outdir` for this run; `settings`: the kind's own settings that change an output byte."""
    settings = dict(settings)
    if "precision" in settings:  # in place, so the record's keys keep their order
        settings["precision"] = RECORDED_PRECISION[settings["precision"]]
    claim_generated(outdir, spec.model, spec.seeds, spec.grid, dev.type, settings, spec.batch_size)


def seed_file(seed: int) -> str:
    return f"seed{seed:06d}.png"


def write_seed_images(spec: GenerateSpec, outdir: Path, make: Callable[[list[int]], np.ndarray],
                      what: str = "") -> list[Path]:
    """Write `outdir/seed<seed:06d>.png` for every seed (and `grid.png` with `grid`); returns the image paths.
    `make(seeds)`: the uint8 [n, R, R, 3] images of a batch of seeds; `what` ends each progress line."""
    seeds, step = spec.seeds, spec.batch_size
    paths, all_imgs = [], []
    with progress_bar(len(seeds), "generate") as bar:
        for i in range(0, len(seeds), step):
            chunk = seeds[i:i + step]
            imgs = make(chunk)
            paths += [write_png(outdir / seed_file(s), im) for s, im in zip(chunk, imgs)]
            if spec.grid:
                all_imgs.append(imgs)
            bar.update(len(chunk))
            status_line(log, bar, "generated %d / %d images%s", min(i + step, len(seeds)), len(seeds), what)
    if spec.grid:
        write_grid(outdir / GRID, np.concatenate(all_imgs))
    return paths
