"""Model-level perturbations of a (fingerprinted) generator; each returns a perturbed copy, never touching the input.

These are the attacks the papers study on the weights themselves (quantization to a decimal precision and
additive weight noise, Yu et al. ICCV 2021 Fig. 3), plus magnitude pruning and a short fine-tune on clean data.
Only floating-point *parameters* are changed; buffers (running statistics, averaged latents) are copied as is.

`MODEL_ATTACK_SPECS` / `parse_model_attacks` describe the sweeps an evaluation's `model_attacks` run
(quantization, weight noise, pruning). `finetune` is not among them: it needs the caller's GAN training step
(discriminator and clean data), which an evaluation does not have.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ganprint.core.errors import GanprintError, excerpt
from ganprint.perturb.registry import parse_strengths

log = logging.getLogger(__name__)


def _float_params(model: nn.Module):
    return [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]


def quantize_weights(model: nn.Module, decimals: int | None = None, bits: int | None = None) -> nn.Module:
    """A copy with every parameter rounded to `decimals` decimal places (AGF's "decimal precision 10^-d";
    decimals=0 rounds to integers) and/or uniformly quantized to `bits` bits per tensor (symmetric, scale =
    max|w| / (2^(bits-1) - 1))."""
    if decimals is None and bits is None:
        raise ValueError("quantize_weights needs decimals or bits")
    if bits is not None and bits < 2:
        raise ValueError(f"bits must be >= 2, got {bits}")
    out = copy.deepcopy(model)
    with torch.no_grad():
        for _, p in _float_params(out):
            if decimals is not None:
                p.copy_(torch.round(p, decimals=int(decimals)))
            if bits is not None:
                levels = 2 ** (int(bits) - 1) - 1
                scale = p.abs().max() / levels
                if scale > 0:
                    p.copy_(torch.round(p / scale).clamp(-levels, levels) * scale)
    return out


def weight_noise(model: nn.Module, std: float, seed: int = 0, relative: bool = False) -> nn.Module:
    """A copy with N(0, std^2) added to every parameter (absolute std as in AGF Fig. 3, or times each
    tensor's own std when `relative`). Seeded: the same (model, std, seed) gives the same copy."""
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, p in _float_params(out):
            n = torch.randn(p.shape, generator=g, dtype=torch.float32).to(p)
            s = std * (p.float().std().item() if relative and p.numel() > 1 else 1.0)
            p.add_(n * s)
    return out


def prune_weights(model: nn.Module, fraction: float, scope: str = "layer") -> nn.Module:
    """A copy with the `fraction` smallest-magnitude entries of every weight matrix/kernel (ndim >= 2) set to 0,
    per tensor (`scope="layer"`) or over all of them together (`scope="global"`). Biases are kept."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    out = copy.deepcopy(model)
    weights = [p for _, p in _float_params(out) if p.ndim >= 2]
    if fraction == 0 or not weights:
        return out
    with torch.no_grad():
        if scope == "global":
            mags = torch.cat([p.detach().abs().flatten().float() for p in weights])
            k = int(round(fraction * mags.numel()))
            if k > 0:
                thr = torch.kthvalue(mags, k).values
                for p in weights:
                    p.masked_fill_(p.abs() <= thr, 0.0)
        else:
            for p in weights:
                k = int(round(fraction * p.numel()))
                if k > 0:
                    idx = torch.argsort(p.detach().abs().flatten())[:k]
                    p.view(-1)[idx] = 0.0
    return out


def finetune(model: nn.Module, train_step: Callable[[nn.Module, torch.optim.Optimizer, int], float | None],
             steps: int, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
             log_every: int = 0) -> tuple[nn.Module, list[float]]:
    """Fine-tune a copy for `steps` steps; returns (copy, losses).

    `train_step(model, optimizer, step)` does one step of the caller's training on clean data (forward, backward,
    optimizer.step) and may return its loss. `make_optimizer(model)` defaults to Adam(lr=1e-4).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    out = copy.deepcopy(model)
    out.train()
    opt = make_optimizer(out) if make_optimizer else torch.optim.Adam(out.parameters(), lr=1e-4)
    losses: list[float] = []
    for step in range(steps):
        loss = train_step(out, opt, step)
        if loss is not None:
            losses.append(float(loss))
        if log_every and (step + 1) % log_every == 0:
            log.info("finetune step %d/%d loss %s", step + 1, steps, f"{losses[-1]:.4g}" if losses else "-")
    return out.eval(), losses


# ----------------------------------------------------------------------------------------------------------
# Model attacks as data: a strength knob, a default sweep and a neutral strength per attack (like the image
# perturbations of ganprint.perturb.registry)


class ModelAttackSpecError(GanprintError):
    """A `model_attacks` spec that cannot be parsed or names an unknown attack/parameter."""


@dataclass(frozen=True)
class ModelAttack:
    """One model-level perturbation with a single strength knob; `__call__` returns a perturbed copy."""

    name: str
    fn: Callable[[nn.Module, float, int], nn.Module] = field(repr=False)
    param: str  # the strength's parameter name
    neutral: float | None  # strength at which the copy is exact (None: lossy at every strength)
    sweep: tuple[float, ...]  # default strengths, mildest first
    description: str
    bounds: tuple[float, float] = (-math.inf, math.inf)
    integer: bool = False  # the strength must be a whole number
    descending: bool = False  # smaller values are stronger (plots reverse the axis)

    def __call__(self, model: nn.Module, strength: float, seed: int = 0) -> nn.Module:
        """A perturbed copy of `model` at `strength` (an exact copy at the neutral strength); `model` is untouched."""
        if self.neutral is not None and float(strength) == self.neutral:
            return copy.deepcopy(model)
        return self.fn(model, float(strength), int(seed))


MODEL_ATTACK_SPECS: dict[str, ModelAttack] = {
    a.name: a
    for a in [
        ModelAttack("quantize", lambda m, s, seed: quantize_weights(m, decimals=int(s)), "decimals", None,
                    (4, 3, 2, 1, 0), "round every parameter to 10^-decimals (AGF's decimal precision)", (0, 12),
                    integer=True, descending=True),
        ModelAttack("quantize_bits", lambda m, s, seed: quantize_weights(m, bits=int(s)), "bits", None,
                    (8, 6, 4, 3, 2), "symmetric per-tensor uniform quantization to `bits` bits", (2, 32),
                    integer=True, descending=True),
        ModelAttack("weight_noise", lambda m, s, seed: weight_noise(m, s, seed=seed), "std", 0.0,
                    (0.001, 0.003, 0.01, 0.03, 0.1), "add N(0, std^2) to every parameter (absolute std, seeded)",
                    (0, 100)),
        ModelAttack("prune", lambda m, s, seed: prune_weights(m, s), "fraction", 0.0, (0.1, 0.3, 0.5, 0.7, 0.9),
                    "zero the smallest-magnitude fraction of every weight matrix/kernel (per layer)", (0, 1)),
    ]
}

MODEL_SUITES: dict[str, list[str]] = {
    "standard": ["quantize", "weight_noise", "prune"],
    "all": ["quantize", "quantize_bits", "weight_noise", "prune"],
}

PREFIX = "model:"  # attack names of model-attack rows in evaluation results: "model:quantize"


@dataclass(frozen=True)
class ModelAttackSetting:
    """One (model attack, strength) of a sweep; `spec` ('model:prune:0.5') parses back."""

    attack: str
    strength: float

    @property
    def name(self) -> str:
        """The attack label of result rows, e.g. 'model:prune'."""
        return PREFIX + self.attack

    @property
    def spec(self) -> str:
        """Canonical spec, parseable back by `parse_model_attacks`: 'model:prune:0.5'."""
        return f"{self.name}:{self.strength:g}"

    def __call__(self, model: nn.Module, seed: int = 0) -> nn.Module:
        """A perturbed copy of `model`; randomness (weight noise) is a pure function of `seed`."""
        return MODEL_ATTACK_SPECS[self.attack](model, self.strength, seed)


def _parse_model_step(text: str) -> list[ModelAttackSetting]:
    one = text[len(PREFIX):] if text.lower().startswith(PREFIX) else text
    name, _, arg = one.partition(":")
    name = name.strip().lower()
    if name not in MODEL_ATTACK_SPECS:
        raise ModelAttackSpecError(f"unknown model attack {excerpt(name)} in `model_attacks` {excerpt(text)}; known: "
                                   f"{', '.join(MODEL_ATTACK_SPECS)} (suites: {', '.join(MODEL_SUITES)}, none)")
    att = MODEL_ATTACK_SPECS[name]
    values = parse_strengths(name, arg, att, sweep=att.sweep, flag="model_attacks", whole=text,
                             error=ModelAttackSpecError)
    return [ModelAttackSetting(name, float(v)) for v in values]


def parse_model_attacks(spec: str | list[str] | tuple[str, ...]) -> list[ModelAttackSetting]:
    """Parse model-attack specs ('standard', 'all', 'none', 'prune', 'prune:0.5', 'quantize:decimals=2,1',
    'model:prune:0.5') into settings, order kept, duplicates dropped; 'none' contributes nothing.

    Raises ModelAttackSpecError (a GanprintError) naming the offending part.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: list[ModelAttackSetting] = []
    for whole in specs:
        if not str(whole).split():
            raise ModelAttackSpecError("empty `model_attacks` spec; give e.g. 'standard', 'none' or 'prune:0.5'")
        for one in str(whole).split():  # spaces separate specs too
            low = one.lower()
            if low == "none":
                continue
            if low in MODEL_SUITES:
                out += [s for n in MODEL_SUITES[low] for s in _parse_model_step(n)]
            else:
                out += _parse_model_step(one)
    return list(dict.fromkeys(out))
