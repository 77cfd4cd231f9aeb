"""Fingerprints at the image's own size: the networks work at their resolution R, the user's pixels never get resized.

The decoder's view of an image of any size is the one `ganprint detect` has always read: the centre square (the
shorter side), resized to R x R (antialiased bicubic). Embedding at the image's size is its inverse: the encoder
fingerprints that R x R view, and its residual (fingerprinted minus view) is brought back to the square's size by
bicubic upsampling and added to the original pixels there, scaled by `strength`. The rest of the image (the
margins of a non-square image) is left exactly as it was, and so is everything at `strength` 0.

A residual made at R px and upsampled is a low-frequency pattern at the image's size, so what a site does to a
large image (re-encoding, resizing, mild blur) barely changes the R-px view the decoder reads.

With `tiles` n > 1 the view is n R x n R and is read as n x n tiles of R x R: the encoder fingerprints every tile
with the same bits and the decoder averages its logits over the tiles. The photo's own content is what limits a
reading at high PSNR, and it differs from tile to tile, so averaging n^2 readings lets the same bits through at a
far lower strength (benchmarks/experiments/wild/RESULTS-wild.md). The grid is a fraction of the centre square, so
it scales with the image and a resized copy is read the same way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganprint.core.errors import GanprintError

MAX_SIDE = 16384  # 16k x 16k x 3 float32 is 3 GiB: beyond this an image is refused rather than swapped
MAX_STRENGTH = 10.0  # bounds.STRENGTH's top: a flat image is not fingerprinted at any cost to reach a PSNR
MAX_TILES = 8  # tiles per side: 64 decoder passes per image, and tiles of 1/8 of the side


def centre_square(h: int, w: int) -> tuple[int, int, int]:
    """(top, left, side) of the centre square of an h x w image, with `ganprint.core.images.preprocess`'s offsets."""
    s = min(h, w)
    return int(round((h - s) / 2.0)), int(round((w - s) / 2.0)), s


def decoder_view(x01: torch.Tensor, resolution: int) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> the decoder's view [N, 3, R, R]: centre square, antialiased bicubic resize.
    An R x R batch comes back as it is."""
    h, w = x01.shape[-2:]
    if h == w == resolution:
        return x01
    top, left, s = centre_square(h, w)
    sq = x01[..., top:top + s, left:left + s]
    if s == resolution:
        return sq
    return F.interpolate(sq, size=(resolution, resolution), mode="bicubic", align_corners=False,
                         antialias=True).clamp(0, 1)


def add_residual(full_u8: np.ndarray, residual: torch.Tensor, strength: float = 1.0,
                 target_psnr: float | None = None) -> np.ndarray:
    """The image `full_u8` (uint8 [H, W, 3], any size) with `strength` x `residual` (float [3, R, R], in units of
    [0, 1]) upsampled onto its centre square; returns a new uint8 array of the same shape, the margins unchanged.
    `target_psnr` (dB) replaces `strength` by the one that puts this image's PSNR there (before 8-bit rounding and
    clipping, which move it by about a tenth of a dB where many pixels clip), at most `MAX_STRENGTH`.

    Works one image at a time in float32, so memory is a few times the image's, whatever the data set's size.
    """
    h, w = full_u8.shape[:2]
    if max(h, w) > MAX_SIDE:
        raise GanprintError(f"an image of {w}x{h} px is larger than the {MAX_SIDE} px per side this reads at its "
                            "own size; shrink it first")
    top, left, s = centre_square(h, w)
    r = residual.detach().to("cpu", torch.float32)[None]  # [1, 3, R, R]
    if r.shape[-1] != s:
        r = F.interpolate(r, size=(s, s), mode="bicubic", align_corners=False)
    r = r[0].permute(1, 2, 0).mul_(255.0)  # [s, s, 3] in grey levels, at strength 1
    if target_psnr is not None:
        mse1 = float(r.square().sum()) / (h * w * 3)  # the margins add no error
        strength = MAX_STRENGTH if mse1 == 0 else \
            min(MAX_STRENGTH, (255.0 ** 2 * 10 ** (-float(target_psnr) / 10) / mse1) ** 0.5)
    r.mul_(float(strength))
    out = full_u8.copy()
    sq = torch.from_numpy(out[top:top + s, left:left + s]).float()
    sq.add_(r).add_(0.5).clamp_(0, 255)
    out[top:top + s, left:left + s] = sq.to(torch.uint8).numpy()
    return out


def split_tiles(v: torch.Tensor, tiles: int) -> torch.Tensor:
    """[N, C, nR, nR] -> [N * n^2, C, R, R], the tiles of each image row by row (n = `tiles`)."""
    if tiles == 1:
        return v
    n_img, c, h, w = v.shape
    r = h // tiles
    if h != w or r * tiles != h:
        raise GanprintError(f"a {w}x{h} view does not split into {tiles} x {tiles} square tiles")
    return v.reshape(n_img, c, tiles, r, tiles, r).permute(0, 2, 4, 1, 3, 5).reshape(n_img * tiles * tiles, c, r, r)


def merge_tiles(t: torch.Tensor, tiles: int) -> torch.Tensor:
    """The inverse of `split_tiles`: [N * n^2, C, R, R] -> [N, C, nR, nR]."""
    if tiles == 1:
        return t
    m, c, r, _ = t.shape
    n_img = m // (tiles * tiles)
    return t.reshape(n_img, tiles, tiles, c, r, r).permute(0, 3, 1, 4, 2, 5).reshape(n_img, c, tiles * r, tiles * r)


def tiled_logits(net, v: torch.Tensor, tiles: int) -> torch.Tensor:
    """The decoder `net`'s logits [N, K] for views [N, 3, nR, nR]: the mean over the n x n tiles' logits."""
    if tiles == 1:
        return net(v)
    logits = net(split_tiles(v, tiles))  # [N * n^2, K]
    return logits.reshape(v.shape[0], tiles * tiles, -1).mean(dim=1)


def tiled_encode(enc, bits: torch.Tensor, x: torch.Tensor, tiles: int) -> torch.Tensor:
    """The encoder `enc` on views [N, 3, nR, nR]: every tile fingerprinted with its image's bits [N, K]."""
    if tiles == 1:
        return enc(bits, x)
    per_tile = bits.repeat_interleave(tiles * tiles, dim=0)
    return merge_tiles(enc(per_tile, split_tiles(x, tiles)), tiles)
