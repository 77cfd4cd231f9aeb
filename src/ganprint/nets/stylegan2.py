"""StyleGAN2 networks (Karras et al., CVPR 2020, "Analyzing and Improving the Image Quality of StyleGAN").

What the paper describes, in plain PyTorch with no custom kernels: an 8-layer mapping network z -> w (Sec. 2,
learning rate x0.01), a synthesis network whose convolutions are modulated by styles A(w) and demodulated (Eq. 1-3),
per-pixel noise inputs, the "skip" generator (Fig. 7: the image is the sum of upsampled tRGB outputs), the residual
discriminator with a minibatch-stddev head, and equalised learning rate (ProGAN Sec. 4.1: weights ~ N(0, 1),
scaled at run time by 1/sqrt(fan-in)). Resampling is FIR filtering with the separable [1, 3, 3, 1] kernel.
Images are float [N, 3, R, R] in [-1, 1].

The module and parameter names (`mapping.layers.0.weight`, `synthesis.blocks.1.conv0.affine.bias`,
`blocks.0.fromrgb.weight`, `epilogue.fc.weight`, ...) are the state-dict keys of ganprint exports: keep them.

Building blocks the scalable generator reuses (`ganprint.nets.scalable`):
- `setup_filter`, `upfirdn2d`, `upsample2d`, `downsample2d`: FIR resampling.
- `modulated_conv2d(x [N, I, H, W], weight [O, I, k, k], styles [N, I], demodulate, up, down,
  resample_filter, fused)`: `fused` runs one grouped convolution with a kernel per sample; otherwise the styles
  scale the activations around one shared convolution. Both give the same result.
- `demodulation_coefficients(weight, styles)`: 1 / sigma of Eq. 3, [N, O]; `fold_fingerprint` bakes it in.
- `FullyConnectedLayer`, `Conv2dLayer`: equalised-lr dense and convolution layers.
- `MappingNetwork`: any vector can be its input; the scalable model feeds a fingerprint, unnormalised.
- `SynthesisLayer` / `ToRGBLayer` with `modulated=False` become plain equalised convolutions that ignore w.
- `SynthesisBlock` / `SynthesisNetwork` with `const_input=False` take the 4x4 input from the caller.
- `Discriminator` with `mbstd_group_size=0` and `out_features` > 1 is the scalable model's decoder.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganprint.core.artifacts import check_config_keys, register_kind

NOISE_MODES = ("random", "const", "none")


def _activate(x: torch.Tensor, activation: str, gain: float = 1.0) -> torch.Tensor:
    """'linear' or 'lrelu' (slope 0.2); lrelu is scaled by sqrt(2) so that unit-variance inputs stay unit-variance."""
    if activation == "lrelu":
        return F.leaky_relu(x, 0.2) * (gain * math.sqrt(2))
    if activation != "linear":
        raise ValueError(f"activation must be 'linear' or 'lrelu', got {activation!r}")
    return x if gain == 1 else x * gain


# ---------------------------------------------------------------------------------------------------------------
# FIR resampling.


def setup_filter(f=(1, 3, 3, 1)) -> torch.Tensor:
    """FIR taps -> a 2-D kernel [k, k] that sums to one (1-D taps are applied along both axes)."""
    taps = torch.as_tensor(f, dtype=torch.float32)
    kernel = torch.outer(taps, taps) if taps.ndim == 1 else taps
    return kernel / kernel.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with `f` [k, k] times `gain`, keep every `down`-th sample.

    `padding` is (left, right, top, bottom), applied after upsampling; negative values crop.
    x [N, C, H, W] -> [N, C, (H*up + top + bottom - k) // down + 1, (W*up + left + right - k) // down + 1].
    """
    c = x.shape[1]
    kernel = (f * gain).to(dtype=x.dtype, device=x.device)
    kh, kw = kernel.shape
    left, right, top, bottom = padding
    if up == 1:
        # conv2d correlates, so the kernel is flipped to convolve; one copy per channel (depthwise).
        x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, kernel.flip([0, 1]).expand(c, 1, kh, kw), stride=down, groups=c)
    # A stride-`up` transposed conv spreads each sample through the filter: the full convolution of the
    # zero-stuffed signal, [(H-1)*up + k], without building it. The padding then shifts and trims that.
    y = F.conv_transpose2d(x, kernel.expand(c, 1, kh, kw), stride=up, groups=c)
    y = F.pad(y, [left - kw + 1, right + up - kw, top - kh + 1, bottom + up - kh])
    return y[:, :, ::down, ::down] if down > 1 else y


def _split(total: int, before: int) -> tuple[int, int, int, int]:
    """Padding (left, right, top, bottom) with `before` px on the left/top and the rest on the right/bottom."""
    return before, total - before, before, total - before


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H*up, W*up]; the gain up^2 makes up for the inserted zeros (constants stay)."""
    total = f.shape[-1] - 1
    return upfirdn2d(x, f, up=up, padding=_split(total, (total + up) // 2), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H/down, W/down]: low-pass, then keep every `down`-th sample."""
    total = f.shape[-1] - down
    return upfirdn2d(x, f, down=down, padding=_split(total, (total + 1) // 2))


def _transposed_kernels(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Correlation kernels [G*O, I, k, k] -> the equivalent conv_transpose2d kernels [G*I, O, k, k] (flipped)."""
    g_o, i, kh, kw = weight.shape
    per_group = weight.reshape(groups, g_o // groups, i, kh, kw)
    return per_group.transpose(1, 2).reshape(groups * i, g_o // groups, kh, kw).flip([2, 3])


def _up_conv(x: torch.Tensor, kernels_t: torch.Tensor, f: torch.Tensor, up: int, groups: int) -> torch.Tensor:
    """Stride-`up` transposed conv with `kernels_t` [G*I, O, k, k], then the FIR blur: [N, ., H, W] -> H*up.

    Scattering every input pixel into the upsampled grid takes a quarter of the multiplications of a conv over the
    zero-stuffed image; the blur that follows is the interpolation filter (it removes the checkerboard).
    """
    y = F.conv_transpose2d(x, kernels_t, stride=up, groups=groups)  # [N, G*O, (H-1)*up + k, ...]
    total = f.shape[-1] + up - kernels_t.shape[-1] - 1
    return upfirdn2d(y, f, padding=_split(total, (total + 1) // 2), gain=up * up)


def _down_conv(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, down: int, groups: int) -> torch.Tensor:
    """FIR blur at the input resolution, then a stride-`down` conv: [N, ., H, W] -> H/down."""
    total = f.shape[-1] - down + weight.shape[-1] - 1
    x = upfirdn2d(x, f, padding=_split(total, (total + 1) // 2))
    return F.conv2d(x, weight, stride=down, groups=groups)


def _conv(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
          padding: int | None = None, groups: int = 1) -> torch.Tensor:
    """Correlation with `weight` [G*O, I, k, k]: at the same size ("same" padding unless given), x`up` or /`down`."""
    if up > 1:
        return _up_conv(x, _transposed_kernels(weight, groups), f, up, groups)
    if down > 1:
        return _down_conv(x, weight, f, down, groups)
    return F.conv2d(x, weight, padding=weight.shape[-1] // 2 if padding is None else padding, groups=groups)


# ---------------------------------------------------------------------------------------------------------------
# Modulated convolution.


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / sigma_j of Eq. 3 for every sample and output channel: [N, O].

    sum over i, k of (s_i w_ijk)^2 = sum_i s_i^2 (sum_k w_ijk^2), so the per-sample kernels need not exist.
    """
    energy = weight.square().sum(dim=(2, 3))  # [O, I]
    return (styles.square() @ energy.T + 1e-8).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, down: int = 1, resample_filter: torch.Tensor | None = None,
                     fused: bool = True) -> torch.Tensor:
    """Conv with weights w'_ijk = s_i w_ijk (Eq. 1), divided by sigma_j when `demodulate` (Eq. 3).

    x [N, I, H, W], weight [O, I, k, k], styles [N, I] -> [N, O, H*up/down, W*up/down] (the size kept but for
    the resampling). `up`/`down` of 2 resample with `resample_filter` ([1, 3, 3, 1] when not given).
    """
    n, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    if weight.shape[1] != i or styles.shape != (n, i):
        raise ValueError(f"modulated_conv2d: x {list(x.shape)}, weight {list(weight.shape)} and styles "
                         f"{list(styles.shape)} disagree on the batch or input channels")
    f = resample_filter
    if f is None and max(up, down) > 1:
        f = setup_filter().to(x.device)
    inv_sigma = demodulation_coefficients(weight, styles) if demodulate else None
    if not fused:
        # Scaling the activations instead of the kernel: (s * x) conv w equals x conv (s * w), per sample.
        y = _conv(x * styles[:, :, None, None], weight, f, up, down)
        return y if inv_sigma is None else y * inv_sigma[:, :, None, None]
    scale = styles[:, None, :] if inv_sigma is None else styles[:, None, :] * inv_sigma[:, :, None]  # [N, O, I]
    x = x.reshape(1, n * i, h, w)  # samples become groups of one grouped convolution
    if up > 1:
        # Built straight in conv_transpose2d's [N*I, O, k, k] layout: flipping the small shared kernel is cheaper
        # than reordering the per-sample ones.
        shared = weight.flip([2, 3]).transpose(0, 1)  # [I, O, k, k]
        kernels = (shared[None] * scale.transpose(1, 2)[..., None, None]).reshape(n * i, o, kh, kw)
        y = _up_conv(x, kernels, f, up, groups=n)
    else:
        kernels = (weight[None] * scale[..., None, None]).reshape(n * o, i, kh, kw)
        y = _conv(x, kernels, f, 1, down, groups=n)
    return y.reshape(n, o, y.shape[2], y.shape[3])


# ---------------------------------------------------------------------------------------------------------------
# Equalised-learning-rate layers.


class FullyConnectedLayer(nn.Module):
    """Dense layer x [N, in] -> [N, out]; weights stored / lr_multiplier and scaled by lr_multiplier/sqrt(in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.bias_gain
        return _activate(F.linear(x, self.weight * self.weight_gain, bias), self.activation)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution x [N, in, H, W] -> [N, out, H*up/down, W*up/down] with bias, activation and an output gain."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, resample_filter=(1, 3, 3, 1)):
        super().__init__()
        self.in_channels, self.out_channels, self.activation = in_channels, out_channels, activation
        self.up, self.down = up, down
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = (in_channels * kernel_size ** 2) ** -0.5

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        y = _conv(x, self.weight * self.weight_gain, self.resample_filter, self.up, self.down)
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return _activate(y, self.activation, gain)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.out_channels}, {self.weight.shape[-1]}x{self.weight.shape[-1]}, "
                f"up {self.up}, down {self.down}, {self.activation}")


# ---------------------------------------------------------------------------------------------------------------
# Generator.


class MappingNetwork(nn.Module):
    """z [N, z_dim] -> w, broadcast to ws [N, num_ws, w_dim] (or [N, w_dim] when `num_ws` is None).

    `num_layers` lrelu dense layers at `lr_multiplier`. `w_avg` follows the mean w (decay `w_avg_beta`) when
    `update_w_avg` is set; `psi` < 1 pulls w towards it (the truncation trick).
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8, lr_multiplier: float = 0.01,
                 normalize_input: bool = True, w_avg_beta: float = 0.995, hidden_dim: int | None = None):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.normalize_input, self.w_avg_beta = normalize_input, w_avg_beta
        width = hidden_dim or w_dim
        sizes = [z_dim, *[width] * (num_layers - 1), w_dim]
        self.layers = nn.ModuleList(FullyConnectedLayer(a, b, activation="lrelu", lr_multiplier=lr_multiplier)
                                    for a, b in itertools.pairwise(sizes))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping input must be [N, {self.z_dim}], got {list(z.shape)}")
        w = z
        if self.normalize_input:  # z on the sphere of radius sqrt(z_dim): only its direction matters
            w = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            w = layer(w)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.lerp_(w.mean(dim=0), 1 - self.w_avg_beta)
        if psi != 1:
            w = self.w_avg + psi * (w - self.w_avg)
        # One copy per layer (not a view) so that callers may edit some layers' styles, as style mixing does.
        return w if self.num_ws is None else torch.stack([w] * self.num_ws, dim=1)


class SynthesisLayer(nn.Module):
    """3x3 conv (x2 upsampling when `up=2`) + per-pixel noise + bias + lrelu: x [N, in, r', r'] -> [N, out, r, r].

    Modulated and demodulated by the style A(w) unless `modulated=False`, where it is a plain equalised conv
    that ignores w.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 modulated: bool = True, use_noise: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim, self.resolution = in_channels, out_channels, w_dim, resolution
        self.up, self.modulated, self.use_noise, self.activation = up, modulated, use_noise, "lrelu"
        self.register_buffer("resample_filter", setup_filter(), persistent=False)
        # Bias 1: styles start near one, so a fresh layer begins as an unmodulated conv.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1) if modulated else None
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.weight_gain = (in_channels * 3 ** 2) ** -0.5
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor | None, noise_mode: str = "random",
                noise: torch.Tensor | None = None, fused: bool = True) -> torch.Tensor:
        """noise_mode 'random' (fresh N(0, 1) per call), 'const' (the stored map) or 'none'; an explicit
        `noise` [N, 1, r, r] is used whatever the mode."""
        if self.modulated:
            y = modulated_conv2d(x, self.weight, self.affine(w), up=self.up, resample_filter=self.resample_filter,
                                 fused=fused)
        else:
            y = _conv(x, self.weight * self.weight_gain, self.resample_filter, self.up)
        if self.use_noise:
            noise = self._noise(y, noise_mode) if noise is None else noise
            if noise is not None:
                y = y + self.noise_strength * noise
        return _activate(y + self.bias.reshape(1, -1, 1, 1), self.activation)

    def _noise(self, y: torch.Tensor, noise_mode: str) -> torch.Tensor | None:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "random":
            return torch.randn(y.shape[0], 1, self.resolution, self.resolution, dtype=y.dtype, device=y.device)
        return self.noise_const.reshape(1, 1, self.resolution, self.resolution) if noise_mode == "const" else None


class ToRGBLayer(nn.Module):
    """1x1 conv to the image channels + bias, modulated but not demodulated: x [N, in, r, r] -> [N, out, r, r]."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1, modulated: bool = True):
        super().__init__()
        self.modulated = modulated
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1) if modulated else None
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = (in_channels * kernel_size ** 2) ** -0.5

    def forward(self, x: torch.Tensor, w: torch.Tensor | None, fused: bool = True) -> torch.Tensor:
        if self.modulated:
            # No demodulation to cancel the equalised-lr gain here; it rides on the styles (N x I numbers).
            y = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False, fused=fused)
        else:
            y = _conv(x, self.weight * self.weight_gain, None)
        return y + self.bias.reshape(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    """One resolution r of the skip generator: (x [N, in, r/2, r/2], img [N, C, r/2, r/2]) -> (x, img) at r.

    Consumes ws [N, num_conv + num_torgb, w_dim]: one w per conv, then the tRGB's (which is the next block's first).
    The 4x4 block (`in_channels=0`) has one conv and starts from a learned constant, or from the caller's x
    [N, out, 4, 4] when `const_input=False`.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int = 3,
                 modulated: bool = True, const_input: bool = True, use_noise: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.const_input = const_input
        self.register_buffer("resample_filter", setup_filter(), persistent=False)
        layer = {"w_dim": w_dim, "resolution": resolution, "modulated": modulated, "use_noise": use_noise}
        if in_channels == 0 and const_input:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, modulated=modulated)
        self.num_conv = len(self.conv_layers())
        self.num_torgb = 1

    def conv_layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The layers that take a noise input, in the order they run."""
        return [layer for layer in self.conv_layers() if layer.use_noise]

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "random", noise: list[torch.Tensor] | None = None,
                fused: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if self.in_channels == 0 and self.const_input:
            x = self.const.expand(ws.shape[0], -1, -1, -1)
        elif self.in_channels == 0 and (x is None or x.shape[1:] != self.const_shape()):
            raise ValueError(f"this generator has no learned constant: give its 4x4 input x [N, "
                             f"{self.out_channels}, {self.resolution}, {self.resolution}]")
        given = iter(noise or [])
        for j, layer in enumerate(self.conv_layers()):
            x = layer(x, ws[:, j], noise_mode, next(given, None) if layer.use_noise else None, fused)
        rgb = self.torgb(x, ws[:, self.num_conv], fused)
        return x, rgb if img is None else rgb + upsample2d(img, self.resample_filter)

    def const_shape(self) -> tuple[int, int, int]:
        return self.out_channels, self.resolution, self.resolution


def channels_for(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: channel_base / resolution, at most channel_max."""
    return min(channel_base // resolution, channel_max)


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> img [N, img_channels, R, R], one SynthesisBlock per resolution 4, 8, ..., R.

    `modulated_resolutions` (None: all) lists the resolutions whose convs are modulated; the others are plain.
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 3, channel_base: int = 16384,
                 channel_max: int = 512, modulated_resolutions: list[int] | None = None, const_input: bool = True,
                 use_noise: bool = True):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [4 << i for i in range(int(math.log2(img_resolution)) - 1)]
        self.blocks = nn.ModuleList()
        for res in self.block_resolutions:
            self.blocks.append(SynthesisBlock(
                channels_for(res // 2, channel_base, channel_max) if res > 4 else 0,
                channels_for(res, channel_base, channel_max), w_dim, res, img_channels,
                const_input=const_input, use_noise=use_noise,
                modulated=modulated_resolutions is None or res in modulated_resolutions))
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1  # + the last block's tRGB

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Per-sample shapes (1, r, r) of the `noise` list `forward` accepts, in its order."""
        return [(1, layer.resolution, layer.resolution) for b in self.blocks for layer in b.noise_layers()]

    def forward(self, ws: torch.Tensor, x: torch.Tensor | None = None, noise_mode: str = "random",
                noise: list[torch.Tensor] | None = None, fused: bool = True) -> torch.Tensor:
        """`x`: the 4x4 input of a network built with `const_input=False`; `noise`: [N, 1, r, r] per noise layer."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        img, first_w, first_noise = None, 0, 0
        for block in self.blocks:
            k = len(block.noise_layers())
            block_noise = None if noise is None else noise[first_noise:first_noise + k]
            x, img = block(x, img, ws[:, first_w:first_w + block.num_conv + block.num_torgb], noise_mode, block_noise, fused)
            first_w, first_noise = first_w + block.num_conv, first_noise + k
        return img


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

    def validate(self) -> GeneratorConfig:
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        if min(self.z_dim, self.w_dim, self.mapping_layers, self.channel_base, self.channel_max) < 1:
            raise ValueError(f"generator dims must be positive: {self}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        """Build from a dict; unknown keys are an error (catches typos and incompatible artifacts)."""
        check_config_keys(cls, d)
        return cls(**d).validate()


class Generator(nn.Module):
    """StyleGAN2 generator: z [N, z_dim] -> img [N, C, R, R] in about [-1, 1]."""

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
        """`psi` < 1 truncates towards the mean w; `noise` as in `SynthesisNetwork.forward`."""
        ws = self.mapping(z, psi=psi, update_w_avg=update_w_avg)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, fused=fused)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        return self.synthesis.noise_shapes()


# ---------------------------------------------------------------------------------------------------------------
# Discriminator.


class DiscriminatorBlock(nn.Module):
    """Residual block at resolution r: x [N, in, r, r] -> [N, out, r/2, r/2].

    The first block (`in_channels=0`) reads the image through a 1x1 fromRGB conv to `tmp_channels` maps.
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
        h = self.fromrgb(img) if self.in_channels == 0 else x
        # The two paths are summed, so each carries half the variance.
        half = 0.5 ** 0.5
        return self.conv1(self.conv0(h), gain=half) + self.skip(h, gain=half)


class MinibatchStdLayer(nn.Module):
    """x [N, C, H, W] -> [N, C + num_channels, H, W]: appends, per group of samples, their average standard
    deviation (over the group, then over pixels and the channels of each of `num_channels` slices).

    Sample n belongs to group n % (N / G). G is `group_size`, or the largest divisor of N below it.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group_size, n) + 1) if n % d == 0)
        slices = x.reshape(g, n // g, self.num_channels, c // self.num_channels, h, w)
        spread = (slices.var(dim=0, unbiased=False) + 1e-8).sqrt()  # [N/G, F, C/F, H, W]
        stat = spread.flatten(2).mean(dim=2).repeat(g, 1)  # [N, F]
        return torch.cat([x, stat[:, :, None, None].expand(n, self.num_channels, h, w)], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: x [N, in, 4, 4] -> [N, out_features] through minibatch stddev, a 3x3 conv and two dense."""

    def __init__(self, in_channels: int, resolution: int = 4, mbstd_group_size: int = 4, mbstd_num_channels: int = 1,
                 out_features: int = 1):
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_group_size > 0 else None
        extra = 0 if self.mbstd is None else mbstd_num_channels
        self.conv = Conv2dLayer(in_channels + extra, in_channels, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.mbstd is None else self.mbstd(x)
        return self.out(self.fc(self.conv(h).flatten(1)))


@dataclass
class DiscriminatorConfig:
    img_resolution: int = 32  # input side in pixels
    img_channels: int = 3
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group_size: int = 4  # 0 disables minibatch stddev
    mbstd_num_channels: int = 1
    out_features: int = 1  # 1 = real/fake logit; a decoder can ask for more

    def validate(self) -> DiscriminatorConfig:
        r = self.img_resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {r}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> DiscriminatorConfig:
        """Build from a dict; unknown keys are an error."""
        check_config_keys(cls, d)
        return cls(**d).validate()


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: img [N, C, R, R] in [-1, 1] -> logits [N, out_features]."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg.validate()
        width = lambda r: channels_for(r, cfg.channel_base, cfg.channel_max)
        top = int(math.log2(cfg.img_resolution))
        self.blocks = nn.ModuleList()
        for res in (2 ** e for e in range(top, 2, -1)):  # R, R/2, ..., 8
            first = res == cfg.img_resolution
            self.blocks.append(DiscriminatorBlock(0 if first else width(res), width(res), width(res // 2), res,
                                                  cfg.img_channels))
        self.epilogue = DiscriminatorEpilogue(width(4), 4, cfg.mbstd_group_size, cfg.mbstd_num_channels,
                                              cfg.out_features)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = None
        for block in self.blocks:
            x = block(x, img)
        return self.epilogue(x)


# ---------------------------------------------------------------------------------------------------------------
# Exports, seeded inputs and 8-bit images.


@register_kind("stylegan2-G")
def _build_generator(config: dict) -> Generator:
    return Generator(GeneratorConfig.from_dict(config))


def generator_config_dict(cfg: GeneratorConfig) -> dict:
    """The JSON-able config stored in a `stylegan2-G` export."""
    return asdict(cfg)


def seeded_inputs(G: Generator, seeds: list[int], device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """z [N, z_dim] and per-layer noise [N, 1, r, r], each row a pure function of its seed (not of the batch)."""
    shapes = G.noise_shapes()
    zs, noises = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        zs.append(torch.randn(1, G.z_dim, generator=g))
        noises.append([torch.randn(1, *shape, generator=g) for shape in shapes])
    z = torch.cat(zs).to(device)
    return z, [torch.cat(per_layer).to(device) for per_layer in zip(*noises)]


def _uint8_levels(img: torch.Tensor) -> torch.Tensor:
    """img in [-1, 1] -> its saved 8-bit levels as floats 0..255 (rounded, clipped): the one mapping both
    `to_uint8` and `quantize_uint8_st` use."""
    return (img * 127.5 + 128).clamp(0, 255).floor()


def quantize_uint8_st(img: torch.Tensor) -> torch.Tensor:
    """img in [-1, 1] -> the value its saved 8-bit image reads back as (clipped, rounded as `to_uint8`), so that a
    decoder trained on it reads what users save. Only the rounding is straight-through: the clipping keeps its
    zero gradient, since an identity gradient there lets the bit loss push saturated pixels ever further out of
    range, where D spots them."""
    x = img.clamp(-1, 1)
    q = _uint8_levels(img.detach()) / 127.5 - 1  # what decode_images reads back from the file
    return x + (q - x.detach())


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """img [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] (rounded, clipped)."""
    x = _uint8_levels(img.detach().float().cpu()).to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()
