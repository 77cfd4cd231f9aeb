"""Robustness evaluation: decode fingerprints from perturbed images and score them, one tidy row per image.

The core, `evaluate`, is independent of where images come from: it takes a *decoder* (img01 [N, 3, R, R] ->
logits [N, K]) and an *image source* (`ganprint.evaluation.sources`: a folder, or a generator and seeds).
`evaluate_model_attacks` perturbs the generator's weights (`ganprint.evaluation.model_attacks`) and scores the
images of each perturbed copy; its rows carry attack names like `model:quantize`, so the summary, plots and
report treat them like image attacks.

`run_evaluate` is the front end used by `ganprint evaluate` (a stega or scalable decoder, and a folder or a
generator). Each row: image, set ("fingerprinted" or "clean"), attack, strength, spec, bit_accuracy, matches,
p_value, log10_p, detected (matches >= match_threshold(K, fpr)).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.files import check_writable_dir
from ganprint.core.fingerprints import bits_to_str, parse_bits
from ganprint.core.paths import OutputFolder, check_overlap, file_identity
from ganprint.core.runtime import resolve_device
from ganprint.core.seeds import check_seed_list, derive_seed, parse_seeds, seeds_text
from ganprint.core.stats import count_matches, decode_bits, log10_p_value, match_threshold, p_value, smallest_usable_fpr
from ganprint.evaluation import report
from ganprint.evaluation.model_attacks import ModelAttackSetting, parse_model_attacks
from ganprint.evaluation.sources import (
    DECODER_KINDS,
    GENERATOR_KINDS,
    EvalBatch,
    FolderSource,
    GeneratorSource,
    load_decoder,
    load_generator,
    reference_lookup,
)
from ganprint.perturb.attacks import AttackChain, parse_attacks
from ganprint.perturb.scale_search import ScaleSearch, parse_scales

log = logging.getLogger(__name__)

__all__ = ["DECODER_KINDS", "GENERATOR_KINDS", "EvalBatch", "FolderSource", "GeneratorSource", "evaluate",
           "evaluate_model_attacks", "load_decoder", "load_generator", "run_evaluate"]

SETS = ("fingerprinted", "clean")
PLOTS = ("bit_accuracy.png", "model_attacks.png", "roc.png")  # outputs that are not data (image listings skip them)


def _spec_seed(spec: str) -> int:
    return int(hashlib.sha256(spec.encode()).hexdigest()[:8], 16)


def evaluate(decode: Callable[[torch.Tensor], torch.Tensor], source: Iterable[EvalBatch],
             attacks: list[AttackChain], fpr: float = 1e-6, set_name: str = "fingerprinted", seed: int = 0,
             device: str | torch.device = "cpu", n_keys: int = 1, progress: str | None = None) -> list[dict]:
    """Apply every attack chain to every batch of `source`, decode, and score against the reference bits.

    `decode(img01 on device) -> logits [N, K]`. Randomness of attack i on the batch starting at image j is a
    pure function of (seed, attack spec, set, j). Returns the tidy rows (see module docstring).
    """
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
                           settings: list[ModelAttackSetting], fpr: float = 1e-6, seed: int = 0,
                           device: str | torch.device = "cpu",
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


@dataclass
class _Scoring:
    """What every `evaluate` call of one run shares."""

    decode: Callable[[torch.Tensor], torch.Tensor]
    chains: list[AttackChain]
    fpr: float
    seed: int
    device: torch.device
    n_keys: int

    def rows(self, source: Iterable[EvalBatch], set_name: str = "fingerprinted") -> list[dict]:
        return evaluate(self.decode, source, self.chains, self.fpr, set_name, self.seed, self.device, self.n_keys)


@dataclass
class _Scored:
    """The fingerprinted part of a run: its rows and what the clean set and the report need to know."""

    rows: list[dict]
    source: FolderSource | GeneratorSource
    clean_reference: Callable[[str], torch.Tensor | None] | None  # the clean set's reference, None: it has none
    reference: str  # how the reference was given, for the report
    n_images: int
    seeds: list[int] | None = None


def _check_flags(data, generator, seeds, embedded, fingerprint, celeba, model_attacks, outdir, batch_size,
                 fpr) -> None:
    """Refuse flag combinations that do not make one evaluation, and an --outdir that cannot be written, naming the
    flags."""
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
    bounds.BATCH.check(batch_size, "--batch-size")
    bounds.FPR.check(fpr, "--fpr")
    check_writable_dir(outdir, "--outdir")


def _score_generator(score: _Scoring, model, generator, seeds, fingerprint, k: int, res: int, settings,
                     batch_size: int, clean) -> _Scored:
    """Rows of the images `generator` makes for `seeds`, under the image attacks and the model attacks."""
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else check_seed_list(seeds)
    G, gkind, ref, gres = load_generator(generator, fingerprint, k, score.device)
    if gres != res:
        raise GanprintError(f"--generator {generator} makes {gres}-px images but --model {model} decodes "
                            f"{res}-px ones; pass the decoder of this generator's resolution")
    if clean is not None and ref is None:
        raise GanprintError("--clean needs one reference fingerprint, but this scalable-G gives each seed its "
                            "own: pass --fingerprint to generate every image with one fingerprint")
    src = GeneratorSource(G, gkind, seed_list, ref, batch_size, score.device)
    rows = score.rows(src)
    rows += evaluate_model_attacks(score.decode, src, settings, score.fpr, score.seed, score.device, score.n_keys)
    reference = ("per-seed fingerprints of the scalable-G" if ref is None else
                 f"{'issued' if gkind == 'scalable-G-issued' else 'fingerprint'}:{bits_to_str(ref)}")
    return _Scored(rows, src, (lambda name: ref) if ref is not None else None, reference, len(seed_list),
                   seed_list)


def _score_folder(score: _Scoring, data, embedded, fingerprint, k: int, res: int, batch_size: int, celeba: bool,
                  limit: int | None, clean) -> _Scored:
    """Rows of the fingerprinted images under `data`, each compared with its reference."""
    src = FolderSource(data, res, reference_lookup(k, fingerprint, embedded), batch_size, celeba, limit)
    rows = score.rows(src)
    if not rows:
        raise GanprintError(f"no image under --data {data} has a reference fingerprint in --embedded {embedded}")
    if src.unreferenced:
        log.warning("%d images under %s have no entry in %s and were skipped", len(src.unreferenced), data,
                    embedded)
    clean_ref = reference_lookup(k, fingerprint, embedded, clean=True) if clean is not None else None
    reference = (f"fingerprint:{bits_to_str(parse_bits(fingerprint, k))}" if fingerprint else
                 f"embedded:{embedded}")
    return _Scored(rows, src, clean_ref, reference, len(src) - len(src.unreferenced) - len(src.skipped))


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
    included. `scale_search` ("auto" or fractions, `ganprint.perturb.scale_search`) decodes every image at
    several candidate scales and keeps the most confident decoding. `outdir` may not be, hold or lie inside an
    input, and takes only a re-run of the same evaluation (`ganprint.core.paths.OutputFolder`; its record marks the
    plots as not data).
    """
    bounds.KEYS.check(n_keys, "--keys")
    bounds.SEED.check(seed, "--seed")
    if limit is not None:
        bounds.IMAGES.check(limit, "--limit")
    check_overlap([("--model", model, "model"), ("--data", data, "data"), ("--generator", generator, "generator"),
                   ("--embedded", embedded, "list"), ("--clean", clean, "clean data")], [("--outdir", outdir)])
    _check_flags(data, generator, seeds, embedded, fingerprint, celeba, model_attacks, outdir, batch_size, fpr)
    chains = parse_attacks(["none", *([attacks] if isinstance(attacks, str) else list(attacks))])
    settings = parse_model_attacks("standard" if model_attacks is None else model_attacks) if generator else []
    dev = resolve_device(device)
    dec, res, k, _ = load_decoder(model, dev)
    folder = OutputFolder(outdir, "--outdir", "evaluate", {
        "model": file_identity(model), "data": file_identity(data), "generator": file_identity(generator),
        "seeds": None if seeds is None else seeds_text(parse_seeds(seeds) if isinstance(seeds, str) else
                                                       [int(x) for x in seeds]),
        "embedded": file_identity(embedded), "fingerprint": fingerprint, "attacks": [c.spec for c in chains],
        "model_attacks": [st.spec for st in settings], "fpr": fpr, "keys": n_keys, "clean": file_identity(clean),
        "limit": limit, "batch_size": batch_size, "device": dev.type, "seed": seed, "celeba": bool(celeba),
        "scale_search": scale_search, "resolution": resolution}, labels={}, not_data=PLOTS).check()
    if match_threshold(k, fpr, n_keys) > k:  # bit accuracy is still measured; the report says so in bold too
        log.warning("--fpr %g is too small for %d bits: no image can be detected at it (the smallest usable --fpr "
                    "is %.3g); bit accuracies are measured all the same", fpr, k, smallest_usable_fpr(k, n_keys))
    scales = parse_scales(scale_search)
    if resolution is not None and int(resolution) != res:
        raise GanprintError(f"--resolution {resolution} does not match the model's {res}; omit it or pass {res}")
    score = _Scoring(ScaleSearch(dec, scales) if scales is not None else dec, chains, fpr, seed, dev, n_keys)
    if generator is not None:
        part = _score_generator(score, model, generator, seeds, fingerprint, k, res, settings, batch_size, clean)
    else:
        part = _score_folder(score, data, embedded, fingerprint, k, res, batch_size, celeba, limit, clean)
    rows, clean_src = part.rows, None
    if clean is not None:
        clean_src = FolderSource(clean, res, part.clean_reference, batch_size, celeba, limit)
        rows += score.rows(clean_src, "clean")
    for s in (part.source, clean_src):
        for name, err in (getattr(s, "skipped", None) or []):
            log.warning("skipped unreadable image %s: %s", name, err)
    meta = {"model": str(model), "data": str(data) if data is not None else None,
            "generator": str(generator) if generator is not None else None,
            "seeds": (seeds if isinstance(seeds, str) else part.seeds) if generator is not None else None,
            "clean": str(clean) if clean else None, "reference": part.reference, "resolution": res,
            "fingerprint_length": k, "fpr": fpr, "n_keys": n_keys, "match_threshold": match_threshold(k, fpr, n_keys),
            "scale_search": list(scales) if scales is not None else None,
            "attacks": [c.spec for c in chains], "model_attacks": [st.spec for st in settings], "seed": seed,
            "images": part.n_images, "clean_images": (len(clean_src) - len(clean_src.skipped)) if clean_src else 0}
    folder.claim()
    result = report.write_outputs(outdir, rows, meta)
    log.info("evaluate: %d rows for %d attack and %d model-attack settings written to %s (report: %s)", len(rows),
             len(chains), len(settings), outdir, Path(outdir) / "report.html")
    return result
