"""StyleGAN2 (Karras et al., CVPR 2020, "Analyzing and Improving the Image Quality of StyleGAN") in plain PyTorch.

Config-F-like: skip generator, residual discriminator with minibatch stddev, equalised learning rate, weight
(de)modulation (Eq. 1-3), FIR resampling with [1,3,3,1]. Written from the paper; no custom CUDA ops. Images are
float [N, 3, R, R] in [-1, 1].

Public layer API (the scalable-fingerprint generator is built from these):

- `setup_filter(f)` -> normalised 2-D FIR kernel; `upfirdn2d(x, f, up, down, padding, gain)`;
  `upsample2d(x, f)` (x2, keeps the signal gain); `downsample2d(x, f)` (/2).
- `FullyConnectedLayer(in, out, bias=True, activation="linear"|"lrelu", lr_multiplier=1, bias_init=0)`:
  equalised-lr dense layer, `forward(x [N, in]) -> [N, out]`.
- `Conv2dLayer(in, out, kernel_size, bias=True, activation, up=1, down=1, resample_filter)`:
  equalised-lr conv, `forward(x, gain=1)`; `up=2` FIR-upsamples first, `down=2` blurs then strides.
- `modulated_conv2d(x, weight, styles, demodulate=True, up=1, down=1, padding=None, resample_filter=None,
  fused=True)`: x [N, I, H, W], weight [O, I, k, k], styles [N, I] -> [N, O, H', W'] (grouped conv when fused).
- `MappingNetwork(z_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, normalize_input=True)`:
  `forward(z [N, z_dim], psi=1, update_w_avg=False) -> ws [N, num_ws, w_dim]` (`num_ws=None` -> [N, w_dim]).
  Any vector can be fed as "z" (the scalable model feeds a fingerprint with `normalize_input=False`).
- `SynthesisLayer(in, out, w_dim, resolution, up=1, modulated=True, use_noise=True)`:
  (modulated or plain equalised) conv + per-pixel noise + bias + lrelu; `forward(x, w, noise_mode, noise)`.
  With `modulated=False` there is no affine and `w` is ignored (the plain-conv swap of the scalable model).
- `ToRGBLayer(in, img_channels, w_dim, modulated=True)`: 1x1 modulated conv without demodulation + bias.
- `SynthesisBlock(in, out, w_dim, resolution, img_channels, is_last, modulated=True, const_input=True)`:
  one resolution of the skip generator; `forward(x, img, ws [N, num_conv + num_torgb, w_dim], noise_mode,
  noise)`. The first block (`in_channels=0`) owns a learned 4x4 constant unless `const_input=False`, in which
  case the caller passes `x` [N, out, 4, 4] (e.g. a dense layer of z).
- `SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max, modulated_resolutions,
  const_input)`: `forward(ws, x=None, noise_mode, noise=None) -> img`; `noise_shapes()` lists per-layer
  noise shapes so that callers can draw noise from their own generators.
- `DiscriminatorBlock(in, tmp, out, resolution, img_channels)`: residual block, fromRGB when `in_channels=0`.
- `MinibatchStdLayer(group_size=4, num_channels=1)`; `DiscriminatorEpilogue(in, resolution, mbstd_group_size,
  mbstd_num_channels, out_features=1)`: `mbstd_group_size=0` disables minibatch stddev.
- `Generator(GeneratorConfig)`, `Discriminator(DiscriminatorConfig)`; the export kind is "stylegan2-G".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ganprint.core.artifacts import register_kind

# ----------------------------------------------------------------------------------------------------------------
# Activations and FIR resampling.

_LRELU_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0)  # keeps the signal variance of a leaky ReLU ~1 (equalised-lr convention)


def _act(x: torch.Tensor, activation: str, gain: float = 1.0) -> torch.Tensor:
    """Apply 'linear' or 'lrelu' (with its sqrt(2) gain) times an extra `gain`."""
    if activation == "lrelu":
        return F.leaky_relu(x, _LRELU_SLOPE) * (_LRELU_GAIN * gain)
    if activation == "linear":
        return x * gain if gain != 1 else x
    raise ValueError(f"unknown activation {activation!r}")


def setup_filter(f=(1, 3, 3, 1)) -> torch.Tensor:
    """A separable 1-D tap list -> its normalised 2-D outer product [k, k] (sums to 1)."""
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 1:
        f = f[:, None] * f[None, :]  # [k, k]
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), FIR-filter with `f` [k, k], downsample.

    x [N, C, H, W] -> [N, C, (H*up + py0 + py1 - k) // down + 1, ...]. The filter is scaled by `gain`.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)  # [N, C, H, 1, W, 1]
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])  # [N, C, H, up, W, up]
        x = x.reshape(n, c, h * up, w * up)  # [N, C, H*up, W*up]
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # True convolution (not correlation): flip the kernel; depthwise via groups.
    kernel = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)  # [C, 1, k, k]
    # Depthwise convs are several times faster on CPU (oneDNN) in channels-last layout.
    x = F.conv2d(x.contiguous(memory_format=torch.channels_last), kernel, groups=c).contiguous()
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR upsampling by `up`: [N, C, H, W] -> [N, C, H*up, W*up] (gain up**2 keeps the mean)."""
    k = f.shape[-1]
    p0, p1 = (k + up - 1) // 2, (k - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """FIR downsampling by `down`: [N, C, H, W] -> [N, C, H/down, W/down]."""
    k = f.shape[-1]
    p0, p1 = (k - down + 1) // 2, (k - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


def _conv_resample(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor | None, up: int, down: int,
                   padding: int | None, groups: int = 1) -> torch.Tensor:
    """Conv (correlation with `weight` [O, I/groups, k, k]), optionally x`up` before or /`down` after it.

    Up: a stride-`up` transposed conv followed by the FIR blur (StyleGAN2's "up" conv). Down: FIR blur at full
    resolution then a strided conv. Both keep the output at exactly H*up or H/down.
    """
    k = weight.shape[-1]
    fw = f.shape[-1] if f is not None else 0
    if up > 1:
        # conv2d(zero_insert(x), w) equals conv_transpose2d(x, flip(w)) up to the border; conv_transpose wants
        # weights [groups * I/groups, O/groups, k, k].
        o, i = weight.shape[0] // groups, weight.shape[1]
        wt = weight.reshape(groups, o, i, k, k).transpose(1, 2).reshape(groups * i, o, k, k).flip([2, 3])
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)  # [N, O, (H-1)*up + k, ...]
        p = (fw - up) - (k - 1)
        return upfirdn2d(x, f, padding=((p + 1) // 2 + up - 1, p // 2 + 1) * 2, gain=up * up)
    if down > 1:
        # Blur at full resolution, then a strided conv (StyleGAN2's "down" conv); total padding (fw - down) + (k - 1).
        p = (fw - down) + (k - 1)
        x = upfirdn2d(x, f, padding=((p + 1) // 2, p // 2) * 2)
        return F.conv2d(x, weight, stride=down, groups=groups)
    return F.conv2d(x, weight, padding=k // 2 if padding is None else padding, groups=groups)


# ----------------------------------------------------------------------------------------------------------------
# Equalised-learning-rate layers (ProGAN, Sec. 4.1): weights ~ N(0, 1) scaled at run time by 1/sqrt(fan_in).


class FullyConnectedLayer(nn.Module):
    """Equalised-lr dense layer: x [N, in] -> act(x W^T * gain + b) [N, out]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        return _act(F.linear(x, w, b), self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalised-lr conv: x [N, in, H, W] -> [N, out, H*up/down, W*up/down], with bias and activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, resample_filter=(1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.out_channels, self.activation = in_channels, out_channels, activation
        self.up, self.down = up, down
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = _conv_resample(x, self.weight * self.weight_gain, self.resample_filter, self.up, self.down, None)
        if self.bias is not None:
            x = x + self.bias[None, :, None, None]
        return _act(x, self.activation, gain)

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, k={self.weight.shape[-1]}, up={self.up}, "
                f"down={self.down}, act={self.activation}")


# ----------------------------------------------------------------------------------------------------------------
# Weight modulation / demodulation.


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, down: int = 1, padding: int | None = None,
                     resample_filter: torch.Tensor | None = None, fused: bool = True) -> torch.Tensor:
    """Modulated convolution (StyleGAN2 Eq. 1-3): x [N, I, H, W], weight [O, I, k, k], styles [N, I] -> [N, O, ., .].

    w'_{ijk} = s_i * w_{ijk} (Eq. 1); with `demodulate`, w'' = w' / sqrt(sum_{i,k} w'^2 + 1e-8) (Eq. 3). `fused`
    runs one grouped conv with a per-sample kernel; otherwise the input is scaled by s, convolved with the shared
    kernel and the output scaled by the demodulation coefficients (same result, cheaper kernels on some devices).
    `padding=None` means "same". `up`/`down` of 2 need `resample_filter` (see `setup_filter`).
    """
    n, in_ch, h, w = x.shape
    out_ch, in_ch_w, kh, kw = weight.shape
    assert in_ch == in_ch_w, f"x has {in_ch} channels, weight expects {in_ch_w}"
    assert styles.shape == (n, in_ch), f"styles must be [{n}, {in_ch}], got {list(styles.shape)}"
    if (up > 1 or down > 1) and resample_filter is None:
        resample_filter = setup_filter().to(x.device)

    if fused:
        wts = weight[None] * styles[:, None, :, None, None]  # [N, O, I, k, k]  (Eq. 1)
        if demodulate:
            dcoefs = (wts.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]  (Eq. 2-3)
            wts = wts * dcoefs[:, :, None, None, None]
        x = x.reshape(1, n * in_ch, h, w)  # [1, N*I, H, W]: batch folded into groups
        wts = wts.reshape(n * out_ch, in_ch, kh, kw)  # [N*O, I, k, k]
        x = _conv_resample(x, wts, resample_filter, up, down, padding, groups=n)
        return x.reshape(n, out_ch, x.shape[2], x.shape[3])  # [N, O, H', W']

    x = x * styles[:, :, None, None]  # [N, I, H, W]
    x = _conv_resample(x, weight, resample_filter, up, down, padding)
    if demodulate:
        # sum_{i,k} (s_i w_oik)^2 = sum_i s_i^2 sum_k w_oik^2
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
        x = x * dcoefs[:, :, None, None]
    return x


# ----------------------------------------------------------------------------------------------------------------
# Mapping network.


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm: divide by the root mean square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim] through `num_layers` equalised-lr lrelu dense layers (lr x0.01).

    Tracks the running mean of w (`w_avg`) for the truncation trick when `update_w_avg=True`.
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8, lr_multiplier: float = 0.01,
                 normalize_input: bool = True, w_avg_beta: float = 0.995, hidden_dim: int | None = None):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.normalize_input, self.w_avg_beta = normalize_input, w_avg_beta
        hidden = w_dim if hidden_dim is None else hidden_dim
        dims = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        self.layers = nn.ModuleList(
            FullyConnectedLayer(dims[i], dims[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            for i in range(num_layers))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [N, {self.z_dim}], got {list(z.shape)}"
        x = normalize_2nd_moment(z) if self.normalize_input else z
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if psi != 1:
            x = self.w_avg.lerp(x, psi)  # truncation trick: w_avg + psi (w - w_avg)
        if self.num_ws is None:
            return x
        return x[:, None, :].repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]


# ----------------------------------------------------------------------------------------------------------------
# Synthesis network.


class SynthesisLayer(nn.Module):
    """(Modulated) 3x3 conv + per-pixel noise + bias + lrelu: x [N, in, r', r'] -> [N, out, r, r].

    `up=2` doubles the resolution. With `modulated=False` this is a plain equalised conv and `w` is ignored.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, modulated: bool = True, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter=(1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.up, self.modulated, self.use_noise, self.activation = (
            resolution, up, modulated, use_noise, activation)
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        # Style affine A (bias 1 so that modulation starts as identity).
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1) if modulated else None
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor | None, noise_mode: str = "random",
                noise: torch.Tensor | None = None, fused: bool = True) -> torch.Tensor:
        """noise_mode 'random' (fresh N(0,1)), 'const' (fixed buffer) or 'none'; an explicit `noise` [N, 1, r, r]
        overrides it."""
        if self.modulated:
            styles = self.affine(w)  # [N, I]
            x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                                 resample_filter=self.resample_filter, fused=fused)
        else:
            x = _conv_resample(x, self.weight * self.weight_gain, self.resample_filter, self.up, 1, None)
        if self.use_noise:
            if noise is None and noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            elif noise is None and noise_mode == "const":
                noise = self.noise_const[None, None]  # [1, 1, r, r]
            if noise is not None:
                x = x + noise * self.noise_strength
        return _act(x + self.bias[None, :, None, None], self.activation)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation + bias: x [N, in, r, r] -> [N, img_channels, r, r]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1, modulated: bool = True):
        super().__init__()
        self.modulated = modulated
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1) if modulated else None
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None, fused: bool = True) -> torch.Tensor:
        if self.modulated:
            # Without demodulation the equalised-lr gain must be applied; folding it into the styles is cheapest.
            styles = self.affine(w) * self.weight_gain  # [N, I]
            x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        else:
            x = F.conv2d(x, self.weight * self.weight_gain, padding=self.weight.shape[-1] // 2)
        return x + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (x [N, in, r/2, r/2], img [N, C, r/2, r/2], ws) -> (x, img) at r.

    `ws` is [N, num_conv + num_torgb, w_dim]. The first block (`in_channels=0`) runs at 4x4 from a learned
    constant (or from a caller-supplied `x` when `const_input=False`) and has a single conv.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int = 3,
                 is_last: bool = False, modulated: bool = True, const_input: bool = True, use_noise: bool = True,
                 resample_filter=(1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.is_last, self.const_input = is_last, const_input
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        if in_channels == 0 and const_input:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, modulated=modulated,
                                        use_noise=use_noise, resample_filter=resample_filter)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, modulated=modulated,
                                    use_noise=use_noise, resample_filter=resample_filter)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, modulated=modulated)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def noise_layers(self) -> list[SynthesisLayer]:
        """The noise-taking layers of this block, in call order."""
        layers = [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]
        return [m for m in layers if m.use_noise]

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "random", noise: list[torch.Tensor] | None = None,
                fused: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        n = ws.shape[0]
        noise = list(noise) if noise is not None else []
        take = lambda: noise.pop(0) if noise else None  # noqa: E731 - per-layer explicit noise, in order
        if self.in_channels == 0:
            if self.const_input:
                x = self.const[None].repeat(n, 1, 1, 1)  # [N, C, 4, 4]
            else:
                assert x is not None and x.shape[1:] == (self.out_channels, self.resolution, self.resolution), \
                    "a block without a constant input needs x [N, C, 4, 4] from the caller"
            x = self.conv1(x, ws[:, 0], noise_mode, take() if self.conv1.use_noise else None, fused)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, take() if self.conv0.use_noise else None, fused)
            x = self.conv1(x, ws[:, 1], noise_mode, take() if self.conv1.use_noise else None, fused)
        # Skip architecture: the image is the sum of upsampled ToRGB outputs of every resolution.
        y = self.torgb(x, ws[:, self.num_conv], fused)
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


def channels_for(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: min(channel_base / resolution, channel_max)."""
    return min(channel_base // resolution, channel_max)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> img [N, img_channels, R, R] in ~[-1, 1], skip architecture from 4x4 to R.

    `modulated_resolutions` (None = all) selects which resolutions use modulated convs; the others use plain
    equalised convs (the scalable model's `--res-modulated-range`).
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 3, channel_base: int = 16384,
                 channel_max: int = 512, modulated_resolutions: list[int] | None = None, const_input: bool = True,
                 use_noise: bool = True):
        super().__init__()
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0, "resolution must be 2^k >= 4"
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        self.blocks = nn.ModuleList()
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = 0 if res == 4 else channels_for(res // 2, channel_base, channel_max)
            out_ch = channels_for(res, channel_base, channel_max)
            mod = modulated_resolutions is None or res in modulated_resolutions
            block = SynthesisBlock(in_ch, out_ch, w_dim, res, img_channels, is_last=res == img_resolution,
                                   modulated=mod, const_input=const_input, use_noise=use_noise)
            self.blocks.append(block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last ToRGB

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Per-sample shapes [1, r, r] of the explicit noise list accepted by `forward`, in order."""
        return [(1, m.resolution, m.resolution) for b in self.blocks for m in b.noise_layers()]

    def forward(self, ws: torch.Tensor, x: torch.Tensor | None = None, noise_mode: str = "random",
                noise: list[torch.Tensor] | None = None, fused: bool = True) -> torch.Tensor:
        """`x` is the 4x4 input when built with `const_input=False`; `noise` a list of [N, 1, r, r]."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        img, w_idx, n_idx = None, 0, 0
        for block in self.blocks:
            block_ws = ws[:, w_idx: w_idx + block.num_conv + block.num_torgb]  # ToRGB shares the next conv's w
            k = len(block.noise_layers())
            block_noise = noise[n_idx: n_idx + k] if noise is not None else None
            x, img = block(x, img, block_ws, noise_mode, block_noise, fused)
            w_idx += block.num_conv
            n_idx += k
        return img


# ----------------------------------------------------------------------------------------------------------------
# Generator.


@dataclass
class GeneratorConfig:
    img_resolution: int = 32  # output side in pixels, power of two >= 4
    img_channels: int = 3  # RGB
    z_dim: int = 512  # latent size
    w_dim: int = 512  # intermediate latent (style) size
    mapping_layers: int = 8  # depth of the mapping network
    mapping_lr_multiplier: float = 0.01  # equalised-lr multiplier of the mapping net (StyleGAN: 0.01)
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    use_noise: bool = True  # per-pixel noise inputs

    def validate(self) -> "GeneratorConfig":
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        if min(self.z_dim, self.w_dim, self.mapping_layers, self.channel_base, self.channel_max) < 1:
            raise ValueError(f"generator dims must be positive: {self}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        """Build from a dict; unknown keys are an error (catches typos and incompatible artifacts)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown GeneratorConfig keys: {sorted(unknown)}")
        return cls(**d).validate()


class Generator(nn.Module):
    """StyleGAN2 generator (skip architecture): z [N, z_dim] -> img [N, C, R, R] in ~[-1, 1]."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.z_dim, self.w_dim, self.img_resolution = cfg.z_dim, cfg.w_dim, cfg.img_resolution
        self.synthesis = SynthesisNetwork(cfg.w_dim, cfg.img_resolution, cfg.img_channels, cfg.channel_base,
                                          cfg.channel_max, use_noise=cfg.use_noise)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers,
                                      lr_multiplier=cfg.mapping_lr_multiplier)

    def forward(self, z: torch.Tensor, psi: float = 1.0, noise_mode: str = "random",
                noise: list[torch.Tensor] | None = None, update_w_avg: bool = False,
                fused: bool = True) -> torch.Tensor:
        """z [N, z_dim] -> img [N, C, R, R]; `psi` truncates towards w_avg, `noise` as in SynthesisNetwork."""
        ws = self.mapping(z, psi=psi, update_w_avg=update_w_avg)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, fused=fused)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Per-sample shapes of the explicit noise inputs (see `SynthesisNetwork.noise_shapes`)."""
        return self.synthesis.noise_shapes()


# ----------------------------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(nn.Module):
    """Residual D block: (x [N, in, r, r] | None, img [N, C, r, r]) -> x [N, out, r/2, r/2].

    With `in_channels=0` the block starts from the image through a 1x1 fromRGB conv (to `tmp_channels`).
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int = 3, resample_filter=(1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu")
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2,
                                 resample_filter=resample_filter)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None = None) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        # Residual: both branches scaled by sqrt(1/2) to keep the variance.
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Append the std over groups of `group_size` samples as `num_channels` extra feature maps (ProGAN)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:  # the batch must split into equal groups; shrink the group otherwise
            g -= 1
        f = self.num_channels
        y = x.reshape(g, n // g, f, c // f, h, w)  # [G, M, F, c, H, W]
        y = y - y.mean(dim=0)  # deviation over each group
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [M, F, c, H, W]
        y = y.mean(dim=[2, 3, 4])  # [M, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # [N, F, H, W]; sample i belongs to group column i % M
        return torch.cat([x, y], dim=1)  # [N, C + F, H, W]


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: (minibatch stddev) + 3x3 conv + dense + dense: x [N, in, 4, 4] -> [N, out_features]."""

    def __init__(self, in_channels: int, resolution: int = 4, mbstd_group_size: int = 4, mbstd_num_channels: int = 1,
                 out_features: int = 1):
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_group_size > 0 else None
        extra = mbstd_num_channels if self.mbstd is not None else 0
        self.conv = Conv2dLayer(in_channels + extra, in_channels, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(in_channels * resolution * resolution, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))  # [N, in*16] -> [N, out_features]


@dataclass
class DiscriminatorConfig:
    img_resolution: int = 32  # input side in pixels
    img_channels: int = 3
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group_size: int = 4  # 0 disables minibatch stddev
    mbstd_num_channels: int = 1
    out_features: int = 1  # 1 = real/fake logit; a decoder can ask for more

    def validate(self) -> "DiscriminatorConfig":
        r = self.img_resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {r}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "DiscriminatorConfig":
        """Build from a dict; unknown keys are an error."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown DiscriminatorConfig keys: {sorted(unknown)}")
        return cls(**d).validate()


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: img [N, C, R, R] in [-1, 1] -> logits [N, out_features]."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg.validate()
        ch = lambda r: channels_for(r, cfg.channel_base, cfg.channel_max)  # noqa: E731
        resolutions = [2 ** i for i in range(int(math.log2(cfg.img_resolution)), 2, -1)]  # R, R/2, ..., 8
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(0 if r == cfg.img_resolution else ch(r), ch(r), ch(r // 2), r, cfg.img_channels)
            for r in resolutions)
        self.epilogue = DiscriminatorEpilogue(ch(4), 4, cfg.mbstd_group_size, cfg.mbstd_num_channels,
                                              cfg.out_features)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = None
        for block in self.blocks:
            x = block(x, img)
        return self.epilogue(x)


# ----------------------------------------------------------------------------------------------------------------
# Artifacts and helpers.


@register_kind("stylegan2-G")
def _build_generator(config: dict) -> Generator:
    return Generator(GeneratorConfig.from_dict(config))


def generator_config_dict(cfg: GeneratorConfig) -> dict:
    """The JSON-able config stored in a `stylegan2-G` export."""
    return asdict(cfg)


def seeded_inputs(G: Generator, seeds: list[int], device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """z [N, z_dim] and per-layer noise [N, 1, r, r], each row a pure function of its seed (not of the batch)."""
    zs, noises = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        zs.append(torch.randn(1, G.z_dim, generator=g))
        noises.append([torch.randn(1, *shape, generator=g) for shape in G.noise_shapes()])
    z = torch.cat(zs).to(device)  # [N, z_dim]
    noise = [torch.cat([n[i] for n in noises]).to(device) for i in range(len(G.noise_shapes()))]
    return z, noise


def _uint8_levels(img: torch.Tensor) -> torch.Tensor:
    """img in [-1, 1] -> its saved 8-bit levels as floats 0..255 (rounded, clipped): the one mapping both
    `to_uint8` and `quantize_uint8_st` use."""
    return (img * 127.5 + 128).clamp(0, 255).floor()


def quantize_uint8_st(img: torch.Tensor) -> torch.Tensor:
    """img in [-1, 1] -> the value its saved 8-bit image reads back as (clipped, rounded as `to_uint8`), so a
    decoder trained on it reads what users save. Only the rounding is straight-through; the clipping keeps its
    zero gradient: with an identity gradient there, the bit loss pushed saturated pixels ever further out of range,
    where D spots them (measured: the GAN diverged within 30 kimg)."""
    x = img.clamp(-1, 1)
    q = _uint8_levels(img.detach()) / 127.5 - 1  # read back as decode_images reads a file
    return x + (q - x.detach())


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """img [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (rounded, clipped)."""
    x = _uint8_levels(img.detach().float().cpu()).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()
