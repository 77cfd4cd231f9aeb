"""Image fidelity on [0, 1] images: PSNR and SSIM per image (fingerprinted vs clean)."""

from __future__ import annotations

import torch
from kornia.metrics import ssim as _kornia_ssim

# PSNR of identical images is +inf; capping the MSE keeps results finite (and valid JSON): at most 100 dB.
_MIN_MSE = 1e-10


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two [N, C, H, W] images of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of [N, C, H, W] images in [0, data_range] -> [N] float (capped at 100 dB)."""
    _check(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1).clamp_min(_MIN_MSE * data_range**2)
    return (10 * torch.log10(data_range**2 / mse)).float()


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, data_range: float = 1.0) -> torch.Tensor:
    """Per-image mean SSIM (Gaussian 11x11 window, sigma 1.5, kornia) of [N, C, H, W] images -> [N] float."""
    _check(x, y)
    window_size = min(window_size, min(x.shape[-2:]) // 2 * 2 - 1)  # odd and no larger than the image
    smap = _kornia_ssim(x.float(), y.float(), window_size, max_val=data_range)  # [N, C, H, W]
    return smap.flatten(1).mean(dim=1)
