"""The losses the two GAN trainers (StyleGAN2, scalable) share: the non-saturating logistic loss and the lazy
regularisers of StyleGAN2 (Karras et al. 2020, Sec. 3-4 and App. B), R1 on D and path length on G.

A lazy regulariser runs every `interval` minibatches with its loss multiplied by `interval`, so that its weight per
minibatch stays as configured. Statistics are named `loss/<term>`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganprint.core import dist


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(D: torch.nn.Module, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    """softplus(D(fake)) + softplus(-D(real)) (fakes detached) and the real logits."""
    fake_logits = D(fake.detach())
    real_logits = D(real)
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean(), real_logits


def r1_backward(D: torch.nn.Module, real: torch.Tensor, gamma: float, interval: int) -> dict[str, float]:
    """R1 (Mescheder et al. 2018): gamma/2 * E ||grad_x D(x)||^2 on the reals, backpropagated into D's .grad with
    the lazy factor `interval`; returns the penalty's mean as `loss/r1`."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    penalty = grad.square().sum(dim=[1, 2, 3])  # [N]
    loss = penalty.mean() * (gamma / 2)
    (loss * interval).backward()
    return {"loss/r1": penalty.mean().item()}


class PathLength:
    """Path-length regularisation (StyleGAN2 Eq. 4): lengths ||J_w^T y|| for image-space noise y, pulled toward
    their running mean `mean` (all ranks' batch means, exponential decay `decay`)."""

    def __init__(self, decay: float, device: torch.device | str):
        self.decay = decay
        self.mean = torch.zeros([], device=device)

    def backward(self, img: torch.Tensor, ws: torch.Tensor, weight: float, interval: int) -> dict[str, float]:
        """Backpropagate the penalty of images `img` [n, C, H, W] made from styles `ws` [n, num_ws, w_dim] into
        .grad with the lazy factor `interval`; returns `loss/pl` (the penalty's mean) and `pl_mean`."""
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # [n]
        self.mean = self.mean.lerp(dist.all_reduce_mean(lengths.mean().detach()), self.decay)
        penalty = (lengths - self.mean).square()
        loss = penalty.mean() * weight
        (loss * interval).backward()
        return {"loss/pl": penalty.mean().item(), "pl_mean": self.mean.item()}

    def state_dict(self) -> dict:
        return {"value": self.mean.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["value"].to(self.mean.device, self.mean.dtype)
