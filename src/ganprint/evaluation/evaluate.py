"""Robustness evaluation: decode fingerprints from perturbed images and score them, one tidy row per image.

The core, `evaluate`, is independent of where images come from: it takes a `Scoring` (a *decoder*, img01
[N, 3, R, R] -> logits [N, K], the attacks and the decision) and an *image source* (`ganprint.evaluation.sources`:
a folder, or a generator and seeds).
`evaluate_model_attacks` perturbs the generator's weights (`ganprint.evaluation.model_attacks`) and scores the
images of each perturbed copy; its rows carry attack names like `model:quantize`, so the summary, plots and
report treat them like image attacks.

`run_evaluate` runs one `EvaluateSpec` (what `ganprint evaluate` and `ganprint.evaluate` are asked for: a stega or
scalable decoder, and a folder or a generator). Each row: image, set ("fingerprinted" or "clean"), attack,
strength, spec, bit_accuracy, matches, p_value, log10_p, detected (matches >= match_threshold(K, fpr)).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.files import check_writable_dir
from ganprint.core.fingerprints import bits_to_str, parse_bits
from ganprint.core.paths import OutputFolder, check_overlap, file_identity
from ganprint.core.progress import progress_bar
from ganprint.core.runtime import resolve_device
from ganprint.core.specs import Spec, SpecError
from ganprint.core.seeds import check_seed_list, derive_seed, parse_seeds, seeds_text
from ganprint.core.stats import count_matches, decode_bits, log10_p_value, match_threshold, p_value, smallest_usable_fpr
from ganprint.evaluation import baselines, report
from ganprint.evaluation.baselines import parse_baselines
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
from ganprint.inference.fullsize import decoder_view, tiled_logits
from ganprint.perturb.attacks import AttackChain, parse_attacks
from ganprint.perturb.scale_search import ScaleSearch, min_confidence_for, parse_scales, search_angles

log = logging.getLogger(__name__)

__all__ = ["DECODER_KINDS", "GENERATOR_KINDS", "EvalBatch", "EvaluateSpec", "FolderSource", "GeneratorSource",
           "Scoring", "evaluate", "evaluate_model_attacks", "load_decoder", "load_generator", "run_evaluate"]

SETS = ("fingerprinted", "clean")
PLOTS = ("bit_accuracy.png", "model_attacks.png", "roc.png")  # outputs that are not data (image listings skip them)


def _spec_seed(spec: str) -> int:
    return int(hashlib.sha256(spec.encode()).hexdigest()[:8], 16)


@dataclass(frozen=True)
class Scoring:
    """How images are scored, shared by every `evaluate` call of one run: the decoder, `decode(img01 on device) ->
    logits [N, K]`, the attack chains, the decision's `fpr` over `keys` fingerprints, the attacks' `seed` and the
    device the decoder runs on."""

    decode: Callable[[torch.Tensor], torch.Tensor]
    attacks: list[AttackChain]
    fpr: float = 1e-6
    seed: int = 0
    device: str | torch.device = "cpu"
    keys: int = 1

    def __post_init__(self) -> None:
        bounds.FPR.check(self.fpr, "`fpr`")
        bounds.KEYS.check(self.keys, "`keys`")


def evaluate(scoring: Scoring, source: Iterable[EvalBatch], set_name: str = "fingerprinted",
             progress: str | None = None) -> list[dict]:
    """Apply every attack chain of `scoring` to every batch of `source`, decode, and score against the reference
    bits. Randomness of attack i on the batch starting at image j is a pure function of (seed, attack spec, set, j).
    Returns the tidy rows (see module docstring)."""
    rows: list[dict] = []
    total = len(source) if hasattr(source, "__len__") else None
    bar = progress_bar(total, progress or f"evaluate {set_name}")
    start = 0
    set_id = SETS.index(set_name) if set_name in SETS else 99
    with torch.inference_mode():
        for batch in source:
            x = batch.images
            k = batch.ref_bits.shape[-1]
            thr = match_threshold(k, scoring.fpr, scoring.keys)
            for chain in scoring.attacks:
                xa = chain(x, seed=derive_seed(scoring.seed, _spec_seed(chain.spec), set_id, start))
                logits = scoring.decode(xa.to(scoring.device)).float().cpu()
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


def evaluate_model_attacks(scoring: Scoring, source: GeneratorSource,
                           settings: list[ModelAttackSetting]) -> list[dict]:
    """Score the images that perturbed copies of `source`'s generator make for the same seeds.

    `settings` are `model_attacks.ModelAttackSetting`s; each gives rows like `evaluate`'s (no image attack, whatever
    the attacks of `scoring`) with attack 'model:<name>', its strength and spec 'model:<name>:<strength>'. The
    randomness of setting s (weight noise) is a pure function of (seed, s.spec). The source's generator is never
    modified.
    """
    plain = dataclasses.replace(scoring, attacks=parse_attacks("none"))
    rows: list[dict] = []
    for st in settings:
        G = st(source.G, seed=derive_seed(scoring.seed, _spec_seed(st.spec)))
        part = evaluate(plain, source.with_generator(G), "fingerprinted", progress=f"evaluate {st.spec}")
        for r in part:
            r.update(attack=st.name, strength=st.strength, spec=st.spec)
        rows += part
        log.info("model attack %s: mean bit accuracy %.4f", st.spec,
                 float(np.mean([r["bit_accuracy"] for r in part])))
    return rows


PathLike = str | Path
Specs = str | list[str] | tuple[str, ...]


@dataclass(frozen=True)
class EvaluateSpec(Spec):
    """What one `ganprint evaluate` is asked to do; made, it is a valid combination (see `check`).

    `model` is a stega model / decoder export or a scalable decoder. The fingerprinted images are those under
    `data`, each compared with `fingerprint` or its `embedded` entry, or those a `generator` makes for `seeds`
    (then also under the `model_attacks` on its weights; default "standard"). `attacks` are image attack specs
    (`ganprint.perturb.attacks`); the clean strength "none" is always added. `clean` images give the measured
    false-positive rate and the ROC. `scale_search` ("auto" or fractions, `ganprint.perturb.scale_search`) decodes
    every image at several candidate scales and keeps the most confident decoding. `tiles` n > 1 (with `keep_size`)
    reads photos embedded with `embed`'s `tiles` n, averaging the n x n tiles (`ganprint.inference.fullsize`).
    `resolution`, when given, must be the model's. The report goes to `outdir`.
    """

    model: PathLike
    outdir: PathLike
    data: PathLike | None = None
    generator: PathLike | None = None
    seeds: str | list[int] | None = None
    embedded: PathLike | None = None
    fingerprint: str | None = None
    attacks: Specs = ("standard",)
    model_attacks: Specs | None = None
    fpr: float = 1e-6
    keys: int = 1
    clean: PathLike | None = None
    limit: int | None = None
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0
    celeba: bool = False
    scale_search: str | None = None
    resolution: int | None = None
    keep_size: bool = False
    baselines: Specs = ()
    tiles: int = 1

    def check(self) -> None:
        """Refuse values out of bounds and combinations that do not make one evaluation, naming the fields."""
        if self.outdir is None:
            raise SpecError("`outdir` is required")
        bounds.KEYS.check(self.keys, "`keys`")
        bounds.SEED.check(self.seed, "`seed`")
        if self.limit is not None:
            bounds.IMAGES.check(self.limit, "`limit`")
        # read-only, and first: an output placed inside an input is the error to see, whatever else is wrong
        check_overlap([("`model`", self.model, "model"), ("`data`", self.data, "data"),
                       ("`generator`", self.generator, "generator"), ("`embedded`", self.embedded, "list"),
                       ("`clean`", self.clean, "clean data")], [("`outdir`", self.outdir)])
        if (self.data is None) == (self.generator is None):
            raise SpecError("pass exactly one of `data` (a folder of fingerprinted images) or `generator` "
                            "(a generator export, with `seeds`)")
        if self.generator is not None:
            self._check_generator()
        else:
            self._check_folder()
        bounds.BATCH.check(self.batch_size, "`batch_size`")
        bounds.FPR.check(self.fpr, "`fpr`")
        bounds.TILES.check(self.tiles, "`tiles`")
        if self.tiles > 1 and not self.keep_size:
            raise SpecError("`tiles` reads photos at their own size as tiles: add `keep_size`")
        if self.baseline_list() and (self.clean is None or not self.keep_size):
            raise SpecError("`baselines` watermark the `clean` images at their own size: pass `clean` (the "
                            "originals) and `keep_size`")

    def _check_generator(self) -> None:
        bad = " and ".join(f"`{f}`" for f, v in (("embedded", self.embedded), ("celeba", self.celeba)) if v)
        if bad:
            raise SpecError(f"{bad} apply to `data` folders; with `generator` the reference is `fingerprint` (or "
                            f"the scalable/issued model's own fingerprints): drop {bad}")
        if self.seeds is None:
            raise SpecError("`generator` needs `seeds`, e.g. `seeds` 0-99")
        self.seed_list()  # refuses malformed or too many seeds now, before any model is read
        self.model_attack_settings()

    def _check_folder(self) -> None:
        if self.seeds is not None:
            raise SpecError("`seeds` goes with `generator`; to evaluate a folder (`data`) drop `seeds`")
        if self.model_attacks is not None and parse_model_attacks(self.model_attacks):
            raise SpecError("`model_attacks` perturbs a generator's weights and needs `generator`; with `data` "
                            "drop `model_attacks` (or pass `model_attacks` none)")
        if (self.fingerprint is None) == (self.embedded is None):
            raise SpecError("pass exactly one of `fingerprint` (one reference for all images) or `embedded` FILE")

    def baseline_list(self) -> list[str]:
        """The `invisible-watermark` methods to run beside ganprint (none by default)."""
        return parse_baselines(self.baselines)

    def seed_list(self) -> list[int] | None:
        """The seeds as a list (None without a generator)."""
        if self.seeds is None:
            return None
        return parse_seeds(self.seeds, "`seeds`") if isinstance(self.seeds, str) else \
            check_seed_list(self.seeds, "`seeds`")

    def attack_chains(self) -> list[AttackChain]:
        """The image attacks, after the clean strength "none"."""
        return parse_attacks(["none", *([self.attacks] if isinstance(self.attacks, str) else list(self.attacks))])

    def model_attack_settings(self) -> list[ModelAttackSetting]:
        """The model attacks of a generator's run ("standard" when not given); none for a folder."""
        if self.generator is None:
            return []
        return parse_model_attacks("standard" if self.model_attacks is None else self.model_attacks)


@dataclass
class _Scored:
    """The fingerprinted part of a run: its rows and what the clean set and the report need to know."""

    rows: list[dict]
    source: FolderSource | GeneratorSource
    clean_reference: Callable[[str], torch.Tensor | None] | None  # the clean set's reference, None: it has none
    reference: str  # how the reference was given, for the report
    n_images: int
    seeds: list[int] | None = None


def _score_generator(score: Scoring, spec: EvaluateSpec, k: int, res: int,
                     settings: list[ModelAttackSetting]) -> _Scored:
    """Rows of the images `spec.generator` makes for its seeds, under the image attacks and the model attacks."""
    seed_list = spec.seed_list()
    G, gkind, ref, gres = load_generator(spec.generator, spec.fingerprint, k, score.device)
    if gres != res:
        raise GanprintError(f"`generator` {spec.generator} makes {gres}-px images but `model` {spec.model} decodes "
                            f"{res}-px ones; pass the decoder of this generator's resolution")
    if spec.clean is not None and ref is None:
        raise GanprintError("`clean` needs one reference fingerprint, but this scalable-G gives each seed its "
                            "own: pass `fingerprint` to generate every image with one fingerprint")
    src = GeneratorSource(G, gkind, seed_list, ref, spec.batch_size, score.device)
    rows = evaluate(score, src)
    rows += evaluate_model_attacks(score, src, settings)
    reference = ("per-seed fingerprints of the scalable-G" if ref is None else
                 f"{'issued' if gkind == 'scalable-G-issued' else 'fingerprint'}:{bits_to_str(ref)}")
    return _Scored(rows, src, (lambda name: ref) if ref is not None else None, reference, len(seed_list),
                   seed_list)


def _score_folder(score: Scoring, spec: EvaluateSpec, k: int, res: int) -> _Scored:
    """Rows of the fingerprinted images under `spec.data`, each compared with its reference."""
    fingerprint, embedded = spec.fingerprint, spec.embedded
    src = FolderSource(spec.data, res, reference_lookup(k, fingerprint, embedded), spec.batch_size, spec.celeba,
                       spec.limit, spec.keep_size)
    rows = evaluate(score, src)
    if not rows:
        raise GanprintError(f"no image under `data` {spec.data} has a reference fingerprint in `embedded` {embedded}"
                            if embedded is not None else f"`data` {spec.data} holds no readable image")
    if src.unreferenced:
        log.warning("%d images under %s have no entry in %s and were skipped", len(src.unreferenced), spec.data,
                    embedded)
    clean_ref = reference_lookup(k, fingerprint, embedded, clean=True) if spec.clean is not None else None
    reference = (f"fingerprint:{bits_to_str(parse_bits(fingerprint, k))}" if fingerprint else
                 f"embedded:{embedded}")
    return _Scored(rows, src, clean_ref, reference, len(src) - len(src.unreferenced) - len(src.skipped))


def _score_baseline(spec: EvaluateSpec, method: str, chains: list[AttackChain], res: int) -> tuple[list[dict],
                                                                                                      float]:
    """Rows of `method` of invisible-watermark on the `clean` images (marked, and as they are), and its mean PSNR."""
    k = baselines.BITS
    score = Scoring(baselines.decoder(method), chains, spec.fpr, spec.seed, "cpu", 1)
    bits = baselines.message(spec.seed)
    rows = []
    for marked, set_name in ((True, "fingerprinted"), (False, "clean")):
        src = FolderSource(spec.clean, res, lambda name: torch.zeros(k), 1, False, spec.limit, True)
        base = baselines.BaselineSource(src, method, bits, marked)
        rows += [{"method": method, **r} for r in evaluate(score, base, set_name, f"{method} {set_name}")]
        if marked:
            psnr = float(np.mean(base.psnr)) if base.psnr else float("nan")
    return rows, psnr


def _identity(spec: EvaluateSpec, chains: list[AttackChain], settings: list[ModelAttackSetting],
              device: torch.device) -> dict:
    """Every setting that changes an output byte, as the output folder's record keeps it (keyed by field name)."""
    seeds = spec.seed_list()
    return {"model": file_identity(spec.model), "data": file_identity(spec.data),
            "generator": file_identity(spec.generator), "seeds": None if seeds is None else seeds_text(seeds),
            "embedded": file_identity(spec.embedded), "fingerprint": spec.fingerprint,
            "attacks": [c.spec for c in chains], "model_attacks": [st.spec for st in settings], "fpr": spec.fpr,
            "keys": spec.keys, "clean": file_identity(spec.clean), "limit": spec.limit,
            "batch_size": spec.batch_size, "device": device.type, "seed": spec.seed, "celeba": bool(spec.celeba),
            "scale_search": spec.scale_search, "resolution": spec.resolution,
            **({"keep_size": True} if spec.keep_size else {}), **({"tiles": spec.tiles} if spec.tiles != 1 else {}),
            **({"baselines": spec.baseline_list()} if spec.baseline_list() else {})}


def _open_output(spec: EvaluateSpec, chains: list[AttackChain], settings: list[ModelAttackSetting],
                 device: torch.device) -> OutputFolder:
    """Refuse an `outdir` that cannot be written or holds another run (the spec refused one placed in an input)."""
    check_writable_dir(spec.outdir, "`outdir`")
    identity = _identity(spec, chains, settings, device)
    return OutputFolder(spec.outdir, "`outdir`", "evaluate", identity, labels={k: f"`{k}`" for k in identity},
                        not_data=PLOTS).check()


def run_evaluate(spec: EvaluateSpec) -> dict:
    """Robustness of the fingerprints that `spec` names (see `EvaluateSpec`), written as a report.

    Writes OUTDIR/results.jsonl (tidy rows), summary.csv / summary.md (per set x attack x strength), plots (PNG),
    report.md and report.html, eval.json (the configuration and headline numbers); returns the eval.json dict.
    `outdir` may not be, hold or lie inside an input, and takes only a re-run of the same evaluation
    (`ganprint.core.paths.OutputFolder`; its record marks the plots as not data).
    """
    chains, settings = spec.attack_chains(), spec.model_attack_settings()
    dev = resolve_device(spec.device)
    folder = _open_output(spec, chains, settings, dev)
    dec, res, k, _ = load_decoder(spec.model, dev)
    fpr, n_keys = spec.fpr, spec.keys
    if match_threshold(k, fpr, n_keys) > k:  # bit accuracy is still measured; the report says so in bold too
        log.warning("`fpr` %g is too small for %d bits: no image can be detected at it (the smallest usable `fpr` "
                    "is %.3g); bit accuracies are measured all the same", fpr, k, smallest_usable_fpr(k, n_keys))
    scales = parse_scales(spec.scale_search)
    if spec.resolution is not None and int(spec.resolution) != res:
        raise GanprintError(f"`resolution` {spec.resolution} does not match the model's {res}; omit it or pass {res}")
    n = spec.tiles
    tiled = dec if n == 1 else (lambda v: tiled_logits(dec, v, n))
    read = ScaleSearch(tiled, scales, min_confidence_for(n), angles=search_angles(spec.scale_search)) \
        if scales is not None else tiled
    score = Scoring(lambda x: read(decoder_view(x, res * n)), chains, fpr, spec.seed, dev, n_keys)
    part = (_score_generator(score, spec, k, res, settings) if spec.generator is not None else
            _score_folder(score, spec, k, res))
    rows, clean_src = part.rows, None
    if spec.clean is not None:
        clean_src = FolderSource(spec.clean, res, part.clean_reference, spec.batch_size, spec.celeba, spec.limit,
                                 spec.keep_size)
        rows += evaluate(score, clean_src, "clean")
    baseline_psnr = {}
    for method in spec.baseline_list():
        got, baseline_psnr[method] = _score_baseline(spec, method, chains, res)
        rows += got
    if baseline_psnr:
        rows = [{"method": "ganprint", **r} if "method" not in r else r for r in rows]
    for s in (part.source, clean_src):
        for name, err in (getattr(s, "skipped", None) or []):
            log.warning("skipped unreadable image %s: %s", name, err)
    meta = {"model": str(spec.model), "data": str(spec.data) if spec.data is not None else None,
            "generator": str(spec.generator) if spec.generator is not None else None,
            "seeds": None if spec.generator is None else spec.seeds if isinstance(spec.seeds, str) else part.seeds,
            "clean": str(spec.clean) if spec.clean else None, "reference": part.reference, "resolution": res,
            "fingerprint_length": k, "fpr": fpr, "n_keys": n_keys, "match_threshold": match_threshold(k, fpr, n_keys),
            "scale_search": list(scales) if scales is not None else None,
            "attacks": [c.spec for c in chains], "model_attacks": [st.spec for st in settings], "seed": spec.seed,
            "images": part.n_images, "clean_images": (len(clean_src) - len(clean_src.skipped)) if clean_src else 0,
            **({"keep_size": True} if spec.keep_size else {}), **({"tiles": n} if n != 1 else {}),
            **({"baselines": baseline_psnr, "baseline_bits": baselines.BITS} if baseline_psnr else {})}
    folder.claim()
    result = report.write_outputs(spec.outdir, rows, meta)
    log.info("evaluate: %d rows for %d attack and %d model-attack settings written to %s (report: %s)", len(rows),
             len(chains), len(settings), spec.outdir, Path(spec.outdir) / "report.html")
    return result
