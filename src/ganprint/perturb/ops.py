"""Image perturbation primitives, shared by the evaluation attacks and the training augmentations.

Every primitive takes float images x [N, 3, H, W] in [0, 1], a per-sample strength s [N] (any float dtype; a
scalar broadcasts) and an optional CPU `generator`, and returns new images of the same shape and dtype without
clamping (callers clamp). The input is never modified. Blur, noise, crops, resize, rotation and colour are
differentiable with respect to x; the real codecs are not, and training passes gradients through them with
`straight_through` or `jpeg_surrogate`. Random primitives draw from `generator` (None: the global RNG on x's
device), always in the same order, so a seeded generator reproduces them exactly.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

GREY = 0.5  # fill of the border a crop without resize leaves


def _kornia():
    # kornia is slow to import and only perturbing images needs it, so `import ganprint.api` does not load it
    import kornia

    return kornia


def per_sample(s: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A strength as a float64 CPU tensor [N] (one value per image of x); float64 keeps Python floats exact."""
    return torch.as_tensor(s, dtype=torch.float64).detach().cpu().reshape(-1).expand(x.shape[0])


def _gain(s: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return per_sample(s, x).to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] float in [0, 1] -> [N, H, W, 3] uint8 (round to nearest)."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8_hwc(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] float in [0, 1] with the dtype and device of `like`."""
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # [N, 3, H, W]
    return (t.float() / 255).to(device=like.device, dtype=like.dtype)


def codec(x: torch.Tensor, fmt: str, quality: float | torch.Tensor) -> torch.Tensor:
    """Encode and decode each image with Pillow ("JPEG", 4:2:0, or "WEBP") at its quality, rounded and clipped
    to [1, 100]; not differentiable."""
    out = []
    for a, q in zip(to_uint8_hwc(x), per_sample(quality, x).tolist()):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt, quality=round(min(max(q, 1), 100)))
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return from_uint8_hwc(np.stack(out), x)


def jpeg(x: torch.Tensor, quality: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Real JPEG (Pillow) at a per-sample quality."""
    return codec(x, "JPEG", quality)


def webp(x: torch.Tensor, quality: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Real lossy WebP (Pillow) at a per-sample quality."""
    return codec(x, "WEBP", quality)


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The value of y with the identity gradient with respect to x."""
    return x + (y - x).detach()


def jpeg_surrogate(x: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
    """The real JPEG's value with the gradient of kornia's differentiable JPEG at the same integer quality, so
    the encoder learns which frequencies survive quantisation. Needs sides divisible by 16 (4:2:0 blocks)."""
    if x.shape[-1] % 16 or x.shape[-2] % 16:
        raise ValueError(f"the differentiable JPEG needs image sides divisible by 16, got {tuple(x.shape[-2:])}")
    q = per_sample(quality, x).round().clamp(1, 100)
    y = jpeg(x, q)
    d = _kornia().enhance.jpeg_codec_differentiable(x.float(), q.to(device=x.device, dtype=torch.float32)).to(x.dtype)
    return d + (y - d).detach()


def blur_sigma_from_kernel(k: float) -> float:
    """OpenCV's sigma for a Gaussian kernel of size k (used when a spec gives `k=`): 0.3((k-1)/2 - 1) + 0.8."""
    return max(0.3 * ((k - 1) * 0.5 - 1) + 0.8, 0.0) if k > 1 else 0.0


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Gaussian blur with reflect padding at a per-sample sigma; the kernel reaches 3 sigma of the largest."""
    sig = per_sample(sigma, x)
    smax = float(sig.max())
    if smax <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    rad = min(math.ceil(3 * smax), h - 1, w - 1)
    s2 = sig.clamp_min(1e-6).to(device=x.device, dtype=x.dtype)[:, None].expand(-1, 2)  # [N, (sigma_y, sigma_x)]
    return _kornia().filters.gaussian_blur2d(x, (2 * rad + 1, 2 * rad + 1), s2, border_type="reflect")


def gaussian_noise(x: torch.Tensor, std: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Add N(0, std^2) noise, std per sample; drawn in float32 on the CPU when a generator is given."""
    dev = x.device if generator is None else "cpu"
    n = torch.randn(x.shape, generator=generator, device=dev, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    return x + n * _gain(std, x)


def side(n: int, frac: float) -> int:
    """round(n * frac) pixels, at least 1 and at most n."""
    return max(1, min(n, round(n * frac)))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _crop_corner(h: int, w: int, ch: int, cw: int, generator, random: bool) -> tuple[int, int]:
    if not random:
        return (h - ch) // 2, (w - cw) // 2
    t = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
    return t, int(torch.randint(0, w - cw + 1, (1,), generator=generator))


def crop(x: torch.Tensor, frac: float | torch.Tensor, generator=None, *, random: bool = False,
         rescale: bool = True) -> torch.Tensor:
    """Keep `frac` of each side (per sample) at the centre or at a random position. `rescale`: resize the kept
    part back to H x W (antialiased bilinear); otherwise leave it in place and fill the cut border with grey."""
    h, w = x.shape[-2:]
    out = []
    for i, f in enumerate(per_sample(frac, x).tolist()):
        ch, cw = side(h, f), side(w, f)
        t, l = _crop_corner(h, w, ch, cw, generator, random)
        part = x[i:i + 1, :, t:t + ch, l:l + cw]  # [1, 3, ch, cw]
        if rescale:
            out.append(_resize(part, (h, w)))
        else:
            out.append(F.pad(part, (l, w - l - cw, t, h - t - ch), value=GREY))
    return torch.cat(out)


def random_crop(x: torch.Tensor, frac: float | torch.Tensor, generator=None) -> torch.Tensor:
    """`crop` at a random position (drawn from `generator`), resized back."""
    return crop(x, frac, generator, random=True)


def crop_no_resize(x: torch.Tensor, frac: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Centre `crop` left at its scale and place, the border grey."""
    return crop(x, frac, generator, rescale=False)


def resize_roundtrip(x: torch.Tensor, scale: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Shrink each image to `scale` of its side and bring it back to H x W (antialiased bilinear)."""
    h, w = x.shape[-2:]
    return torch.cat([_resize(_resize(x[i:i + 1], (side(h, s), side(w, s))), (h, w))
                      for i, s in enumerate(per_sample(scale, x).tolist())])


def shrink(x: torch.Tensor, scale: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Resize down to `scale` of each side (antialiased bilinear) and keep the smaller image, as a site that
    publishes a smaller copy does. One scale per batch (the images of a batch keep one size); evaluation only."""
    s = per_sample(scale, x)
    if len(s) and not bool((s == s[0]).all()):
        raise ValueError("shrink takes one scale per batch (its images keep one size)")
    h, w = x.shape[-2:]
    f = float(s[0]) if len(s) else 1.0
    return _resize(x, (side(h, f), side(w, f)))


def sharpen(x: torch.Tensor, amount: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Unsharp mask: x + amount * (x - blur(x, sigma 1)), the sharpening of screenshots and phone galleries."""
    return x + _gain(amount, x) * (x - gaussian_blur(x, 1.0))


def rotate(x: torch.Tensor, degrees: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Rotation about the centre (bilinear), black corners."""
    ang = per_sample(degrees, x).to(device=x.device, dtype=x.dtype)
    return _kornia().geometry.transform.rotate(x, ang, mode="bilinear", padding_mode="zeros", align_corners=False)


def brightness(x: torch.Tensor, factor: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Multiply every pixel by `factor`."""
    return x * _gain(factor, x)


def contrast(x: torch.Tensor, factor: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Scale the distance to the image's mean grey by `factor` (clipped to [0, 1])."""
    return _kornia().enhance.adjust_contrast_with_mean_subtraction(x, _gain(factor, x).flatten())


def saturation(x: torch.Tensor, factor: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Scale the distance to each pixel's grey (ITU-R 601 luma) by `factor` (clipped to [0, 1])."""
    return _kornia().enhance.adjust_saturation_with_gray_subtraction(x, _gain(factor, x).flatten())


def color_jitter(x: torch.Tensor, amplitude: float | torch.Tensor, generator=None) -> torch.Tensor:
    """Random colour change of per-sample amplitude a: brightness +-a (added), contrast gain and HSV saturation
    x(1 +- a), each sign and size drawn uniformly."""
    enhance = _kornia().enhance
    a = _gain(amplitude, x).flatten()  # [N]
    r = torch.rand(3, x.shape[0], generator=generator).to(x) * 2 - 1  # [3, N] in [-1, 1]
    x = enhance.adjust_brightness(x, a * r[0], clip_output=False)
    x = enhance.adjust_contrast(x, 1 + a * r[1], clip_output=False)
    return enhance.adjust_saturation(x, 1 + a * r[2])


def identity(x: torch.Tensor, strength=None, generator=None) -> torch.Tensor:
    """An exact copy."""
    return x.clone()
