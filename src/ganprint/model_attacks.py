"""Model-level perturbations of a (fingerprinted) generator; each returns a perturbed copy, never touching the input.

These are the attacks the papers study on the weights themselves (papers.md §1.9: quantization to a decimal
precision and additive weight noise), plus magnitude pruning and a short fine-tune on clean data (peers.md §8).
Only floating-point *parameters* are changed; buffers (running statistics, averaged latents) are copied as is.
"""

from __future__ import annotations

import copy
import logging
from typing import Callable

import torch
import torch.nn as nn

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


MODEL_ATTACKS: dict[str, Callable[..., nn.Module]] = {
    "quantize": quantize_weights,
    "weight_noise": weight_noise,
    "prune": prune_weights,
}
