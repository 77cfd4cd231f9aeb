"""Fingerprint encoder/decoder of Artificial Fingerprinting (Yu et al., ICCV 2021), a StegaStamp U-Net.

Layers, widths, activations and parameter names follow the original `models.py`, so that original
checkpoints load key-for-key; the code is ganprint's own.
Images are in [0, 1] inside these two networks (the original's convention).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganprint.core.artifacts import register_kind

log = logging.getLogger(__name__)


@dataclass
class StegaConfig:
    resolution: int = 32  # image side in pixels; a power of two >= 16
    fingerprint_length: int = 64  # K, number of bits
    channels: int = 3  # image channels

    def validate(self) -> StegaConfig:
        r = self.resolution
        if r < 16 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 16, got {r}")
        if self.fingerprint_length < 1:
            raise ValueError(f"fingerprint length must be >= 1, got {self.fingerprint_length}")
        return self


class StegaEncoder(nn.Module):
    """(bits [N, K] in {0,1}, img [N, C, R, R] in [0,1]) -> fingerprinted img [N, C, R, R] in [0,1]."""

    def __init__(self, resolution: int, channels: int, fingerprint_length: int, return_residual: bool = False):
        super().__init__()
        self.resolution, self.channels, self.fingerprint_length = resolution, channels, fingerprint_length
        self.return_residual = return_residual
        c = channels
        self.secret_dense = nn.Linear(fingerprint_length, 16 * 16 * c)
        self.fingerprint_upsample = nn.Upsample(scale_factor=2 ** (int(math.log2(resolution)) - 4))
        self.conv1 = nn.Conv2d(2 * c, 32, 3, 1, 1)
        self.conv2 = nn.Conv2d(32, 32, 3, 2, 1)
        self.conv3 = nn.Conv2d(32, 64, 3, 2, 1)
        self.conv4 = nn.Conv2d(64, 128, 3, 2, 1)
        self.conv5 = nn.Conv2d(128, 256, 3, 2, 1)
        # Up blocks 6-9 under the original checkpoints' names, registered in its order: nearest 2x, a pad that
        # emulates TF "same" padding for the even 2x2 kernel, the 2x2 conv; conv{i} then reads it with the skip.
        for i, (width, out, skip) in enumerate(((256, 128, 128), (128, 64, 64), (64, 32, 32), (32, 32, 32 + 2 * c)),
                                               start=6):
            setattr(self, f"pad{i}", nn.ZeroPad2d((0, 1, 0, 1)))
            setattr(self, f"up{i}", nn.Conv2d(width, out, kernel_size=2))
            setattr(self, f"upsample{i}", nn.Upsample(scale_factor=(2, 2)))
            setattr(self, f"conv{i}", nn.Conv2d(out + skip, out, kernel_size=3, padding=1))
        self.conv10 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.residual = nn.Conv2d(32, c, 1)

    def forward(self, bits: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        return self.run(bits, img, self._upsample_convs())

    def _upsample_convs(self) -> list:
        """The four decoder-side up blocks as the original computes them: nearest 2x, pad, 2x2 conv, ReLU."""
        return [lambda x, up=up, pad=pad, ups=ups: F.relu(up(pad(ups(x)))) for up, pad, ups in (
            (getattr(self, f"up{i}"), getattr(self, f"pad{i}"), getattr(self, f"upsample{i}")) for i in range(6, 10))]

    def run(self, bits: torch.Tensor, img: torch.Tensor, ups: list, conv_relu=None) -> torch.Tensor:
        """The forward pass with `ups` (four callables) as the up blocks 6-9 (ReLU included) and `conv_relu(conv, x)`
        (default: ReLU after the conv) for the other convolutions."""
        cr = conv_relu or (lambda conv, x: F.relu(conv(x)))
        n, c, r = img.shape[0], self.channels, self.resolution
        assert bits.shape == (n, self.fingerprint_length), \
            f"bits {tuple(bits.shape)} != ({n}, {self.fingerprint_length})"
        assert img.shape[1:] == (c, r, r), f"img {tuple(img.shape)} != (N, {c}, {r}, {r})"
        fp = F.relu(self.secret_dense(bits))
        fp = fp.view(n, c, 16, 16)  # [N, C, 16, 16]
        fp = self.fingerprint_upsample(fp)  # [N, C, R, R]
        inputs = torch.cat([fp, img], dim=1)  # [N, 2C, R, R]: fingerprint map first, as in the original
        conv1 = cr(self.conv1, inputs)
        conv2 = cr(self.conv2, conv1)
        conv3 = cr(self.conv3, conv2)
        conv4 = cr(self.conv4, conv3)
        conv5 = cr(self.conv5, conv4)
        up6 = ups[0](conv5)
        conv6 = cr(self.conv6, torch.cat([conv4, up6], dim=1))
        up7 = ups[1](conv6)
        conv7 = cr(self.conv7, torch.cat([conv3, up7], dim=1))
        up8 = ups[2](conv7)
        conv8 = cr(self.conv8, torch.cat([conv2, up8], dim=1))
        up9 = ups[3](conv8)
        conv9 = cr(self.conv9, torch.cat([conv1, up9, inputs], dim=1))
        conv10 = cr(self.conv10, conv9)
        residual = self.residual(conv10)
        if self.return_residual:
            return residual
        # The original emits the fingerprinted image itself through a sigmoid, not img + residual. In fp32 even
        # under bf16 autocast: bf16's 8-bit mantissa would move outputs near 1 by about one 8-bit level.
        return torch.sigmoid(residual.float())


def upsample_conv_as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """`conv(pad_right_bottom(upsample_nearest_2x(x)))` for a 2x2 `conv`, as one stride-2 transposed 3x3 conv.

    Along one axis, with taps w0, w1 over the upsampled row u[2a] = u[2a + 1] = x[a]: out[2a] = (w0 + w1) x[a]
    and out[2a + 1] = w0 x[a] + w1 x[a + 1] (the pad is the missing x[H]). So x[a] reaches out[2a - 1] with w1,
    out[2a] with w0 + w1 and out[2a + 1] with w0; in 2-D each of the 3x3 offsets sums the taps that reach it on both
    axes. Same function, 9/16 of the multiplications, and neither the upsampled nor the padded map is built.
    """
    w = conv.weight.detach().float()  # [Cout, Cin, 2, 2]
    reach = ((1,), (0, 1), (0,))  # taps that reach offsets -1, 0, +1
    k = torch.stack([torch.stack([sum(w[:, :, dy, dx] for dy in reach[oy] for dx in reach[ox]) for ox in range(3)],
                                 dim=-1) for oy in range(3)], dim=-2)  # [Cout, Cin, 3, 3]
    t = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, 3, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        t.weight.copy_(k.transpose(0, 1))  # a transposed conv's weight is [Cin, Cout, kh, kw]
        t.bias.copy_(conv.bias.detach().float())
    return t.to(conv.weight.device, conv.weight.dtype)


def _fused_ops():
    """oneDNN's convolution + ReLU ops (what torch.compile emits on CPU), or None where this torch lacks them."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        return torch.ops.mkldnn._convolution_pointwise, torch.ops.mkldnn._convolution_transpose_pointwise
    except (AttributeError, RuntimeError):
        return None


class InferenceEncoder(nn.Module):
    """A StegaEncoder for inference: each up block runs as one transposed conv (`upsample_conv_as_transposed`),
    and on CPU every convolution and its ReLU run as one oneDNN call (where torch has the fused ops).

    Same outputs up to float rounding (fp32 within 1e-6, tests/nets/test_stega.py). Why: on CPU, nearest
    upsampling and padding are memory copies that cost more than the convolutions they feed, and a separate ReLU
    is one more pass over every activation.
    """

    def __init__(self, enc: StegaEncoder, fuse: bool = True):
        super().__init__()
        self.enc = enc
        self.ups = nn.ModuleList(upsample_conv_as_transposed(c) for c in (enc.up6, enc.up7, enc.up8, enc.up9))
        self.fuse = fuse

    def forward(self, bits: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        ops = _fused_ops() if self.fuse and img.device.type == "cpu" else None
        if ops is not None:
            try:
                return self._fused(bits, img, *ops)
            except RuntimeError as e:  # an op this torch build cannot run: use the plain path from now on
                log.warning("fused convolutions unavailable (%s); using the unfused encoder", e)
                self.fuse = False
        return self.enc.run(bits, img, [lambda x, t=t: F.relu(t(x)) for t in self.ups])

    def _fused(self, bits: torch.Tensor, img: torch.Tensor, conv_op, tconv_op) -> torch.Tensor:
        def conv_relu(c: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
            return conv_op(x, c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups, "relu", [None], "")

        def up_relu(t: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
            return tconv_op(x, t.weight, t.bias, t.padding, t.output_padding, t.stride, t.dilation, t.groups,
                            "relu", [None], "")

        return self.enc.run(bits, img, [lambda x, t=t: up_relu(t, x) for t in self.ups], conv_relu)


# The decoder's seven 3x3 convs (padding 1, each followed by a ReLU) as (output channels, stride).
_DECODER_CONVS = ((32, 2), (32, 1), (64, 2), (64, 1), (64, 2), (128, 2), (128, 2))


class StegaDecoder(nn.Module):
    """img [N, C, R, R] in [0,1] -> fingerprint logits [N, K]; a bit reads 1 where its logit is > 0."""

    def __init__(self, resolution: int, channels: int, fingerprint_length: int):
        super().__init__()
        self.resolution, self.channels, self.fingerprint_length = resolution, channels, fingerprint_length
        layers, width = [], channels
        for out, stride in _DECODER_CONVS:
            layers += [nn.Conv2d(width, out, kernel_size=3, stride=stride, padding=1), nn.ReLU()]
            width = out
        self.decoder = nn.Sequential(*layers)  # keys decoder.0, .2, ..., .12: the original checkpoints' names
        # Five stride-2 convs leave max(1, R/32)^2 positions; the original's R*R*128/1024 is right for R >= 32
        # but at R = 16 (1x1 maps) it made view() fold the batch into the features.
        self.flat = 128 * max(1, resolution // 32) ** 2
        self.dense = nn.Sequential(nn.Linear(self.flat, 512), nn.ReLU(), nn.Linear(512, fingerprint_length))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        assert img.shape[1:] == (self.channels, r, r), f"img {tuple(img.shape)} != (N, {self.channels}, {r}, {r})"
        x = self.decoder(img)
        x = x.reshape(x.shape[0], self.flat)  # [N, 128 * (R/32)^2], flattened as (C, H, W)
        return self.dense(x)


class _StegaArtifact(nn.Module):
    """A checked `cfg` and its networks: the encoder (keys `enc.*`) when `encoder`, then the decoder (`dec.*`).

    The encoder is built first, as the original did: the seeded initialisation of both depends on that order.
    """

    def __init__(self, cfg: StegaConfig, encoder: bool):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        if encoder:
            self.enc = StegaEncoder(cfg.resolution, cfg.channels, cfg.fingerprint_length)
        self.dec = StegaDecoder(cfg.resolution, cfg.channels, cfg.fingerprint_length)


class StegaModel(_StegaArtifact):
    """The encoder/decoder pair as one artifact (keys `enc.*`, `dec.*`)."""

    def __init__(self, cfg: StegaConfig):
        super().__init__(cfg, encoder=True)

    def forward(self, bits: torch.Tensor, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (fingerprinted img, logits decoded from it)."""
        out = self.enc(bits, img)
        return out, self.dec(out)


class StegaDecoderOnly(_StegaArtifact):
    """A decoder-only artifact (keys `dec.*`) for verifiers who must not be able to embed."""

    def __init__(self, cfg: StegaConfig):
        super().__init__(cfg, encoder=False)


@register_kind("stega")
def _build_stega(config: dict) -> StegaModel:
    return StegaModel(StegaConfig(**config))


@register_kind("stega-decoder")
def _build_stega_decoder(config: dict) -> StegaDecoderOnly:
    return StegaDecoderOnly(StegaConfig(**config))


def stega_config_dict(cfg: StegaConfig) -> dict:
    return asdict(cfg)
