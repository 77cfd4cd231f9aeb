"""EMA, gradient averaging on one process, and the grid writer."""

import numpy as np
import torch
from PIL import Image

from ganprint.training.ema import EMA
from ganprint.training.grids import save_grid, to_uint8
from ganprint.training.optim import average_gradients, lazy_adam


def test_ema_follows_with_its_half_life_and_copies_buffers():
    src = torch.nn.BatchNorm1d(2)
    ema = EMA(src, half_life_kimg=0.004, rampup=None)  # 4 images
    with torch.no_grad():
        src.weight.fill_(3.0)
        src.running_mean.fill_(7.0)
    ema.update(src, nimg=4, batch=4)  # one half-life: halfway from 1 to 3
    assert torch.allclose(ema.module.weight, torch.full((2,), 2.0))
    assert torch.equal(ema.module.running_mean, src.running_mean)
    assert not ema.module.weight.requires_grad and not ema.module.training
    ramped = EMA(src, half_life_kimg=10.0, rampup=0.05)
    assert ramped.decay(nimg=80, batch=4) == 0.5  # half-life capped at 5 % of 80 images
    assert ramped.decay(nimg=10**7, batch=4) == 0.5 ** (4 / 10_000)


def test_average_gradients_on_one_process_fills_and_scrubs():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.tensor([float("nan"), float("inf")])
    average_gradients([a, b])  # one process, nothing asked: untouched
    assert torch.isnan(a.grad[0]) and b.grad is None
    average_gradients([a, b], fill_missing=True, finite=True)
    assert a.grad.tolist() == [0.0, 1e5] and b.grad.tolist() == [0.0, 0.0, 0.0]
    opt = lazy_adam([a], lr=0.01, betas=(0.0, 0.99), eps=1e-8, interval=4)
    assert opt.param_groups[0]["lr"] == 0.01 * 0.8 and opt.param_groups[0]["betas"] == (0.0, 0.99 ** 0.8)


def test_grid_tiles_rows_and_maps_the_value_range(tmp_path):
    imgs = torch.stack([torch.full((3, 2, 2), v) for v in (-1.0, 0.0, 1.0, 0.5)])
    assert to_uint8(imgs)[:, 0, 0, 0].tolist() == [0, 128, 255, 191]
    save_grid(tmp_path / "g.png", imgs, cols=2)
    arr = np.asarray(Image.open(tmp_path / "g.png"))
    assert arr.shape == (4, 4, 3) and arr[0, 2, 0] == 128 and arr[2, 0, 0] == 255
    save_grid(tmp_path / "u.png", to_uint8(imgs, (-1, 1)), cols=4)
    assert np.asarray(Image.open(tmp_path / "u.png")).shape == (2, 8, 3)
