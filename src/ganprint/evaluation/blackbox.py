"""Removal attacks of `ganprint adversary` that never touch the PyTorch decoder's gradients.

- `query_remove`: the attacker holds only the decoder's ONNX file (what verifiers are given) and ONNX Runtime's
  logits. The gradient of the bit loss is estimated from antithetic random sign probes (SPSA / NES), and the
  image ascends it under an L-inf budget, as white-box PGD does with the true gradient. Every probe is an 8-bit
  image, since the graph reads uint8: probes of `sigma` whole levels keep it on the grid.
- `regenerate`: a diffusion model (a `train-diffusion` export) noises the fingerprinted image to step t, then
  DDIM denoises it back; nothing of the decoder is used.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganprint.core.errors import GanprintError
from ganprint.diffusion.generate import load_diffusion
from ganprint.diffusion.model import make_scheduler
from ganprint.nets.onnx import OnnxDecoder, onnx_runtime_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueryBudget:
    """The query attacker's budget: L-inf `eps` and probe size `sigma` in 8-bit levels, `steps` ascent steps of
    2 x `samples` ONNX evaluations each (antithetic pairs)."""

    eps: float
    steps: int
    samples: int
    sigma: float

    @property
    def queries(self) -> int:
        return self.steps * 2 * self.samples


def onnx_session(onnx: str | Path | None, model: str | Path):
    """ONNX Runtime on `onnx` (a decoder exported by `ganprint export`), or on `model`'s decoder exported to a
    temporary file when `onnx` is None. Refuses clearly without ONNX Runtime."""
    try:
        import onnxruntime  # noqa: F401  (the session below imports it too; this names the missing piece)
    except ImportError:
        raise GanprintError("the `adversary` attack query-remove runs the decoder through ONNX Runtime, which is "
                            "not installed: pip install -e '.[onnx]' in the ganprint checkout") from None
    if onnx is not None:
        return OnnxDecoder(onnx, threads=torch.get_num_threads())
    with tempfile.TemporaryDirectory(prefix="ganprint-adv-onnx-") as tmp:
        return onnx_runtime_for(model, tmp, threads=torch.get_num_threads())


def _bit_loss(logits: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Per-image binary cross-entropy of logits [M, K] against 0/1 bits [K] (numerically stable form)."""
    z = logits.astype(np.float64)
    return (np.maximum(z, 0) - z * bits + np.log1p(np.exp(-np.abs(z)))).mean(1)


def _losses(session, probes: np.ndarray, bits: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Bit loss of every uint8 NHWC probe, `chunk` probes per ONNX call."""
    return np.concatenate([_bit_loss(session.logits(probes[i:i + chunk]), bits)
                           for i in range(0, len(probes), chunk)])


def query_remove(session, x01: torch.Tensor, bits: torch.Tensor, budget: QueryBudget, seed: int = 0
                 ) -> torch.Tensor:
    """Gradient-free removal of [N, 3, R, R] images in [0, 1] (8-bit levels) carrying `bits`, through ONNX
    Runtime's logits only. Returns 8-bit images within `eps` levels of x01."""
    rng = np.random.default_rng(seed)
    x = np.rint(x01.permute(0, 2, 3, 1).double().numpy() * 255)  # NHWC levels, as the graph reads them
    target = bits.double().numpy()
    adv, m, sig = x.copy(), budget.samples, float(round(budget.sigma))
    alpha = 2.5 * budget.eps / max(budget.steps, 1)
    for _ in range(budget.steps):
        delta = rng.choice(np.array([-1.0, 1.0]), size=(len(x), m) + x.shape[1:])
        base = np.rint(adv)[:, None]
        probes = np.concatenate([base + sig * delta, base - sig * delta], 1)  # [N, 2m, R, R, 3]
        loss = _losses(session, np.clip(probes, 0, 255).astype(np.uint8).reshape((-1,) + x.shape[1:]), target)
        loss = loss.reshape(len(x), 2, m)
        diff = (loss[:, 0] - loss[:, 1]) / (2 * sig)  # [N, m]: the directional derivative along each probe
        grad = (diff.reshape(diff.shape + (1, 1, 1)) * delta).mean(1)
        adv = np.clip(x + np.clip(adv + alpha * np.sign(grad) - x, -budget.eps, budget.eps), 0, 255)
    out = np.clip(np.rint(adv), np.maximum(x - math.ceil(budget.eps), 0), np.minimum(x + math.ceil(budget.eps), 255))
    return torch.from_numpy(out / 255).float().permute(0, 3, 1, 2).contiguous()


@dataclass
class Regenerator:
    """A diffusion-unet export that regenerates images: noise to step `t` of its training schedule, then DDIM."""

    unet: torch.nn.Module
    noise: object  # the export's NoiseConfig
    batch_size: int = 64

    @classmethod
    def load(cls, path: str | Path, device: torch.device) -> Regenerator:
        unet, noise, _ = load_diffusion(path, device)
        return cls(unet.eval(), noise)

    def __call__(self, x01: torch.Tensor, t: int, steps: int, seed: int = 0) -> torch.Tensor:
        """[N, 3, R, R] images in [0, 1] regenerated from step `t` (1 .. timesteps - 1) in about `steps` DDIM
        steps; 8-bit. Image i's noise is drawn from seed + i, so a run repeats."""
        res = int(self.unet.config.sample_size)
        if x01.shape[-1] != res:
            raise GanprintError(f"`diffusion` model makes {res}-px images but the decoder reads {x01.shape[-1]} px")
        total = self.noise.timesteps
        if not 1 <= t < total:
            raise GanprintError(f"`adversary` regenerate: t must be between 1 and {total - 1}, got {t}")
        out = [self._batch(x01[i:i + self.batch_size], t, steps, seed + i)
               for i in range(0, len(x01), self.batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def _batch(self, x01: torch.Tensor, t: int, steps: int, seed: int) -> torch.Tensor:
        sched = make_scheduler("ddim", self.noise)
        # a grid over the whole schedule whose spacing gives `steps` steps below t; start at its step nearest t
        sched.set_timesteps(max(1, min(self.noise.timesteps, round(steps * self.noise.timesteps / t))))
        kept = sched.timesteps[sched.timesteps <= t]
        p = next(self.unet.parameters())
        x0 = (x01 * 2 - 1).to(p.device, p.dtype)
        eps = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(seed + j))
                           for j in range(len(x0))]).to(p.device, p.dtype)
        x = sched.add_noise(x0, eps, kept[:1]) if len(kept) else x0
        for step in kept:
            x = sched.step(self.unet(x, step.to(p.device)).sample, step, x).prev_sample.to(p.dtype)
        return ((x.clamp(-1, 1) + 1) * 127.5).round().float().cpu() / 255
