"""The figures of `ganprint metrics`: detection thresholds, p-values and the list of attacks.

Each function returns its result; the CLI prints it (`as_dict()` for --json, `str()` for people).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.stats import capacity, log10_p_value, match_threshold, p_value
from ganprint.evaluation.model_attacks import MODEL_ATTACK_SPECS, MODEL_SUITES
from ganprint.perturb.attacks import ATTACKS, SUITES


@dataclass(frozen=True)
class Threshold:
    """The number of matching bits (`threshold`, K + 1 when none suffices) an image needs to be called
    fingerprinted at `fpr`, with `keys` fingerprints searched (Bonferroni)."""

    bits: int
    fpr: float
    keys: int
    threshold: int
    bit_accuracy: float | None
    p_value_at_threshold: float | None

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        k, m = self.bits, self.threshold
        if m > k:
            return (f"no threshold: even {k} of {k} matching bits has p = {p_value(k, k):.3g} > "
                    f"{self.fpr:g}/{self.keys}; use longer fingerprints")
        return (f"{m} of {k} bits (bit accuracy >= {m / k:.2f}); a clean image passes with p = "
                f"{self.p_value_at_threshold:.3g} <= {self.fpr:g}" + (f"/{self.keys} keys" if self.keys > 1 else ""))


def detection_threshold(k: int, fpr: float = 1e-6, n_keys: int = 1) -> Threshold:
    """`ganprint metrics threshold`: the match threshold of K-bit fingerprints at `fpr` over `n_keys` keys."""
    bounds.BITS.check(k, "--bits")
    bounds.KEYS.check(n_keys, "--keys")
    bounds.FPR.check(fpr, "--fpr")
    m = match_threshold(k, fpr, n_keys)
    return Threshold(k, fpr, n_keys, m, m / k if m <= k else None, p_value(m, k) if m <= k else None)


@dataclass(frozen=True)
class PValue:
    """The one-sided binomial p-value of `matches` of `bits` matching bits and the channel capacity there."""

    bits: int
    matches: int
    bit_accuracy: float
    p_value: float
    log10_p: float
    capacity_bits: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.matches} of {self.bits} bits match: p = {self.p_value:.3g} (log10 p = {self.log10_p:.2f}); "
                f"BSC capacity at this accuracy {self.capacity_bits:.1f} bits")


def match_p_value(k: int, matches: int | None = None, bit_accuracy: float | None = None) -> PValue:
    """`ganprint metrics pvalue`: from `matches`, or from `bit_accuracy` (matches = round(accuracy * K), as the
    papers' tables)."""
    if (matches is None) == (bit_accuracy is None):
        raise GanprintError("pass exactly one of --matches or --bit-accuracy")
    bounds.BITS.check(k, "--bits")
    if bit_accuracy is not None:
        bounds.FRACTION.check(bit_accuracy, "--bit-accuracy")
    else:
        bounds.DISTANCE.check(matches, "--matches")
    m = round(bit_accuracy * k) if bit_accuracy is not None else int(matches)
    if m > k:
        raise GanprintError(f"--matches {m} is larger than --bits {k}")
    return PValue(k, m, m / k, p_value(m, k), log10_p_value(m, k), capacity(k, m / k))


def _sweep(param: str, sweep) -> str:
    return param + "=" + ",".join(f"{v:g}" for v in sweep)


def _neutral(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"  # codecs: lossy at any quality


def describe_attacks() -> str:
    """`ganprint metrics attacks`: the image and model-level attacks with parameter, default sweep, neutral
    strength and description, and the suites."""
    lines = [f"{'name':<11} {'parameter=default sweep':<32} {'neutral':<8} description"]
    for a in ATTACKS.values():
        aliases = f" (also: {', '.join(a.aliases)})" if a.aliases else ""
        lines.append(f"{a.name:<11} {_sweep(a.param, a.sweep):<32} {_neutral(a.neutral):<8} {a.description}{aliases}")
    lines += [f"suite {n}: {' '.join(members)}" for n, members in SUITES.items()]
    lines.append("\nmodel-level attacks (perturbations of a generator's weights):")
    for m in MODEL_ATTACK_SPECS.values():
        lines.append(f"{m.name:<13} {_sweep(m.param, m.sweep):<32} {_neutral(m.neutral):<8} {m.description}")
    lines += [f"model suite {n}: {' '.join(members)}" for n, members in MODEL_SUITES.items()]
    return "\n".join(lines)
