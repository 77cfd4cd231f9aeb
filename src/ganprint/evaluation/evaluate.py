"""Robustness evaluation: decode fingerprints from perturbed images and score them, one tidy row per image.

The core, `evaluate`, is independent of where images come from: it takes a *decoder* (img01 [N, 3, R, R] ->
logits [N, K]) and an *image source*, an iterable of `EvalBatch` (images in [0, 1], names, reference bits).
`FolderSource` reads a folder of (fingerprinted) images; `GeneratorSource` generates images from seeds with a
generator export (stylegan2-G, scalable-G, scalable-G-issued), each image a pure function of its seed, exactly
the image `ganprint generate` writes for that seed. `evaluate_model_attacks` perturbs the generator's weights
(`ganprint.model_attacks`) and scores the images of each perturbed copy; its rows carry attack names like
`model:quantize`, so the summary, plots and report treat them like image attacks.

`run_evaluate` is the front end used by `ganprint evaluate` (a stega or scalable decoder, and a folder or a
generator). Each row: image, set ("fingerprinted" or "clean"), attack, strength, spec, bit_accuracy, matches,
p_value, log10_p, detected (matches >= match_threshold(K, fpr)).
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

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import bits_to_str, parse_bits
from ganprint.core.seeds import derive_seed
from ganprint.core.stats import count_matches, decode_bits, log10_p_value, match_threshold, p_value
from ganprint.diffusion.model import EXPORT_KIND as DIFFUSION_KIND
from ganprint.diffusion.source import load_diffusion_generator
from ganprint.perturb.attacks import AttackChain, parse_attacks

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
        from ganprint.data.folders import open_image_dataset

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

        from ganprint.data.folders import collate

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


DECODER_KINDS = ("stega", "stega-decoder", "scalable-decoder")
GENERATOR_KINDS = ("stylegan2-G", "scalable-G", "scalable-G-issued", DIFFUSION_KIND)


def load_decoder(model: str | Path, device: str | torch.device = "cpu"
                 ) -> tuple[Callable[[torch.Tensor], torch.Tensor], int, int, str]:
    """Load `--model` (a stega model, a stega decoder or a scalable decoder) as (decode, resolution, K, kind),
    where decode(img01 [N, 3, R, R] in [0, 1]) -> logits [N, K]."""
    from ganprint.core.artifacts import load_export

    module, config, meta = load_export(model, kind=DECODER_KINDS, device=device)
    kind = meta["ganprint.kind"]
    if kind == "scalable-decoder":
        def decode(x01: torch.Tensor) -> torch.Tensor:
            return module(x01 * 2 - 1)[1]  # StyleGAN2-family decoders read [-1, 1]; [1] = fingerprint logits

        return decode, int(config["resolution"]), int(config["fingerprint_bits"]), kind
    return module.dec, int(config["resolution"]), int(config["fingerprint_length"]), kind


def load_generator(generator: str | Path, fingerprint: str | None, k: int, device: str | torch.device = "cpu"
                   ) -> tuple[torch.nn.Module, str, torch.Tensor | None, int]:
    """Load `--generator` as (G, kind, reference bits [K] or None, resolution).

    The reference is `--fingerprint` for a plain stylegan2-G (fingerprinted through its training data, so it
    must be given) and optional for a scalable-G (None: each seed's own fingerprint c is the reference); an issued
    model's is its built-in fingerprint, and --fingerprint is refused.
    """
    from ganprint.core.artifacts import load_export, read_metadata
    from ganprint.scalable.generate import FINGERPRINT_META

    if read_metadata(generator)["ganprint.kind"] == DIFFUSION_KIND:  # DDIM, 50 steps, as `ganprint generate`
        return load_diffusion_generator(generator, fingerprint, k, device)
    G, cfg, meta = load_export(generator, kind=GENERATOR_KINDS, device=device)
    kind = meta["ganprint.kind"]
    if kind == "stylegan2-G":
        if fingerprint is None:
            raise GanprintError(f"--generator {generator} is a plain stylegan2-G model, fingerprinted through its "
                                "training data: pass --fingerprint BITS, the fingerprint embedded in that data")
        return G, kind, parse_bits(str(fingerprint), k), int(G.img_resolution)
    gk = int(cfg["fingerprint_bits"])
    if gk != k:
        raise GanprintError(f"--generator {generator} makes {gk}-bit fingerprints but --model decodes {k} bits; "
                            "pass the decoder trained with this generator")
    if kind == "scalable-G-issued":
        if fingerprint is not None:
            raise GanprintError(f"--generator {generator} is an issued model with its fingerprint built in: drop "
                                "--fingerprint (its own fingerprint is the reference)")
        return G, kind, parse_bits(meta[FINGERPRINT_META], k), int(cfg["resolution"])
    ref = parse_bits(str(fingerprint), k) if fingerprint is not None else None
    return G, kind, ref, int(cfg["resolution"])


class GeneratorSource:
    """Batches of images generated from `seeds` by G (a loaded stylegan2-G, scalable-G or scalable-G-issued, or a
    ganprint.diffusion.source.DiffusionSampler).

    Each image is the uint8 image `ganprint generate` writes for its seed (float64 networks, per-seed inputs,
    so it does not depend on the batch), mapped to [0, 1]; names are `seed<seed:06d>.png` as there. The
    reference is `reference` [K] for every image; a scalable-G given none uses each seed's own fingerprint c.
    G itself is never modified.
    """

    def __init__(self, G: torch.nn.Module, kind: str, seeds: list[int], reference: torch.Tensor | None = None,
                 batch_size: int = 16, device: str | torch.device = "cpu"):
        import copy

        if kind not in GENERATOR_KINDS:
            raise GanprintError(f"a generator source needs one of {', '.join(GENERATOR_KINDS)}, got {kind!r}")
        if reference is None and kind != "scalable-G":
            raise GanprintError(f"a {kind} generator takes no per-seed fingerprint: give a reference (--fingerprint)")
        if not seeds:
            raise GanprintError("--seeds selects no seeds")
        self.G, self.kind, self.seeds, self.reference = G, kind, list(seeds), reference
        self.batch_size, self.device = int(batch_size), device
        p = next(G.parameters())
        self._G64 = G if p.dtype == torch.float64 else copy.deepcopy(G).double().eval()  # generate's precision

    def with_generator(self, G: torch.nn.Module) -> "GeneratorSource":
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
        if self.kind == DIFFUSION_KIND:  # a ganprint.diffusion.source.DiffusionSampler
            return self._G64.generate(chunk, self.device), self.reference[None].expand(n, -1)
        if self.kind == "stylegan2-G":
            from ganprint.gan.generate import generate_seeds

            return generate_seeds(self._G64, chunk, self.device, n), self.reference[None].expand(n, -1)
        from ganprint.scalable.generate import generate_batch  # what `ganprint generate` writes, without the files

        return generate_batch(self._G64, chunk, self.device, issued=self.kind == "scalable-G-issued",
                              fixed=self.reference)


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


def evaluate_model_attacks(decode: Callable[[torch.Tensor], torch.Tensor], source: GeneratorSource,
                           settings: list, fpr: float = 1e-6, seed: int = 0, device: str | torch.device = "cpu",
                           n_keys: int = 1) -> list[dict]:
    """Score the images that perturbed copies of `source`'s generator make for the same seeds.

    `settings` are `model_attacks.ModelAttackSetting`s; each gives rows like `evaluate`'s (no image attack) with
    attack 'model:<name>', its strength and spec 'model:<name>:<strength>'. The randomness of setting s (weight
    noise) is a pure function of (seed, s.spec). The source's generator is never modified.
    """
    none = parse_attacks("none")
    rows: list[dict] = []
    for st in settings:
        G = st(source.G, seed=derive_seed(seed, _spec_seed(st.spec)))
        part = evaluate(decode, source.with_generator(G), none, fpr, "fingerprinted", seed, device, n_keys,
                        progress=f"evaluate {st.spec}")
        for r in part:
            r.update(attack=st.name, strength=st.strength, spec=st.spec)
        rows += part
        log.info("model attack %s: mean bit accuracy %.4f", st.spec,
                 float(np.mean([r["bit_accuracy"] for r in part])))
    return rows


def _reference_lookup(k: int, fingerprint: str | None, embedded: str | Path | None,
                      clean: bool = False) -> Callable[[str], torch.Tensor | None]:
    """name -> [K] reference bits: the one --fingerprint, or the --embedded entry of the same name (a clean image
    without an entry is compared with the first fingerprint of the list: any fixed key is a valid null test)."""
    if fingerprint is not None:
        ref = parse_bits(str(fingerprint), k)
        return lambda name: ref
    from ganprint.artificial.embed import read_fingerprint_txt

    table = {n: parse_bits(b, k) for n, b in read_fingerprint_txt(embedded, k).items()}
    if not table:
        raise GanprintError(f"--embedded {embedded} lists no fingerprints")
    first = table[sorted(table)[0]]

    def lookup(name: str) -> torch.Tensor | None:
        hit = table.get(name, table.get(str(PurePosixPath(name).with_suffix(".png"))))
        return hit if hit is not None or not clean else first

    return lookup


def run_evaluate(model: str | Path, data: str | Path | None, outdir: str | Path, embedded: str | Path | None = None,
                 fingerprint: str | None = None, attacks: str | list[str] | tuple[str, ...] = ("standard",),
                 fpr: float = 1e-6, clean: str | Path | None = None, batch_size: int = 64, device: str = "auto",
                 seed: int = 0, resolution: int | None = None, celeba: bool = False, limit: int | None = None,
                 n_keys: int = 1, generator: str | Path | None = None, seeds: str | list[int] | None = None,
                 model_attacks: str | list[str] | tuple[str, ...] | None = None,
                 scale_search: str | None = None) -> dict:
    """`ganprint evaluate`: robustness of the fingerprints in the images under `data`, or in the images a
    `generator` makes for `seeds` (then also under the `model_attacks` on its weights; default "standard").

    `model` is a stega model / decoder export or a scalable decoder. Writes OUTDIR/results.jsonl (tidy rows),
    summary.csv / summary.md (per set x attack x strength), plots (PNG), report.md and report.html, eval.json
    (the configuration and headline numbers); returns the eval.json dict. The clean strength ("none") is always
    included. `scale_search` ("auto" or fractions, `ganprint.resync`) decodes every image at several candidate
    scales and keeps the most confident decoding.
    """
    from ganprint.core.runtime import resolve_device
    from ganprint.evaluation import report
    from ganprint.evaluation.model_attacks import parse_model_attacks
    from ganprint.evaluation.scale_search import ScaleSearch, parse_scales

    if (data is None) == (generator is None):
        raise GanprintError("pass exactly one of --data (a folder of fingerprinted images) or --generator "
                            "(a generator export, with --seeds)")
    if generator is not None:
        bad = [f for f, v in (("--embedded", embedded), ("--celeba", celeba)) if v]
        if bad:
            raise GanprintError(f"{' and '.join(bad)} apply to --data folders; with --generator the reference is "
                                "--fingerprint (or the scalable/issued model's own fingerprints): drop "
                                f"{' and '.join(bad)}")
        if seeds is None:
            raise GanprintError("--generator needs --seeds, e.g. --seeds 0-99")
    else:
        if seeds is not None:
            raise GanprintError("--seeds goes with --generator; to evaluate a folder (--data) drop --seeds")
        if model_attacks is not None and parse_model_attacks(model_attacks):
            raise GanprintError("--model-attacks perturbs a generator's weights and needs --generator; with --data "
                                "drop --model-attacks (or pass --model-attacks none)")
        if (fingerprint is None) == (embedded is None):
            raise GanprintError("pass exactly one of --fingerprint (one reference for all images) or --embedded FILE")
    if outdir is None:
        raise GanprintError("--outdir is required")
    if batch_size < 1:
        raise GanprintError(f"--batch-size must be >= 1, got {batch_size}")
    if not 0 < fpr < 1:
        raise GanprintError(f"--fpr must be in (0, 1), got {fpr}")
    chains = parse_attacks(["none", *([attacks] if isinstance(attacks, str) else list(attacks))])
    settings = parse_model_attacks("standard" if model_attacks is None else model_attacks) if generator else []
    dev = resolve_device(device)
    dec, res, k, _ = load_decoder(model, dev)
    scales = parse_scales(scale_search)
    if scales is not None:
        dec = ScaleSearch(dec, scales)
    if resolution is not None and int(resolution) != res:
        raise GanprintError(f"--resolution {resolution} does not match the model's {res}; omit it or pass {res}")

    if generator is not None:
        from ganprint.core.seeds import parse_seeds

        seed_list = parse_seeds(seeds) if isinstance(seeds, str) else [int(x) for x in seeds]
        G, gkind, ref, gres = load_generator(generator, fingerprint, k, dev)
        if gres != res:
            raise GanprintError(f"--generator {generator} makes {gres}-px images but --model {model} decodes "
                                f"{res}-px ones; pass the decoder of this generator's resolution")
        if clean is not None and ref is None:
            raise GanprintError("--clean needs one reference fingerprint, but this scalable-G gives each seed its "
                                "own: pass --fingerprint to generate every image with one fingerprint")
        src = GeneratorSource(G, gkind, seed_list, ref, batch_size, dev)
        rows = evaluate(dec, src, chains, fpr, "fingerprinted", seed, dev, n_keys)
        rows += evaluate_model_attacks(dec, src, settings, fpr, seed, dev, n_keys)
        clean_ref = (lambda name: ref) if ref is not None else None
        reference = ("per-seed fingerprints of the scalable-G" if ref is None else
                     f"{'issued' if gkind == 'scalable-G-issued' else 'fingerprint'}:{bits_to_str(ref)}")
        n_images = len(seed_list)
    else:
        src = FolderSource(data, res, _reference_lookup(k, fingerprint, embedded), batch_size, celeba, limit)
        rows = evaluate(dec, src, chains, fpr, "fingerprinted", seed, dev, n_keys)
        if not rows:
            raise GanprintError(f"no image under --data {data} has a reference fingerprint in --embedded {embedded}")
        if src.unreferenced:
            log.warning("%d images under %s have no entry in %s and were skipped", len(src.unreferenced), data,
                        embedded)
        clean_ref = _reference_lookup(k, fingerprint, embedded, clean=True) if clean is not None else None
        reference = (f"fingerprint:{bits_to_str(parse_bits(fingerprint, k))}" if fingerprint else
                     f"embedded:{embedded}")
        n_images = len(src) - len(src.unreferenced) - len(src.skipped)
    clean_src = None
    if clean is not None:
        clean_src = FolderSource(clean, res, clean_ref, batch_size, celeba, limit)
        rows += evaluate(dec, clean_src, chains, fpr, "clean", seed, dev, n_keys)
    for s in (src, clean_src):
        for name, err in (getattr(s, "skipped", None) or []):
            log.warning("skipped unreadable image %s: %s", name, err)

    meta = {"model": str(model), "data": str(data) if data is not None else None,
            "generator": str(generator) if generator is not None else None,
            "seeds": (seeds if isinstance(seeds, str) else list(seed_list)) if generator is not None else None,
            "clean": str(clean) if clean else None, "reference": reference, "resolution": res,
            "fingerprint_length": k, "fpr": fpr, "n_keys": n_keys, "match_threshold": match_threshold(k, fpr, n_keys),
            "scale_search": list(scales) if scales is not None else None,
            "attacks": [c.spec for c in chains], "model_attacks": [st.spec for st in settings], "seed": seed,
            "images": n_images, "clean_images": (len(clean_src) - len(clean_src.skipped)) if clean_src else 0}
    result = report.write_outputs(outdir, rows, meta)
    log.info("evaluate: %d rows for %d attack and %d model-attack settings written to %s (report: %s)", len(rows),
             len(chains), len(settings), outdir, Path(outdir) / "report.html")
    return result
