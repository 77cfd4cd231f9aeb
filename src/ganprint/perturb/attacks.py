"""Evaluation attacks: the perturbations of `ganprint.perturb.registry` at fixed strengths, chains and specs.

Every attack maps float images [N, 3, H, W] in [0, 1] to a new tensor of the same shape (but `shrink`, which
keeps the smaller copy), dtype, device and range; the input is never modified. Attacks with a `neutral` strength return an exact copy there. The codecs
(JPEG, WebP) have no neutral strength: quality 100 is still a lossy encode.

Specs (command line and Python):

    "jpeg"                      the default sweep of one attack
    "jpeg:50"                   one strength
    "jpeg:q=30,50,70"           a sweep, with the parameter named (aliases per attack, see ATTACKS)
    "blur:sigma=1"  "blur:k=5"  a named parameter; `k` (kernel size) is converted to sigma with OpenCV's rule
    "jpeg:50+noise:0.05"        a chain applied left to right; sweeps in a chain give their Cartesian product
    "standard" / "all" / "wild"  named suites (SUITES; "wild": what sites do to images, for `keep_size`)

Crop comes in three forms, because a fixed-size decoder cannot read a smaller image:
`crop` cuts the centre and resizes it back to H x W (what the papers' crop curves measure, inferred);
`cropnr` cuts the centre and does *not* rescale it: the kept pixels stay at their scale and place and the cut
border is filled with mid-grey (0.5), so the decoder sees only the information a crop leaves;
`randcrop` cuts at a random (seeded) position and resizes back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ganprint.core.errors import GanprintError, excerpt
from ganprint.core.seeds import derive_seed
from ganprint.perturb.registry import PERTURBATIONS, SUITES, Perturbation, combined_chain, parse_strengths

__all__ = ["ATTACKS", "SUITES", "AttackChain", "AttackSpecError", "combined_chain", "parse_attacks"]

# the evaluation attacks: every perturbation with a default sweep
ATTACKS: dict[str, Perturbation] = {n: p for n, p in PERTURBATIONS.items() if p.sweep}


class AttackSpecError(GanprintError):
    """An attack spec string that cannot be parsed or names an unknown attack/parameter."""


@dataclass(frozen=True)
class AttackChain:
    """A sequence of (attack name, strength) applied left to right; `vary` is the step whose strength is swept."""

    steps: tuple[tuple[str, float], ...]
    vary: int = 0

    @property
    def name(self) -> str:
        """Attack label for tables: the names joined by '+', e.g. 'jpeg+noise'."""
        return "+".join(n for n, _ in self.steps)

    @property
    def strength(self) -> float:
        """The strength plotted on the x axis (the swept step's)."""
        return self.steps[self.vary][1]

    @property
    def spec(self) -> str:
        """Canonical spec, parseable back: 'jpeg:50+noise:0.05'."""
        return "+".join(f"{n}:{_fmt(s)}" for n, s in self.steps)

    def __call__(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Apply every step in turn; step i draws its randomness from derive_seed(seed, i)."""
        for i, (n, s) in enumerate(self.steps):
            x = ATTACKS[n](x, s, derive_seed(seed, i))
        return x


def _fmt(v: float) -> str:
    return f"{v:g}"


def _parse_step(text: str, whole: str) -> tuple[str, list[float]]:
    name, _, arg = text.strip().partition(":")
    name = name.strip().lower()
    if name not in ATTACKS:
        raise AttackSpecError(f"unknown attack {excerpt(name)} in `attacks` {excerpt(whole)}; known: "
                              f"{', '.join(ATTACKS)} "
                              f"(suites: {', '.join(SUITES)})")
    att = ATTACKS[name]
    return name, parse_strengths(name, arg, att, sweep=att.sweep, flag="attacks", whole=whole, error=AttackSpecError)


def parse_attacks(spec: str | list[str] | tuple[str, ...]) -> list[AttackChain]:
    """Parse one spec or a list of specs into attack chains (order kept, duplicates dropped).

    Raises AttackSpecError (a GanprintError) with the offending part named.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[AttackChain] = []
    for whole in specs:
        # spaces separate specs as well, so `attacks` "jpeg noise" works
        for one in whole.split():
            if one.lower() in SUITES:
                for n in SUITES[one.lower()]:
                    out.extend(parse_attacks(n))
                continue
            steps = [_parse_step(t, one) for t in one.split("+")]
            vary = next((i for i, (_, vs) in enumerate(steps) if len(vs) > 1), 0)
            for combo in itertools.product(*[vs for _, vs in steps]):
                out.append(AttackChain(tuple((n, float(v)) for (n, _), v in zip(steps, combo)), vary))
        if not whole.split():
            raise AttackSpecError("empty `attacks` spec; give e.g. 'jpeg:50' or 'standard'")
    seen, uniq = set(), []
    for c in out:
        if c.spec not in seen:
            seen.add(c.spec)
            uniq.append(c)
    return uniq
