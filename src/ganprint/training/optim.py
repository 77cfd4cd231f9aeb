"""Optimisers and the one gradient all-reduce of the trainers that do not use DistributedDataParallel."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ganprint.core import dist


def lazy_adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float,
              interval: int | None) -> torch.optim.Adam:
    """Adam for a network whose regulariser runs only every `interval` steps (StyleGAN2 App. B, lazy regularisation).

    The regularisation step counts as a step too, so lr and betas are scaled by interval / (interval + 1) to keep
    the effective step per minibatch unchanged; `interval` None means no lazy regulariser.
    """
    c = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c), eps=eps)


def average_gradients(params: Iterable[torch.nn.Parameter], fill_missing: bool = False,
                      finite: bool = False) -> None:
    """Average `.grad` over the ranks as one flat tensor (a no-op on one process unless asked for more).

    fill_missing: a parameter without gradient gets zeros (so that every rank sends the same layout and Adam
        still steps it). finite: NaN becomes 0 and infinities +-1e5 (one bad batch must not poison the weights).
    """
    params = [p for p in params if fill_missing or p.grad is not None]
    world = dist.get_world_size()
    if not params or (world == 1 and not (fill_missing or finite)):
        return
    flat = torch.cat([torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if p.grad is None
                      else p.grad.reshape(-1) for p in params])
    if world > 1:
        flat = dist.all_reduce_mean(flat)
    if finite:
        flat = torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view(p.shape)
