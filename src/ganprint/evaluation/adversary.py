"""Attacks by an adversary on the fingerprint: forgery (framing a model's holder) and removal, measured.

Attack specs (the `adversary` field, a list), each `name` then `:key=v1,v2,...` parts (every combination is run):

- `average:n=10,100,1000:psnr=35,40,45` forgery by residual averaging, no decoder needed: the mean of the
  high-pass residuals (image minus a Gaussian blur of `sigma`, default 1 px) of the first `n` fingerprinted
  images is scaled to the target PSNR and added to each clean photo;
- `invert:eps=2,4,8` forgery by decoder inversion (white box): PGD under an L-inf budget of `eps` 8-bit levels
  pushes each clean photo towards the reference key (`steps`, default 40; `images=M`: only the first M photos,
  as PGD costs `steps` decoder passes per image; 0, the default: all);
- `remove:eps=1,2,4,8` removal (white box): PGD under the same budget pushes each fingerprinted image away from
  its key (ascends the bit loss); `steps` and `images` as for invert;
- `query-remove:eps=2,4,8:samples=10` removal through the decoder's ONNX file alone (the `onnx` field; None: the
  model's decoder exported at run time): `steps` (default 20) ascent steps on the bit loss whose gradient is
  estimated from `samples` antithetic pairs of random sign probes of `sigma` levels (default 4) through ONNX
  Runtime's logits, 2 x `samples` x `steps` queries per image; `images` as for remove;
- `edit:level=2,4,8` black-box removal by strong combined edits: the robustness suite's `combined` chain (crop >
  blur > JPEG > noise, `ganprint metrics attacks`) at each level, image i's noise seeded by i; `images` as for
  remove;
- `regenerate:t=50,100,200:steps=10` black-box removal by regeneration through a diffusion model (the
  `diffusion` field, a `train-diffusion` export at the decoder's resolution): noise to step t of its training
  schedule, then about `steps` DDIM steps back; `images` as for remove.

Every attacked image is rounded to 8 bits, as a file would be, before it is decoded. Rows (results.jsonl): image,
set (fingerprinted / clean: no attack; forged / removed), attack, strength (target PSNR, or eps in levels), n,
spec, psnr (measured against the unattacked image), bit_accuracy, matches, p_value, log10_p, detected. A forged
row that is detected is a false attribution. Not covered here: collusion of issued scalable models (it needs a
registry; docs/threat-model.md), an oracle attacker.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_json, atomic_write_text, check_writable_dir
from ganprint.core.fingerprints import bits_to_str, parse_bits
from ganprint.core.paths import OutputFolder, check_overlap, file_identity
from ganprint.core.runtime import resolve_device
from ganprint.core.specs import Spec, SpecError
from ganprint.core.stats import count_matches, decode_bits, log10_p_value, match_threshold, p_value
from ganprint.evaluation import report
from ganprint.evaluation.blackbox import QueryBudget, Regenerator, onnx_session, query_remove
from ganprint.evaluation.defence import make_defence, parse_defence
from ganprint.evaluation.quality import psnr
from ganprint.evaluation.sources import FolderSource, load_decoder
from ganprint.perturb.attacks import ATTACKS
from ganprint.perturb.ops import gaussian_blur

log = logging.getLogger(__name__)

Decode = Callable[[torch.Tensor], torch.Tensor]

# name -> (the swept parameter, {parameter: default}); every parameter is given as key=v1,v2,...
ADVERSARY_SPECS: dict[str, tuple[str, dict[str, float]]] = {
    "average": ("psnr", {"n": 100.0, "psnr": 40.0, "sigma": 1.0}),
    "invert": ("eps", {"eps": 4.0, "steps": 40.0, "images": 0.0}),
    "remove": ("eps", {"eps": 4.0, "steps": 40.0, "images": 0.0}),
    "query-remove": ("eps", {"eps": 4.0, "steps": 20.0, "samples": 10.0, "sigma": 4.0, "images": 0.0}),
    "edit": ("level", {"level": 4.0, "images": 0.0}),
    "regenerate": ("t", {"t": 100.0, "steps": 10.0, "images": 0.0}),
}
# Ranges beyond "finite and > 0" (`images` may be 0), by parameter or by "attack:parameter": budgets in 8-bit
# levels, the combined chain's 0..10 scale, loop counts that end, and query-remove's probes of whole levels.
LIMITS: dict[str, tuple[float, float]] = {"eps": (0, 255), "sigma": (0, 255), "level": (0, 10), "steps": (0, 10_000),
                                          "samples": (0, 1000), "query-remove:sigma": (1, 255)}
REMOVALS = ("remove", "query-remove", "edit", "regenerate")  # attacks on the fingerprinted images (set 'removed')
STANDARD = ["average:n=1,10,100,1000:psnr=35,38,42,45", "invert:eps=1,2,4,8", "remove:eps=1,2,4,8,16"]


@dataclass(frozen=True)
class Setting:
    """One attack setting: a name and its parameters."""

    name: str
    params: dict[str, float] = field(default_factory=dict)

    @property
    def strength(self) -> float:
        return self.params[ADVERSARY_SPECS[self.name][0]]

    @property
    def spec(self) -> str:
        return self.name + "".join(f":{k}={v:g}" for k, v in sorted(self.params.items()))


def parse_adversary(specs: str | list[str] | tuple[str, ...]) -> list[Setting]:
    """Parse `adversary` specs ('standard' or e.g. 'average:n=10,100:psnr=40') into settings; refuse bad ones."""
    out: list[Setting] = []
    for whole in [specs] if isinstance(specs, str) else list(specs):
        if whole.strip() == "standard":
            out += parse_adversary(STANDARD)
            continue
        name, *parts = whole.strip().split(":")
        if name not in ADVERSARY_SPECS:
            raise GanprintError(f"`adversary` {whole!r}: unknown attack {name!r}; use one of "
                                f"{', '.join(ADVERSARY_SPECS)} or 'standard'")
        defaults = ADVERSARY_SPECS[name][1]
        grid: dict[str, list[float]] = {k: [v] for k, v in defaults.items()}
        for p in parts:
            key, eq, vals = p.partition("=")
            if not eq or key not in defaults:
                raise GanprintError(f"`adversary` {whole!r}: {p!r} is not key=v1,v2 with key one of "
                                    f"{', '.join(defaults)}")
            try:
                grid[key] = [float(v) for v in vals.split(",")]
            except ValueError:
                raise GanprintError(f"`adversary` {whole!r}: {vals!r} is not a list of numbers") from None
            if any(not math.isfinite(v) or v < 0 or (v == 0 and key != "images") for v in grid[key]):
                raise GanprintError(f"`adversary` {whole!r}: {key} must be > 0, got {vals}")
            _check_range(whole, name, key, grid[key], vals)
        keys = list(grid)
        out += [Setting(name, dict(zip(keys, combo))) for combo in itertools.product(*(grid[k] for k in keys))]
    return out


def _check_range(whole: str, name: str, key: str, values: list[float], text: str) -> None:
    lo, hi = LIMITS.get(f"{name}:{key}", LIMITS.get(key, (0, math.inf)))
    if any(v > hi or v < lo for v in values):
        raise GanprintError(f"`adversary` {whole!r}: {key} must be in [{lo:g}, {hi:g}], got {text}")


def high_pass(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """The residual of [N, 3, H, W] images: the image minus its Gaussian blur."""
    return x - gaussian_blur(x, sigma)


def estimate_pattern(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """The forger's fingerprint estimate: the mean high-pass residual of images carrying one fingerprint, [3, H, W]."""
    return high_pass(images, sigma).mean(0)


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels, as a written PNG would be."""
    return (x.clamp(0, 1) * 255).round() / 255


def paste_pattern(clean: torch.Tensor, pattern: torch.Tensor, target_psnr: float) -> torch.Tensor:
    """Add `pattern`, scaled so that its own energy alone gives `target_psnr` dB, to every clean image (8-bit)."""
    mse = float(pattern.pow(2).mean())
    if mse == 0:
        return clean.clone()
    gain = math.sqrt(10 ** (-target_psnr / 10) / mse)
    return to_8bit(clean + gain * pattern)


def pgd(decode: Decode, x: torch.Tensor, bits: torch.Tensor, eps: float, steps: int, towards: bool) -> torch.Tensor:
    """L-inf PGD (signed gradient, step 2.5 eps / steps) on the bit loss of `decode`: towards `bits` (forgery) or
    away from them (removal). Returns the 8-bit image, within eps of x."""
    loss_fn = torch.nn.BCEWithLogitsLoss()
    alpha, target = 2.5 * eps / max(steps, 1), bits.float()
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(decode(adv).float(), target.expand(len(adv), -1))
            (grad,) = torch.autograd.grad(loss, adv)
        step = -alpha * grad.sign() if towards else alpha * grad.sign()
        adv = (x + (adv.detach() + step - x).clamp(-eps, eps)).clamp(0, 1)
    out = to_8bit(adv)
    return x + (out - x).clamp(-eps - 0.5 / 255, eps + 0.5 / 255)  # rounding may not leave the budget by a level


@dataclass
class Scorer:
    """Decode and score images against one reference key at one FPR."""

    decode: Decode
    ref: torch.Tensor  # [K] 0/1
    fpr: float
    batch_size: int = 256

    def rows(self, images: torch.Tensor, names: list[str], base: torch.Tensor, set_name: str,
             setting: Setting | None) -> list[dict]:
        """One row per image: its scores and its PSNR against `base` (the unattacked image)."""
        k = self.ref.numel()
        thr = match_threshold(k, self.fpr)
        out = []
        for i in range(0, len(images), self.batch_size):
            xb = images[i:i + self.batch_size]
            with torch.inference_mode():
                m = count_matches(decode_bits(self.decode(xb).float()), self.ref.expand(len(xb), -1)).numpy()
            q = psnr(xb, base[i:i + self.batch_size]).numpy()
            pv, lp = np.atleast_1d(p_value(m, k)), np.atleast_1d(log10_p_value(m, k))
            for j in range(len(xb)):
                out.append({"image": names[i + j], "set": set_name,
                            "attack": setting.name if setting else "none",
                            "strength": setting.strength if setting else 0.0,
                            "n": int(setting.params["n"]) if setting and "n" in setting.params else None,
                            "spec": setting.spec if setting else "none",
                            "psnr": float(q[j]) if setting else None,  # no attack: no distortion to measure
                            "bit_accuracy": float(m[j]) / k, "matches": int(m[j]), "p_value": float(pv[j]),
                            "log10_p": float(lp[j]), "detected": bool(m[j] >= thr)})
        return out


def _load(folder: str | Path, res: int, ref: torch.Tensor, limit: int | None, field: str
          ) -> tuple[torch.Tensor, list[str]]:
    src = FolderSource(folder, res, lambda name: ref, 256, False, limit)
    imgs, names = [], []
    for b in src:
        imgs.append(b.images)
        names += b.names
    if not names:
        raise GanprintError(f"{field} {folder} holds no readable image")
    return torch.cat(imgs), names


@dataclass
class Tools:
    """What the attacks beyond the PyTorch decoder run, loaded on first use: the ONNX Runtime session of the
    decoder file (query-remove) and the diffusion model (regenerate)."""

    model: str | Path
    onnx: str | Path | None = None
    diffusion: str | Path | None = None
    device: torch.device = torch.device("cpu")
    _session: object = None
    _regen: Regenerator | None = None

    def session(self):
        if self._session is None:
            self._session = onnx_session(self.onnx, self.model)
        return self._session

    def regenerator(self) -> Regenerator:
        if self.diffusion is None:
            raise GanprintError("`adversary` regenerate needs `diffusion`: a `train-diffusion` export")
        if self._regen is None:
            self._regen = Regenerator.load(self.diffusion, self.device)
        return self._regen


def attack_rows(score: Scorer, setting: Setting, marked: torch.Tensor, clean: torch.Tensor,
                names: dict[str, list[str]], defence=None, tools: Tools | None = None) -> list[dict]:
    """Rows of one setting: forged clean photos (average, invert) or cleaned fingerprinted images (removals)."""
    p = setting.params
    if setting.name == "average":
        n = int(p["n"])
        if n > len(marked):
            raise GanprintError(f"`adversary` {setting.spec}: n={n} but `data` holds only {len(marked)} images")
        attacked = paste_pattern(clean, estimate_pattern(marked[:n], p["sigma"]), p["psnr"])
        base, set_name, nm = clean, "forged", names["clean"]
    else:
        m = int(p["images"]) or None
        base, set_name, nm = ((clean[:m], "forged", names["clean"][:m]) if setting.name == "invert" else
                              (marked[:m], "removed", names["marked"][:m]))
        attacked = _attacked(score, setting, base, tools)
    rows = score.rows(attacked, nm, base, set_name, setting)
    if defence is not None:
        defence.apply(rows, attacked, score.ref)
    return rows


def _attacked(score: Scorer, setting: Setting, x: torch.Tensor, tools: Tools | None) -> torch.Tensor:
    """The images of an attack that works image by image (all but averaging), a batch at a time."""
    p, bs = setting.params, score.batch_size
    if setting.name in ("invert", "remove"):
        return torch.cat([pgd(score.decode, x[i:i + bs], score.ref, p["eps"] / 255, int(p["steps"]),
                              setting.name == "invert") for i in range(0, len(x), bs)])
    if setting.name == "edit":
        chain = ATTACKS["combined"]
        return torch.cat([chain(x[i:i + 1], p["level"], i) for i in range(len(x))])
    tools = tools or Tools(model="")
    if setting.name == "query-remove":
        budget = QueryBudget(p["eps"], int(p["steps"]), int(p["samples"]), p["sigma"])
        session = tools.session()
        return torch.cat([query_remove(session, x[i:i + bs], score.ref, budget, seed=i)
                          for i in range(0, len(x), bs)])
    return tools.regenerator()(x, int(p["t"]), int(p["steps"]))


@dataclass(frozen=True)
class AdversarySpec(Spec):
    """What `ganprint adversary` is asked to do.

    `data`: images fingerprinted with `fingerprint` (what a forger collects; what a remover wants to clean);
    `clean`: real photos never fingerprinted (the forger's canvases; their unattacked rows give the measured
    false-positive rate); `adversary`: attack specs (see the module doc; a string is one spec). `limit` caps the
    clean photos and the images PGD removal attacks (averaging still reads every image of `data` it needs).
    `defence`: a spec of `ganprint.evaluation.defence` (e.g. 'agree:blur=1'), scored beside the plain decision
    (column detected_defended); None: none. `defence_reference`: images the registry fingerprinted itself with the
    same key (the `energy` defence's pattern). `onnx`: the decoder's ONNX file that query-remove queries (None: the
    model's decoder, exported at run time); `diffusion`: the `train-diffusion` export that regenerate runs.
    """

    model: str | Path
    data: str | Path
    clean: str | Path
    outdir: str | Path
    fingerprint: str
    adversary: tuple[str, ...] = ("standard",)
    fpr: float = 1e-6
    limit: int | None = None
    device: str = "cpu"
    defence: str | None = None
    defence_reference: str | Path | None = None
    onnx: str | Path | None = None
    diffusion: str | Path | None = None

    def __post_init__(self) -> None:
        # a list (from the CLI's repeatable option, or a caller) is kept as a tuple: the spec stays hashable
        specs = (self.adversary,) if isinstance(self.adversary, str) else tuple(self.adversary)
        object.__setattr__(self, "adversary", specs)
        super().__post_init__()

    def check(self) -> None:
        bounds.FPR.check(self.fpr, "`fpr`")
        if self.limit is not None:
            bounds.IMAGES.check(self.limit, "`limit`")
        parse_adversary(self.adversary)
        if self.defended and parse_defence(self.defence)[0] == "energy" and self.defence_reference is None:
            raise SpecError(f"`defence` {self.defence!r} needs `defence_reference`: a folder of images the registry "
                            "fingerprinted itself with the same key")
        names = {s.name for s in self.settings}
        if "regenerate" in names and self.diffusion is None:
            raise SpecError("`adversary` regenerate needs `diffusion`: a `train-diffusion` export at the decoder's "
                            "resolution")
        for fld, need in (("onnx", "query-remove"), ("diffusion", "regenerate")):
            if getattr(self, fld) is not None and need not in names:
                raise SpecError(f"`{fld}` is read by the `adversary` attack {need} only; none was asked for")

    @property
    def defended(self) -> bool:
        return self.defence not in (None, "", "none")

    @property
    def settings(self) -> list[Setting]:
        return parse_adversary(self.adversary)


def run_adversary(spec: AdversarySpec | None = None, **kwargs) -> dict:
    """`ganprint adversary`: run the attack settings of `spec` (an AdversarySpec, or its fields as keyword
    arguments) and write OUTDIR/results.jsonl, summary.csv, summary.md, adversary.png, adversary.json; returns the
    adversary.json dict."""
    sp = AdversarySpec.of(spec, **kwargs)
    settings = sp.settings
    check_overlap([("`model`", sp.model, "model"), ("`data`", sp.data, "data"), ("`clean`", sp.clean, "clean data"),
                   ("`defence_reference`", sp.defence_reference, "data"), ("`onnx`", sp.onnx, "model"),
                   ("`diffusion`", sp.diffusion, "model")], [("`outdir`", sp.outdir)])
    check_writable_dir(sp.outdir, "`outdir`")
    dev = resolve_device(sp.device)
    identity = {"model": file_identity(sp.model), "data": file_identity(sp.data), "clean": file_identity(sp.clean),
                "fingerprint": str(sp.fingerprint), "specs": [s.spec for s in settings], "fpr": sp.fpr,
                "limit": sp.limit, "device": dev.type, "defence": sp.defence,
                "defence_reference": file_identity(sp.defence_reference),
                # only when given, so that folders written before these attacks existed keep their identity
                **{f: file_identity(getattr(sp, f)) for f in ("onnx", "diffusion") if getattr(sp, f) is not None}}
    folder = OutputFolder(sp.outdir, "`outdir`", "adversary", identity, not_data=["adversary.png"],
                          labels={k: f"`{'adversary' if k == 'specs' else k}`" for k in identity}).check()
    dec, res, k, kind = load_decoder(sp.model, dev)
    ref = parse_bits(str(sp.fingerprint), k)
    score, limit = Scorer(dec, ref, sp.fpr), sp.limit
    need = max([int(s.params.get("n", 0)) for s in settings] + [limit or 0])
    marked, marked_names = _load(sp.data, res, ref, need or None, "`data`")
    clean_x, clean_names = _load(sp.clean, res, ref, limit, "`clean`")
    pattern = (estimate_pattern(_load(sp.defence_reference, res, ref, None, "`defence_reference`")[0])
               if sp.defence_reference is not None else None)
    guard = make_defence(sp.defence, dec, k, sp.fpr, pattern) if sp.defended else None
    rows = _no_attack_rows(score, marked[:limit], marked_names[:limit], clean_x, clean_names, guard)
    names = {"clean": clean_names, "marked": marked_names[:limit]}
    tools = Tools(sp.model, sp.onnx, sp.diffusion, dev)
    for st in settings:
        part = attack_rows(score, st, marked[:limit] if st.name in REMOVALS else marked, clean_x, names, guard,
                           tools)
        rows += part
        log.info("%s: detected %.3f, mean PSNR %.1f dB", st.spec, np.mean([r["detected"] for r in part]),
                 np.mean([r["psnr"] for r in part]))
    meta = {"model": str(sp.model), "kind": kind, "data": str(sp.data), "clean": str(sp.clean),
            "fingerprint": bits_to_str(ref), "fpr": sp.fpr, "match_threshold": match_threshold(k, sp.fpr),
            "fingerprint_length": k, "resolution": res, "settings": [s.spec for s in settings],
            "images": len(names["marked"]), "clean_images": len(clean_names), "defence": sp.defence,
            "defence_reference": str(sp.defence_reference) if sp.defence_reference is not None else None,
            **{f: str(getattr(sp, f)) for f in ("onnx", "diffusion") if getattr(sp, f) is not None}}
    folder.claim()
    return write_adversary_outputs(sp.outdir, rows, meta)


def _no_attack_rows(score, marked, marked_names, clean_x, clean_names, guard) -> list[dict]:
    rows = score.rows(marked, marked_names, marked, "fingerprinted", None)
    crow = score.rows(clean_x, clean_names, clean_x, "clean", None)
    if guard is not None:
        guard.apply(rows, marked, score.ref)
        guard.apply(crow, clean_x, score.ref)
    return rows + crow


SUMMARY_COLUMNS = ["set", "attack", "spec", "strength", "n", "images", "mean_psnr", "mean_bit_accuracy",
                   "detected", "detected_defended"]


def summarize_adversary(rows: list[dict]) -> list[dict]:
    """One row per (set, spec): images, mean PSNR, mean bit accuracy, detection rate (forged: false attribution)."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["set"], r["spec"]), []).append(r)
    out = []
    for (set_name, spec), rs in by.items():
        q = [r["psnr"] for r in rs if r["psnr"] is not None]
        out.append({"set": set_name, "attack": rs[0]["attack"], "spec": spec, "strength": rs[0]["strength"],
                    "n": rs[0]["n"], "images": len(rs), "mean_psnr": float(np.mean(q)) if q else None,
                    "mean_bit_accuracy": float(np.mean([r["bit_accuracy"] for r in rs])),
                    "detected": float(np.mean([r["detected"] for r in rs])),
                    "detected_defended": (float(np.mean([r["detected_defended"] for r in rs]))
                                          if "detected_defended" in rs[0] else None)})
    return out


def _markdown(summary: list[dict], meta: dict) -> str:
    head = ("| set | attack | spec | images | mean PSNR (dB) | bit acc | detected" +
            (" | detected with defence" if meta.get("defence") else "") + " |\n")
    lines = [head, "|" + "---|" * (7 + bool(meta.get("defence"))) + "\n"]
    for s in summary:
        cells = [s["set"], s["attack"], s["spec"], str(s["images"]),
                 "–" if s["mean_psnr"] is None else f"{s['mean_psnr']:.1f}",
                 f"{s['mean_bit_accuracy']:.3f}", f"{s['detected']:.4f}"]
        if meta.get("defence"):
            cells.append(f"{s['detected_defended']:.4f}")
        lines.append("| " + " | ".join(cells) + " |\n")
    return (f"# Adversary report\n\nModel `{meta['model']}`, fingerprint of {meta['fingerprint_length']} bits, "
            f"FPR {meta['fpr']:g} (>= {meta['match_threshold']} matching bits). 'forged' rows that are detected "
            "are false attributions; 'removed' rows that are detected survived the removal.\n\n" + "".join(lines))


def write_adversary_outputs(outdir: str | Path, rows: list[dict], meta: dict) -> dict:
    """Write results.jsonl, summary.csv, summary.md, adversary.png and adversary.json (atomically)."""
    import json

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    summary = summarize_adversary(rows)
    csv_lines = [",".join(SUMMARY_COLUMNS)] + [",".join("" if s[c] is None else str(s[c]) for c in SUMMARY_COLUMNS)
                                               for s in summary]
    atomic_write_text(out / "summary.csv", "\n".join(csv_lines) + "\n")
    atomic_write_text(out / "summary.md", _markdown(summary, meta))
    plotted = plot_adversary(summary, out / "adversary.png")
    clean = [s for s in summary if s["set"] == "clean"]
    marked = [s for s in summary if s["set"] == "fingerprinted"]
    result = {**meta, "clean_false_positive_rate": clean[0]["detected"] if clean else None,
              "fingerprinted_detected": marked[0]["detected"] if marked else None,
              "plot": "adversary.png" if plotted else None, "summary": summary}
    atomic_write_json(out / "adversary.json", result)
    return result


def _curves(points: list[dict], strength: str) -> list[tuple[str, list[dict]]]:
    """The summary rows of one attack as curves over its `strength`: one per setting of its other parameters,
    labelled by the parameters that differ between curves ("detected" when there is one curve)."""
    def others(row: dict) -> tuple:
        return tuple(kv for kv in row["spec"].split(":")[1:] if kv.split("=")[0] != strength)

    keys = sorted({others(r) for r in points}, key=lambda k: [float(kv.split("=")[1]) for kv in k])
    varying = [i for i in range(len(keys[0]) if keys else 0) if len({k[i] for k in keys}) > 1]
    return [(" ".join(k[i] for i in varying) or "detected",
             sorted((r for r in points if others(r) == k), key=lambda r: r["mean_psnr"])) for k in keys]


def plot_adversary(summary: list[dict], path: Path) -> bool:
    """Detection rate against the attacker's measured PSNR, one panel per attack, one curve per setting of the
    attack's other parameters (n and sigma for averaging, samples for query-remove)."""
    attacks = [a for a in ADVERSARY_SPECS if any(s["attack"] == a for s in summary)]
    if not attacks:
        return False
    fig = report._canvas(4.2 * len(attacks), 3.4)
    for i, a in enumerate(attacks):
        ax = fig.add_subplot(1, len(attacks), i + 1)
        for label, line in _curves([s for s in summary if s["attack"] == a], ADVERSARY_SPECS[a][0]):
            ax.plot([s["mean_psnr"] for s in line], [s["detected"] for s in line], "o-", label=label)
            if line and line[0]["detected_defended"] is not None:
                ax.plot([s["mean_psnr"] for s in line], [s["detected_defended"] for s in line], "x--",
                        label=f"{label}, with defence")
        ax.set_title({"average": "forgery: residual averaging", "invert": "forgery: decoder inversion",
                      "remove": "removal: white-box PGD", "query-remove": "removal: ONNX queries only",
                      "edit": "removal: combined edits",
                      "regenerate": "removal: diffusion regeneration"}[a], fontsize=9)
        ax.set_xlabel("attacker's PSNR (dB)")
        ax.set_ylabel("still detected" if a in REMOVALS else "false attribution rate")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    report._save(fig, path)
    return True
