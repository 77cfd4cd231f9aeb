"""Robustness evaluation: decode fingerprints from perturbed images and score them, one tidy row per image.

The core, `evaluate`, is independent of where images come from: it takes a *decoder* (img01 [N, 3, R, R] ->
logits [N, K]) and an *image source*, an iterable of `EvalBatch` (images in [0, 1], names, reference bits).
`folder_source` reads a folder of (fingerprinted) images; a generator source only has to yield batches of
generated images with the fingerprint(s) the generator was given, e.g.

    def generator_source(G, seeds, bits, batch_size=16):
        for i in range(0, len(seeds), batch_size):
            s = seeds[i:i + batch_size]
            img = (G(z_from_seeds(s), bits.expand(len(s), -1)) + 1) / 2   # [-1, 1] -> [0, 1]
            yield EvalBatch(img.clamp(0, 1), [f"seed{x:04d}" for x in s], bits.expand(len(s), -1))

and `run_evaluate` is the stega-model + image-folder front end used by `ganprint evaluate`.
Each row: image, set ("fingerprinted" or "clean"), attack, strength, spec, bit_accuracy, matches, p_value,
log10_p, detected (matches >= match_threshold(K, fpr)).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .attacks import AttackChain, parse_attacks
from .errors import GanprintError
from .fingerprints import bits_to_str, parse_bits
from .metrics.bits import count_matches, decode_bits, log10_p_value, match_threshold, p_value
from .utils import derive_seed

log = logging.getLogger(__name__)

SETS = ("fingerprinted", "clean")


@dataclass
class EvalBatch:
    """A batch to evaluate: images [N, 3, R, R] float in [0, 1], their names, reference bits [N, K] of 0/1."""

    images: torch.Tensor
    names: list[str]
    ref_bits: torch.Tensor


class FolderSource:
    """Batches of a folder (or packed data set) at `resolution` with reference bits from `reference(name)`.

    Images whose reference is None are skipped (counted in `.unreferenced`).
    """

    def __init__(self, data: str | Path, resolution: int, reference: Callable[[str], torch.Tensor | None],
                 batch_size: int = 64, celeba: bool = False, limit: int | None = None):
        from .data import open_image_dataset

        self.ds = open_image_dataset(data, resolution, celeba=celeba, skip_bad=True)
        self.reference, self.batch_size = reference, int(batch_size)
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
        from torch.utils.data import DataLoader, Subset

        from .data import collate

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
                imgs.append(b["img"][j])
                refs.append(r)
            if names:
                yield EvalBatch(torch.stack(imgs).float() / 255, names, torch.stack(refs))  # [N, 3, R, R]


def _spec_seed(spec: str) -> int:
    return int(hashlib.sha256(spec.encode()).hexdigest()[:8], 16)


def evaluate(decode: Callable[[torch.Tensor], torch.Tensor], source: Iterable[EvalBatch],
             attacks: list[AttackChain], fpr: float = 1e-6, set_name: str = "fingerprinted", seed: int = 0,
             device: str | torch.device = "cpu", n_keys: int = 1, progress: str | None = None) -> list[dict]:
    """Apply every attack chain to every batch of `source`, decode, and score against the reference bits.

    `decode(img01 on device) -> logits [N, K]`. Randomness of attack i on the batch starting at image j is a
    pure function of (seed, attack spec, set, j). Returns the tidy rows (see module docstring).
    """
    from tqdm import tqdm

    if not 0 < fpr < 1:
        raise GanprintError(f"--fpr must be in (0, 1), got {fpr}")
    rows: list[dict] = []
    total = len(source) if hasattr(source, "__len__") else None
    bar = tqdm(total=total, desc=progress or f"evaluate {set_name}", unit="img", dynamic_ncols=True,
               disable=not sys.stderr.isatty())
    start = 0
    set_id = SETS.index(set_name) if set_name in SETS else 99
    with torch.inference_mode():
        for batch in source:
            x = batch.images
            k = batch.ref_bits.shape[-1]
            thr = match_threshold(k, fpr, n_keys)
            for chain in attacks:
                xa = chain(x, seed=derive_seed(seed, _spec_seed(chain.spec), set_id, start))
                logits = decode(xa.to(device)).float().cpu()
                if logits.shape != batch.ref_bits.shape:
                    raise GanprintError(f"the decoder gives {tuple(logits.shape[1:])} bits per image but the "
                                        f"reference fingerprints have {k}; wrong model or fingerprint?")
                m = count_matches(decode_bits(logits), batch.ref_bits).numpy()
                pv = np.atleast_1d(p_value(m, k))
                lp = np.atleast_1d(log10_p_value(m, k))
                for j, name in enumerate(batch.names):
                    rows.append({"image": name, "set": set_name, "attack": chain.name, "strength": chain.strength,
                                 "spec": chain.spec, "bit_accuracy": float(m[j]) / k, "matches": int(m[j]),
                                 "p_value": float(pv[j]), "log10_p": float(lp[j]), "detected": bool(m[j] >= thr)})
            start += len(batch.names)
            bar.update(len(batch.names))
    bar.close()
    return rows


def _reference_lookup(k: int, fingerprint: str | None, embedded: str | Path | None,
                      clean: bool = False) -> Callable[[str], torch.Tensor | None]:
    """name -> [K] reference bits: the one --fingerprint, or the --embedded entry of the same name (a clean image
    without an entry is compared with the first fingerprint of the list: any fixed key is a valid null test)."""
    if fingerprint is not None:
        ref = parse_bits(str(fingerprint), k)
        return lambda name: ref
    from .api import read_fingerprint_txt

    table = {n: parse_bits(b, k) for n, b in read_fingerprint_txt(embedded, k).items()}
    if not table:
        raise GanprintError(f"--embedded {embedded} lists no fingerprints")
    first = table[sorted(table)[0]]

    def lookup(name: str) -> torch.Tensor | None:
        hit = table.get(name, table.get(str(PurePosixPath(name).with_suffix(".png"))))
        return hit if hit is not None or not clean else first

    return lookup


def run_evaluate(model: str | Path, data: str | Path, outdir: str | Path, embedded: str | Path | None = None,
                 fingerprint: str | None = None, attacks: str | list[str] | tuple[str, ...] = ("standard",),
                 fpr: float = 1e-6, clean: str | Path | None = None, batch_size: int = 64, device: str = "auto",
                 seed: int = 0, resolution: int | None = None, celeba: bool = False, limit: int | None = None,
                 n_keys: int = 1) -> dict:
    """`ganprint evaluate`: robustness of a stega model's fingerprints in the images under `data`.

    Writes OUTDIR/results.jsonl (tidy rows), summary.csv / summary.md (per set x attack x strength),
    plots (PNG), report.md and report.html, eval.json (the configuration and headline numbers); returns
    the eval.json dict. The clean strength ("none") is always included.
    """
    from . import report
    from .checkpoint import load_export
    from .utils import resolve_device

    if (fingerprint is None) == (embedded is None):
        raise GanprintError("pass exactly one of --fingerprint (one reference for all images) or --embedded FILE")
    if batch_size < 1:
        raise GanprintError(f"--batch-size must be >= 1, got {batch_size}")
    if not 0 < fpr < 1:
        raise GanprintError(f"--fpr must be in (0, 1), got {fpr}")
    chains = parse_attacks(["none", *([attacks] if isinstance(attacks, str) else list(attacks))])
    dev = resolve_device(device)
    module, config, _ = load_export(model, kind=("stega", "stega-decoder"), device=dev)
    res, k = int(config["resolution"]), int(config["fingerprint_length"])
    if resolution is not None and int(resolution) != res:
        raise GanprintError(f"--resolution {resolution} does not match the model's {res}; omit it or pass {res}")
    dec = module.dec

    src = FolderSource(data, res, _reference_lookup(k, fingerprint, embedded), batch_size, celeba, limit)
    rows = evaluate(dec, src, chains, fpr, "fingerprinted", seed, dev, n_keys)
    if not rows:
        raise GanprintError(f"no image under --data {data} has a reference fingerprint in --embedded {embedded}")
    if src.unreferenced:
        log.warning("%d images under %s have no entry in %s and were skipped", len(src.unreferenced), data, embedded)
    clean_src = None
    if clean is not None:
        clean_src = FolderSource(clean, res, _reference_lookup(k, fingerprint, embedded, clean=True), batch_size,
                                 celeba, limit)
        rows += evaluate(dec, clean_src, chains, fpr, "clean", seed, dev, n_keys)
    for s in (src, clean_src):
        for name, err in (s.skipped if s else []):
            log.warning("skipped unreadable image %s: %s", name, err)

    meta = {"model": str(model), "data": str(data), "clean": str(clean) if clean else None,
            "reference": f"fingerprint:{bits_to_str(parse_bits(fingerprint, k))}" if fingerprint else
            f"embedded:{embedded}", "resolution": res, "fingerprint_length": k, "fpr": fpr, "n_keys": n_keys,
            "match_threshold": match_threshold(k, fpr, n_keys), "attacks": [c.spec for c in chains], "seed": seed,
            "images": len(src) - len(src.unreferenced) - len(src.skipped),
            "clean_images": (len(clean_src) - len(clean_src.skipped)) if clean_src else 0}
    result = report.write_outputs(outdir, rows, meta)
    log.info("evaluate: %d rows for %d attack settings written to %s (report: %s)", len(rows), len(chains), outdir,
             Path(outdir) / "report.html")
    return result
