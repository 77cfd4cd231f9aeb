"""A latent diffusion autoencoder whose decoder is modulated by a fingerprint (scalable fingerprinting of LDMs).

As in the second paper's generator and in WOUAF, a fingerprint c in {0,1}^K goes through a mapping network to a
style w, and one affine layer per modulated convolution turns w into per-input-channel scales s = 1 + A w, so that
the convolution computes W * s. Applied to the activations (x * s, then the plain conv) a batch may hold a
different fingerprint per image and no grouped convolution is needed; with `demodulate` each output channel is
then rescaled to the norm the unmodulated weight had (StyleGAN2's demodulation, anchored at the original weight so
that s = 1 reproduces it).

For one fixed c every s is a constant, so the modulated decoder equals a plain `AutoencoderKL` whose conv weights
are W * s (times the demodulation factor): `fold` builds that per-user copy (export kind
"latent-autoencoder-issued"), which loads in diffusers like any other VAE and takes no fingerprint.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ganprint.core.artifacts import check_config_keys, register_kind
from ganprint.core.bounds import Bound
from ganprint.core.errors import GanprintError
from ganprint.latent.autoencoder import AutoencoderConfig, build_autoencoder
from ganprint.training.config import check_bounds

EXPORT_KIND = "latent-modulated"
LAYER_CHOICES = ("all", "up")  # every decoder conv, or those of the up blocks and the output conv only


@dataclass
class ModulationConfig:
    fingerprint_length: int = 64  # K bits
    w_dim: int = 128  # style size
    mapping_layers: int = 2
    layers: str = "all"  # which decoder convolutions are modulated (LAYER_CHOICES)
    demodulate: bool = False
    style_gain: float = 0.1  # scale of the affine layers' initial weights: s starts near 1, images near the original

    def validate(self) -> ModulationConfig:
        check_bounds(self, {"fingerprint_length": Bound(1, 4096, integer=True), "w_dim": Bound(1, 4096, integer=True),
                            "mapping_layers": Bound(1, 16, integer=True), "style_gain": Bound(0, 10, lo_open=True)})
        if self.layers not in LAYER_CHOICES:
            raise GanprintError(f"`layers` {self.layers!r} is unknown; choose one of {', '.join(LAYER_CHOICES)}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModulationConfig:
        check_config_keys(cls, d)
        return cls(**d).validate()


def modulated_convs(vae: nn.Module, layers: str = "all") -> list[tuple[str, nn.Conv2d]]:
    """The decoder convolutions a fingerprint modulates, as (name in `vae`, module), in a fixed order."""
    out = []
    for name, module in vae.decoder.named_modules():
        if isinstance(module, nn.Conv2d) and (layers == "all" or name.startswith("up_blocks") or name == "conv_out"):
            out.append((f"decoder.{name}", module))
    return out


class _Mapping(nn.Module):
    """c [N, K] 0/1 -> w [N, w_dim]: an MLP with leaky ReLUs on the centred fingerprint (+-1)."""

    def __init__(self, k: int, w_dim: int, layers: int):
        super().__init__()
        dims = [k] + [w_dim] * layers
        self.net = nn.Sequential(*[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.LeakyReLU(0.2))])

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(2 * c - 1)


class ModulatedAutoencoder(nn.Module):
    """An `AutoencoderKL` (`autoencoder`) with fingerprint-modulated decoder convs; `decode(latents, c)`."""

    def __init__(self, ae_cfg: AutoencoderConfig, mod_cfg: ModulationConfig):
        super().__init__()
        self.ae_cfg, self.cfg = ae_cfg.validate(), mod_cfg.validate()
        self.fingerprint_length = mod_cfg.fingerprint_length
        self.autoencoder = build_autoencoder(ae_cfg)
        self.mapping = _Mapping(mod_cfg.fingerprint_length, mod_cfg.w_dim, mod_cfg.mapping_layers)
        convs = modulated_convs(self.autoencoder, mod_cfg.layers)
        self._names = [n for n, _ in convs]
        self._widths = [m.in_channels for _, m in convs]
        self.affine = nn.Linear(mod_cfg.w_dim, sum(self._widths))
        with torch.no_grad():
            self.affine.weight.normal_(0, mod_cfg.style_gain / mod_cfg.w_dim ** 0.5)
            self.affine.bias.zero_()
        self._styles: list[torch.Tensor] | None = None
        for i, (_, conv) in enumerate(convs):
            conv.register_forward_pre_hook(self._pre_hook(i))
            conv.register_forward_hook(self._post_hook(i))

    def styles(self, c: torch.Tensor) -> list[torch.Tensor]:
        """Per modulated conv, the scales s [N, in_channels] of fingerprints c [N, K]."""
        if c.ndim != 2 or c.shape[1] != self.fingerprint_length:
            raise GanprintError(f"fingerprints must be [N, {self.fingerprint_length}] bits, got {tuple(c.shape)}")
        s = 1 + self.affine(self.mapping(c.to(self.affine.weight.dtype)))
        return list(torch.split(s, self._widths, dim=1))

    def _pre_hook(self, i: int):
        def hook(conv, args):
            if self._styles is None:
                raise GanprintError("this decoder is modulated: decode with `decode(latents, c)`, or fold a "
                                    "fingerprint into a plain copy with `fold(c)`")
            return (args[0] * self._styles[i][:, :, None, None],)
        return hook

    def _post_hook(self, i: int):
        def hook(conv, args, out):
            if not self.cfg.demodulate:
                return None
            d = _demodulation(conv.weight, self._styles[i])  # [N, O]
            bias = 0 if conv.bias is None else conv.bias[None, :, None, None]
            return (out - bias) * d[:, :, None, None] + bias
        return hook

    def decode(self, latents: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Scaled latents [N, C, r, r] and fingerprints c [N, K] 0/1 -> images [N, 3, R, R] in ~[-1, 1]."""
        if c.shape[0] != latents.shape[0]:
            raise GanprintError(f"{latents.shape[0]} latents but {c.shape[0]} fingerprints")
        self._styles = self.styles(c)
        try:
            return self.autoencoder.decode(latents / self.autoencoder.config.scaling_factor).sample
        finally:
            self._styles = None

    def forward(self, latents: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.decode(latents, c)

    @torch.no_grad()
    def fold(self, bits: torch.Tensor) -> nn.Module:
        """The plain `AutoencoderKL` that decodes as `decode(., bits)` does: each modulated weight times its scales.

        The copy is built on the meta device and given its tensors (no initialisation to throw away, one copy of
        each weight): issuing is then bound by writing the file (benchmarks/experiments/latent/issue_speed.py)."""
        bits = torch.as_tensor(bits, dtype=torch.float32).reshape(1, -1).to(self.affine.weight.device)
        if bits.shape[1] != self.fingerprint_length:
            raise GanprintError(f"the fingerprint has {bits.shape[1]} bits but the model takes "
                                f"{self.fingerprint_length}")
        convs = dict(self.autoencoder.named_modules())
        folded = {}
        for name, s in zip(self._names, self.styles(bits)):
            conv = convs[name]
            w = conv.weight * s[0][None, :, None, None]
            if self.cfg.demodulate:
                w = w * _demodulation(conv.weight, s)[0][:, None, None, None]
            folded[f"{name}.weight"] = w
        state = {k: folded[k] if k in folded else v.clone() for k, v in self.autoencoder.state_dict().items()}
        with torch.device("meta"):
            out = build_autoencoder(self.ae_cfg)
        out.load_state_dict(state, assign=True)
        return out.eval()


def _demodulation(weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per image and output channel, |W| / |W * s| [N, O]: the modulated weight rescaled to the original's norm."""
    w2 = weight.square().sum(dim=(2, 3))  # [O, I]
    return (w2.sum(1)[None] / (s.square() @ w2.T + 1e-8)).sqrt()


def export_config(ae_cfg: AutoencoderConfig, mod_cfg: ModulationConfig) -> dict:
    return {"autoencoder": ae_cfg.to_dict(), "modulation": mod_cfg.to_dict()}


def parse_export_config(config: dict) -> tuple[AutoencoderConfig, ModulationConfig]:
    try:
        return AutoencoderConfig.from_dict(config["autoencoder"]), ModulationConfig.from_dict(config["modulation"])
    except (KeyError, TypeError, ValueError) as e:
        raise GanprintError(f"a {EXPORT_KIND} export has an unusable config: {e}") from None


def from_autoencoder(vae: nn.Module, ae_cfg: AutoencoderConfig, mod_cfg: ModulationConfig) -> ModulatedAutoencoder:
    """A modulated copy of a trained autoencoder (its weights copied, `vae` untouched), to fine-tune."""
    model = ModulatedAutoencoder(ae_cfg, mod_cfg)
    model.autoencoder.load_state_dict(copy.deepcopy(vae.state_dict()))
    return model


@register_kind(EXPORT_KIND)
def _build_modulated(config: dict) -> ModulatedAutoencoder:
    return ModulatedAutoencoder(*parse_export_config(config))
