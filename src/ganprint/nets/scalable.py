"""Scalable fingerprinting (Yu et al., ICLR 2022): a StyleGAN2 generator whose *fingerprint* drives the styles.

The roles of StyleGAN2's inputs are swapped:
- fingerprint c in {0,1}^K -> 8-layer mapping network (no input normalisation) -> w, which modulates the convs
  at the resolutions in `modulated_res` (plain equalised convs elsewhere, still with noise, bias and lrelu);
- latent z ~ N(0, I) -> dense + lrelu -> the 4x4 input that replaces the learned constant;
- a separate residual decoder, shaped like the discriminator without minibatch stddev, outputs z_dim latent
  estimates and K fingerprint logits;
- the discriminator is the StyleGAN2 one.

Issued (per-user) models: for a fixed c, w = mapping(c) and every style s = affine(w) are constants, so each
modulated conv equals a plain conv with weight W * s (per input channel) and precomputed demodulation.
`fold_fingerprint` builds that standalone generator (`scalable-G-issued`), which takes no fingerprint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ganprint.core.artifacts import check_config_keys, register_kind
from ganprint.core.errors import GanprintError
from ganprint.nets.stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    FullyConnectedLayer,
    MappingNetwork,
    SynthesisNetwork,
    channels_for,
    demodulation_coefficients,
)


def parse_res_range(text: str, resolution: int) -> list[int]:
    """'4-128' -> the block resolutions 4, 8, ..., 128 that are <= `resolution` (both ends powers of two)."""
    try:
        lo, hi = (int(t) for t in str(text).split("-"))
    except ValueError:
        raise GanprintError(f"`modulated_res` {text!r} must look like 4-128 (two powers of two)") from None
    for v in (lo, hi):
        if v < 4 or v & (v - 1):
            raise GanprintError(f"`modulated_res` {text!r}: {v} is not a power of two >= 4")
    if lo > hi:
        raise GanprintError(f"`modulated_res` {text!r}: the first resolution must not exceed the second")
    res = [2 ** i for i in range(2, int(math.log2(resolution)) + 1) if lo <= 2 ** i <= hi]
    if not res:
        raise GanprintError(f"`modulated_res` {text!r} selects no layer of a {resolution}-px generator, so the "
                            f"fingerprint could not reach the image; use e.g. 4-{resolution}")
    return res


# What exports written before the one vocabulary call the fingerprint length in their config metadata.
LEGACY_LENGTH_KEY = "fingerprint_bits"


def fingerprint_length_of(config: dict) -> int:
    """The fingerprint length of a scalable export's config metadata, old exports (`fingerprint_bits`) included."""
    if "fingerprint_length" in config:
        return int(config["fingerprint_length"])
    if LEGACY_LENGTH_KEY in config:
        return int(config[LEGACY_LENGTH_KEY])
    raise GanprintError("the export's config names no `fingerprint_length`; it was not written by ganprint")


@dataclass
class ScalableConfig:
    resolution: int = 32  # image side, a power of two >= 8
    fingerprint_length: int = 128  # K
    z_dim: int = 512  # latent size (the 4x4 input)
    w_dim: int = 512  # style size
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channel_base: int = 16384  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    modulated_res: list[int] = field(default_factory=lambda: [4, 8, 16, 32])  # resolutions with modulated convs
    use_noise: bool = True

    def validate(self) -> ScalableConfig:
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise GanprintError(f"`resolution` must be a power of two >= 8, got {r}")
        if self.fingerprint_length < 1:
            raise GanprintError(f"`fingerprint_length` must be >= 1, got {self.fingerprint_length}")
        self.modulated_res = [int(v) for v in self.modulated_res if int(v) <= r]
        return self

    @classmethod
    def from_dict(cls, d: dict) -> ScalableConfig:
        """Build from a dict (an export's config, old ones naming the length `fingerprint_bits` included); unknown
        keys are an error (a typo or an incompatible artifact)."""
        d = {**{k: v for k, v in d.items() if k != LEGACY_LENGTH_KEY}, "fingerprint_length": fingerprint_length_of(d)}
        check_config_keys(cls, d)
        return cls(**d).validate()

    def to_dict(self) -> dict:
        return asdict(self)


class _LatentInput(nn.Module):
    """z [N, z_dim] -> dense + lrelu -> the 4x4 synthesis input [N, C4, 4, 4] (replaces StyleGAN2's constant)."""

    def __init__(self, z_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.dense = FullyConnectedLayer(z_dim, channels * 16, activation="lrelu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.dense(z).reshape(z.shape[0], self.channels, 4, 4)  # [N, C4, 4, 4]


class _LatentSynthesis(nn.Module):
    """What shared and issued generators have in common: z -> 4x4 input -> synthesis (same keys in both)."""

    def __init__(self, cfg: ScalableConfig, modulated_res: list[int]):
        super().__init__()
        self.cfg = cfg.validate()
        self.z_dim, self.fingerprint_length, self.resolution = cfg.z_dim, cfg.fingerprint_length, cfg.resolution
        self.input = _LatentInput(cfg.z_dim, channels_for(4, cfg.channel_base, cfg.channel_max))
        self.synthesis = SynthesisNetwork(cfg.w_dim, cfg.resolution, 3, cfg.channel_base, cfg.channel_max,
                                          modulated_resolutions=modulated_res, const_input=False,
                                          use_noise=cfg.use_noise)
        self.num_ws = self.synthesis.num_ws

    def _synthesize(self, z: torch.Tensor, ws: torch.Tensor, noise_mode: str, noise: list[torch.Tensor] | None,
                    fused: bool) -> torch.Tensor:
        return self.synthesis(ws, x=self.input(z), noise_mode=noise_mode, noise=noise, fused=fused)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        return self.synthesis.noise_shapes()


class ScalableGenerator(_LatentSynthesis):
    """(z [N, z_dim], c [N, K] 0/1) -> img [N, 3, R, R] in ~[-1, 1]; c modulates, z is the 4x4 input."""

    def __init__(self, cfg: ScalableConfig):
        super().__init__(cfg, cfg.modulated_res)
        self.mapping = MappingNetwork(cfg.fingerprint_length, cfg.w_dim, self.num_ws, cfg.mapping_layers,
                                      lr_multiplier=cfg.mapping_lr_multiplier, normalize_input=False)
        # Grouped (fused) modulated convs suit GPUs; on CPU, scaling the activations instead is faster (same result).
        self.fused = True

    def forward(self, z: torch.Tensor, c: torch.Tensor, noise_mode: str = "random",
                noise: list[torch.Tensor] | None = None, fused: bool | None = None) -> torch.Tensor:
        ws = self.mapping(c)  # [N, num_ws, w_dim]
        return self.synthesize(z, ws, noise_mode, noise, fused)

    def synthesize(self, z: torch.Tensor, ws: torch.Tensor, noise_mode: str = "random",
                   noise: list[torch.Tensor] | None = None, fused: bool | None = None) -> torch.Tensor:
        """Synthesis from given styles ws [N, num_ws, w_dim] (path-length regularisation differentiates wrt ws)."""
        return self._synthesize(z, ws, noise_mode, noise, self.fused if fused is None else fused)


class IssuedGenerator(_LatentSynthesis):
    """A user's model: z [N, z_dim] -> img, with one fingerprint folded into plain conv weights (no c input)."""

    def __init__(self, cfg: ScalableConfig):
        super().__init__(cfg, [])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, noise_mode: str = "random",
                noise: list[torch.Tensor] | None = None, fused: bool = True) -> torch.Tensor:
        if c is not None:
            raise GanprintError("this is an issued model: its fingerprint is built in and none can be given")
        ws = torch.zeros(z.shape[0], self.num_ws, self.cfg.w_dim, device=z.device, dtype=z.dtype)  # unused by plain convs
        return self._synthesize(z, ws, noise_mode, noise, fused)


class ScalableDecoder(nn.Module):
    """img [N, 3, R, R] in [-1, 1] -> (z estimate [N, z_dim], fingerprint logits [N, K]); D-shaped, no mbstd."""

    def __init__(self, cfg: ScalableConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.z_dim, self.fingerprint_length, self.resolution = cfg.z_dim, cfg.fingerprint_length, cfg.resolution
        self.net = Discriminator(DiscriminatorConfig(cfg.resolution, 3, cfg.channel_base, cfg.channel_max,
                                                     mbstd_group_size=0, out_features=cfg.z_dim + cfg.fingerprint_length))

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(img)  # [N, z_dim + K]
        return out[:, :self.z_dim], out[:, self.z_dim:]


def build_discriminator(cfg: ScalableConfig) -> Discriminator:
    """The StyleGAN2 residual discriminator (with minibatch stddev) at the model's resolution and widths."""
    return Discriminator(DiscriminatorConfig(cfg.resolution, 3, cfg.channel_base, cfg.channel_max))


@torch.no_grad()
def fold_fingerprint(G: ScalableGenerator, c: torch.Tensor) -> IssuedGenerator:
    """The standalone generator G(., c) for one fingerprint c [K] 0/1: styles folded into the conv weights.

    Modulated 3x3 conv: W'[o,i] = W[o,i] s_i / sqrt(sum_{i,k} (W s)^2 + 1e-8); stored divided by the plain layer's
    equalised-lr gain (which the plain layer multiplies back). ToRGB: W'[o,i] = W[o,i] s_i gain, no demodulation.
    """
    ref = next(G.parameters())
    c = torch.as_tensor(c).reshape(1, -1).to(device=ref.device, dtype=ref.dtype)
    if c.shape[1] != G.fingerprint_length:
        raise GanprintError(f"fingerprint has {c.shape[1]} bits but the model expects {G.fingerprint_length}")
    out = IssuedGenerator(G.cfg).to(device=ref.device, dtype=ref.dtype)
    out.input.load_state_dict(G.input.state_dict())
    ws = G.mapping(c)[0]  # [num_ws, w_dim]
    w_idx = 0
    for src, dst in zip(G.synthesis.blocks, out.synthesis.blocks):
        convs = [src.conv1] if src.in_channels == 0 else [src.conv0, src.conv1]
        dconvs = [dst.conv1] if dst.in_channels == 0 else [dst.conv0, dst.conv1]
        for j, (s_layer, d_layer) in enumerate(zip(convs, dconvs)):
            d_layer.load_state_dict(_without_affine(s_layer.state_dict()))
            if s_layer.modulated:
                styles = s_layer.affine(ws[w_idx + j][None])  # [1, I]
                inv_sigma = demodulation_coefficients(s_layer.weight, styles)[0]  # [O]
                wt = s_layer.weight * styles[0][None, :, None, None] * inv_sigma[:, None, None, None]
                d_layer.weight.copy_(wt / d_layer.weight_gain)
        s_rgb, d_rgb = src.torgb, dst.torgb
        d_rgb.load_state_dict(_without_affine(s_rgb.state_dict()))
        if s_rgb.modulated:
            styles = s_rgb.affine(ws[w_idx + src.num_conv][None])[0] * s_rgb.weight_gain  # [I]
            d_rgb.weight.copy_(s_rgb.weight * styles[None, :, None, None] / d_rgb.weight_gain)
        w_idx += src.num_conv
    return out.eval()


def _without_affine(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("affine.")}


@register_kind("scalable-G")
def _build_generator(config: dict) -> ScalableGenerator:
    return ScalableGenerator(ScalableConfig.from_dict(config))


@register_kind("scalable-G-issued")
def _build_issued(config: dict) -> IssuedGenerator:
    return IssuedGenerator(ScalableConfig.from_dict(config))


@register_kind("scalable-decoder")
def _build_decoder(config: dict) -> ScalableDecoder:
    return ScalableDecoder(ScalableConfig.from_dict(config))


def seeded_inputs(G: ScalableGenerator | IssuedGenerator, seeds: list[int], device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Per seed, from its own generator (like the original's RandomState(seed)): z [N, z_dim], c [N, K], noise.

    Row i is a pure function of seeds[i] (never of the batch), so images do not depend on the batch size.
    """
    zs, cs, noises = [], [], []
    shapes = G.noise_shapes()
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        zs.append(torch.randn(1, G.z_dim, generator=g))
        cs.append(torch.randint(0, 2, (1, G.fingerprint_length), generator=g).float())
        noises.append([torch.randn(1, *shape, generator=g) for shape in shapes])
    z = torch.cat(zs).to(device)  # [N, z_dim]
    c = torch.cat(cs).to(device)  # [N, K]
    noise = [torch.cat([n[i] for n in noises]).to(device) for i in range(len(shapes))]  # each [N, 1, r, r]
    return z, c, noise
