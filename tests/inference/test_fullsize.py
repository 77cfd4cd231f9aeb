"""Fingerprints at the image's own size: the decoder's view, and the residual brought onto the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.images import preprocess
from ganprint.inference.fullsize import MAX_SIDE, add_residual, centre_square, decoder_view


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image (a photo's spectrum, not noise), so that resampling errors stay small."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    chans = [np.sin(2 * np.pi * (rng.uniform(0.5, 3) * x + rng.uniform(0.5, 3) * y) + rng.uniform(0, 6))
             for _ in range(3)]
    return ((np.stack(chans, -1) * 0.45 + 0.5) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("h,w", [(300, 400), (400, 300), (32, 32), (33, 32), (1, 5)])
def test_the_centre_square_is_the_one_preprocess_reads(h, w):
    top, left, s = centre_square(h, w)
    img = _photo(h, w)
    assert s == min(h, w) and 0 <= top <= h - s and 0 <= left <= w - s
    assert np.array_equal(preprocess(img[top:top + s, left:left + s], s), preprocess(img, s))


def test_the_decoders_view_is_preprocess_in_torch():
    img = _photo(480, 640)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    view = decoder_view(x, 32)
    assert view.shape == (1, 3, 32, 32)
    pil = torch.from_numpy(preprocess(img, 32)).permute(2, 0, 1)[None].float() / 255
    assert float((view - pil).abs().max()) < 4 / 255  # torch's and Pillow's antialiased bicubic agree closely
    same = torch.rand(2, 3, 32, 32)
    assert decoder_view(same, 32) is same


def test_the_residual_lands_on_the_centre_square_and_nowhere_else():
    img = _photo(300, 500)
    r = torch.full((3, 16, 16), 4 / 255)
    out = add_residual(img, r)
    assert out.shape == img.shape and out.dtype == np.uint8 and out is not img
    top, left, s = centre_square(300, 500)
    assert np.array_equal(out[:, :left], img[:, :left]) and np.array_equal(out[:, left + s:], img[:, left + s:])
    diff = out[:, left:left + s].astype(int) - img[:, left:left + s]
    assert np.all((diff == 4) | (img[:, left:left + s] > 250))  # +4 levels, clipped at white
    assert np.array_equal(add_residual(img, r, strength=0.0), img)
    half = add_residual(img, r, strength=0.5).astype(int) - img
    assert np.all(half[:, left:left + s][img[:, left:left + s] < 250] == 2)


def test_at_the_models_size_it_is_the_encoders_output():
    img = _photo(32, 32)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    y = (x + 0.03 * torch.randn(3, 32, 32)).clamp(0, 1)
    want = (y * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(add_residual(img, y - x).astype(int) - want).max() <= 1  # float rounding only


def test_the_upsampled_residual_is_read_back_by_the_view():
    """What the decoder will see of an image fingerprinted at its own size is close to the residual it was given."""
    img = _photo(512, 512)
    r = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 6 / 255
    out = add_residual(img, r)
    seen = torch.from_numpy(preprocess(out, 32)).permute(2, 0, 1).float() - \
        torch.from_numpy(preprocess(img, 32)).permute(2, 0, 1).float()
    corr = torch.corrcoef(torch.stack([seen.flatten(), r.flatten() * 255]))[0, 1]
    assert corr > 0.8, corr  # bicubic up, antialiased down: a low-passed copy of the residual


def test_an_image_too_large_to_hold_is_refused_by_size():
    with pytest.raises(GanprintError, match="larger than the 16384 px"):
        add_residual(np.zeros((MAX_SIDE + 1, 1, 3), np.uint8), torch.zeros(3, 8, 8))


def test_tiles_split_and_merge_back_row_by_row():
    from ganprint.inference.fullsize import merge_tiles, split_tiles

    v = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    t = split_tiles(v, 3)
    assert t.shape == (18, 3, 2, 2)
    assert torch.equal(t[1], v[0, :, 0:2, 2:4]) and torch.equal(t[3], v[0, :, 2:4, 0:2])  # row by row
    assert torch.equal(t[9], v[1, :, 0:2, 0:2])  # then the next image
    assert torch.equal(merge_tiles(t, 3), v)
    assert split_tiles(v, 1) is v and merge_tiles(v, 1) is v
    with pytest.raises(GanprintError, match="does not split into 4 x 4"):
        split_tiles(v, 4)


def test_a_tiled_reading_averages_the_tiles_and_every_tile_gets_the_bits():
    from ganprint.inference.fullsize import split_tiles, tiled_encode, tiled_logits

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 5))
    v = torch.rand(2, 3, 8, 8)
    tiles = split_tiles(v, 2)
    want = net(tiles).reshape(2, 4, 5).mean(1)
    assert torch.allclose(tiled_logits(net, v, 2), want)
    assert torch.equal(tiled_logits(net, v, 1), net(v))
    seen = []

    def enc(bits, x):
        seen.append(bits)
        return x + bits[:, :1, None, None] * 0.1

    bits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = tiled_encode(enc, bits, v, 2)
    assert out.shape == v.shape and torch.equal(seen[0], bits.repeat_interleave(4, 0))
    assert torch.allclose(out[0] - v[0], torch.full_like(v[0], 0.1)) and torch.equal(out[1], v[1])


def test_a_target_psnr_picks_the_strength_at_the_images_own_size():
    from ganprint.core.images import psnr_u8
    from ganprint.inference.fullsize import MAX_STRENGTH

    img = _photo(300, 500)
    r = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.02
    for target in (32.0, 40.0):
        assert psnr_u8(img, add_residual(img, r, target_psnr=target)) == pytest.approx(target, abs=0.15)
    flat = add_residual(img, torch.zeros(3, 16, 16), target_psnr=40.0)  # nothing to scale: left as it was
    assert np.array_equal(flat, img) and MAX_STRENGTH == 10.0
