"""Where evaluated images come from, and the models that read them.

An image source is an iterable of `EvalBatch` (images in [0, 1], names, reference bits). `FolderSource` reads a
folder (or packed data set) of fingerprinted images; `GeneratorSource` generates images from seeds with a
generator export (stylegan2-G, scalable-G, scalable-G-issued), each image a pure function of its seed, exactly
the image `ganprint generate` writes for that seed. `load_decoder` / `load_generator` open the exports.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ganprint.artificial.records import read_fingerprint_txt
from ganprint.core.artifacts import load_export, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import parse_bits
from ganprint.data.folders import collate, open_image_dataset
from ganprint.diffusion.model import EXPORT_KIND as DIFFUSION_KIND
from ganprint.diffusion.source import load_diffusion_generator
from ganprint.latent.model import EXPORT_KIND as LATENT_KIND
from ganprint.latent.source import load_latent_generator
from ganprint.gan.generate import generate_seeds
from ganprint.nets.scalable import fingerprint_length_of
from ganprint.scalable.generate import FINGERPRINT_META, generate_batch


@dataclass
class EvalBatch:
    """A batch to evaluate: images [N, 3, R, R] float in [0, 1], their names, reference bits [N, K] of 0/1."""

    images: torch.Tensor
    names: list[str]
    ref_bits: torch.Tensor


class FolderSource:
    """Batches of a folder (or packed data set) at `resolution` with reference bits from `reference(name)`.

    Images whose reference is None are skipped (counted in `.unreferenced`). With `keep_size` every image comes
    at its own size, one per batch, and the decoder's view is taken after the attacks
    (`ganprint.inference.fullsize.decoder_view`), as on an image found in the wild.
    """

    def __init__(self, data: str | Path, resolution: int, reference: Callable[[str], torch.Tensor | None],
                 batch_size: int = 64, celeba: bool = False, limit: int | None = None, keep_size: bool = False):
        self.ds = open_image_dataset(data, resolution, celeba=celeba, skip_bad=True, keep_size=keep_size)
        self.keep_size = keep_size
        self.reference, self.batch_size = reference, 1 if keep_size else int(batch_size)
        n = len(self.ds)
        self.indices = list(range(n if limit is None else min(n, int(limit))))
        self.unreferenced: list[str] = []
        self.skipped: list[tuple[str, str]] = []

    def name(self, i: int) -> str:
        rel = getattr(self.ds, "relpath", None)
        return rel(i) if rel is not None else f"{i:08d}"

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[EvalBatch]:
        loader = DataLoader(Subset(self.ds, self.indices), batch_size=self.batch_size, shuffle=False,
                            num_workers=0, collate_fn=collate)
        for b in loader:
            self.skipped += [(self.name(i), e) for i, e in b["skipped"]]
            names, imgs, refs = [], [], []
            for j, i in enumerate(b["index"].tolist()):
                nm = self.name(i)
                r = self.reference(nm)
                if r is None:
                    self.unreferenced.append(nm)
                    continue
                names.append(nm)
                imgs.append(torch.from_numpy(b["full"][j]).permute(2, 0, 1) if self.keep_size else b["img"][j])
                refs.append(r)
            if names:
                yield EvalBatch(torch.stack(imgs).float() / 255, names, torch.stack(refs))  # [N, 3, R, R] or [1, 3, H, W]


DECODER_KINDS = ("stega", "stega-decoder", "scalable-decoder")
GENERATOR_KINDS = ("stylegan2-G", "scalable-G", "scalable-G-issued", DIFFUSION_KIND, LATENT_KIND)


def load_decoder(model: str | Path, device: str | torch.device = "cpu"
                 ) -> tuple[Callable[[torch.Tensor], torch.Tensor], int, int, str]:
    """Load `model` (a stega model, a stega decoder or a scalable decoder) as (decode, resolution, K, kind),
    where decode(img01 [N, 3, R, R] in [0, 1]) -> logits [N, K]."""
    module, config, meta = load_export(model, kind=DECODER_KINDS, device=device)
    kind = meta["ganprint.kind"]
    if kind == "scalable-decoder":
        def decode(x01: torch.Tensor) -> torch.Tensor:
            return module(x01 * 2 - 1)[1]  # StyleGAN2-family decoders read [-1, 1]; [1] = fingerprint logits

        return decode, int(config["resolution"]), fingerprint_length_of(config), kind
    return module.dec, int(config["resolution"]), int(config["fingerprint_length"]), kind


def load_generator(generator: str | Path, fingerprint: str | None, k: int, device: str | torch.device = "cpu"
                   ) -> tuple[torch.nn.Module, str, torch.Tensor | None, int]:
    """Load `generator` as (G, kind, reference bits [K] or None, resolution).

    The reference is `fingerprint` for a plain stylegan2-G (fingerprinted through its training data, so it
    must be given) and optional for a scalable-G (None: each seed's own fingerprint c is the reference); an issued
    model's is its built-in fingerprint, and a `fingerprint` is refused.
    """
    if read_metadata(generator)["ganprint.kind"] == DIFFUSION_KIND:  # DDIM, 50 steps, as `ganprint generate`
        return load_diffusion_generator(generator, fingerprint, k, device)
    if read_metadata(generator)["ganprint.kind"] == LATENT_KIND:  # likewise
        return load_latent_generator(generator, fingerprint, k, device)
    G, cfg, meta = load_export(generator, kind=GENERATOR_KINDS, device=device)
    kind = meta["ganprint.kind"]
    if kind == "stylegan2-G":
        if fingerprint is None:
            raise GanprintError(f"`generator` {generator} is a plain stylegan2-G model, fingerprinted through its "
                                "training data: pass `fingerprint` BITS, the fingerprint embedded in that data")
        return G, kind, parse_bits(str(fingerprint), k), int(G.img_resolution)
    gk = fingerprint_length_of(cfg)
    if gk != k:
        raise GanprintError(f"`generator` {generator} makes {gk}-bit fingerprints but `model` decodes {k} bits; "
                            "pass the decoder trained with this generator")
    if kind == "scalable-G-issued":
        if fingerprint is not None:
            raise GanprintError(f"`generator` {generator} is an issued model with its fingerprint built in: drop "
                                "`fingerprint` (its own fingerprint is the reference)")
        return G, kind, parse_bits(meta[FINGERPRINT_META], k), int(cfg["resolution"])
    ref = parse_bits(str(fingerprint), k) if fingerprint is not None else None
    return G, kind, ref, int(cfg["resolution"])


class GeneratorSource:
    """Batches of images generated from `seeds` by G (a loaded stylegan2-G, scalable-G or scalable-G-issued).

    Each image is the uint8 image `ganprint generate` writes for its seed (float64 networks, per-seed inputs,
    so it does not depend on the batch), mapped to [0, 1]; names are `seed<seed:06d>.png` as there. The
    reference is `reference` [K] for every image; a scalable-G given none uses each seed's own fingerprint c.
    G itself is never modified.
    """

    def __init__(self, G: torch.nn.Module, kind: str, seeds: list[int], reference: torch.Tensor | None = None,
                 batch_size: int = 16, device: str | torch.device = "cpu"):
        if kind not in GENERATOR_KINDS:
            raise GanprintError(f"a generator source needs one of {', '.join(GENERATOR_KINDS)}, got {kind!r}")
        if reference is None and kind != "scalable-G":
            raise GanprintError(f"a {kind} generator takes no per-seed fingerprint: give a reference (`fingerprint`)")
        if not seeds:
            raise GanprintError("`seeds` selects no seeds")
        self.G, self.kind, self.seeds, self.reference = G, kind, list(seeds), reference
        self.batch_size, self.device = int(batch_size), device
        p = next(G.parameters())
        self._G64 = G if p.dtype == torch.float64 else copy.deepcopy(G).double().eval()  # generate's precision

    def with_generator(self, G: torch.nn.Module) -> GeneratorSource:
        """The same seeds and reference from another (e.g. perturbed) generator of the same kind."""
        return GeneratorSource(G, self.kind, self.seeds, self.reference, self.batch_size, self.device)

    def __len__(self) -> int:
        return len(self.seeds)

    def __iter__(self) -> Iterator[EvalBatch]:
        for i in range(0, len(self.seeds), self.batch_size):
            chunk = self.seeds[i:i + self.batch_size]
            imgs, bits = self._generate(chunk)  # uint8 [n, R, R, 3], [n, K]
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255  # [n, 3, R, R]
            yield EvalBatch(x, [f"seed{s:06d}.png" for s in chunk], bits)

    @torch.no_grad()
    def _generate(self, chunk: list[int]) -> tuple[np.ndarray, torch.Tensor]:
        n = len(chunk)
        if self.kind in (DIFFUSION_KIND, LATENT_KIND):  # a DiffusionSampler or a ganprint.latent.source.LatentSampler
            return self._G64.generate(chunk, self.device), self.reference[None].expand(n, -1)
        if self.kind == "stylegan2-G":
            return generate_seeds(self._G64, chunk, self.device, n), self.reference[None].expand(n, -1)
        # what `ganprint generate` writes, without the files
        return generate_batch(self._G64, chunk, self.device, issued=self.kind == "scalable-G-issued",
                              fixed=self.reference)


def reference_lookup(k: int, fingerprint: str | None, embedded: str | Path | None,
                      clean: bool = False) -> Callable[[str], torch.Tensor | None]:
    """name -> [K] reference bits: the one `fingerprint`, or the `embedded` entry of the same name (a clean image
    without an entry is compared with the first fingerprint of the list: any fixed key is a valid null test)."""
    if fingerprint is not None:
        ref = parse_bits(str(fingerprint), k)
        return lambda name: ref
    table = {n: parse_bits(b, k) for n, b in read_fingerprint_txt(embedded, k).items()}
    if not table:
        raise GanprintError(f"`embedded` {embedded} lists no fingerprints")
    first = table[min(table)]

    def lookup(name: str) -> torch.Tensor | None:
        hit = table.get(name, table.get(str(PurePosixPath(name).with_suffix(".png"))))
        return hit if hit is not None or not clean else first

    return lookup
