"""The networks keep their outputs: tiny float64 models with fixed weights against outputs saved from earlier code.

`reference_outputs.npz` (beside this file) holds what `reference_outputs()` and `state_dict_layouts()` returned at
commit 6a748dc, before `nets/stylegan2.py` was rewritten; a rewrite that changes any layer, the resampling, the
noise or the state-dict keys fails here. Weights are drawn per state-dict key in sorted order, so they do not depend on the order in which
the modules create their parameters. Regenerate (only on purpose) with
`PYTHONPATH=src python tests/nets/test_reference_outputs.py --write`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganprint.nets.scalable import ScalableConfig, ScalableDecoder, ScalableGenerator, fold_fingerprint
from ganprint.nets.scalable import seeded_inputs as scalable_inputs
from ganprint.nets.stylegan2 import (
    Conv2dLayer,
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    downsample2d,
    modulated_conv2d,
    seeded_inputs,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

DATA = Path(__file__).with_name("reference_outputs.npz")
G16 = GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
G8 = GeneratorConfig(img_resolution=8, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
S16 = ScalableConfig(resolution=16, fingerprint_length=8, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128,
                     channel_max=16, modulated_res=[4, 8])


def fill(module: torch.nn.Module, seed: int, scale: float = 0.5) -> torch.nn.Module:
    """Float64 weights (and buffers) drawn key by key in sorted order, scaled to keep activations O(1)."""
    module.double()
    g = torch.Generator().manual_seed(seed)
    state = module.state_dict()
    with torch.no_grad():
        for key in sorted(state):
            state[key].copy_(torch.randn(state[key].shape, generator=g, dtype=torch.float64) * scale)
    return module.eval()


def _randn(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _generator_cases(fused: bool) -> dict[str, torch.Tensor]:
    G = fill(Generator(G16), 1)
    z, noise = seeded_inputs(G, [4, 5])
    out = {"g16_psi": G(z.double(), psi=0.7, noise=[n.double() for n in noise], fused=fused)}
    G8m = fill(Generator(G8), 2)
    out["g8_const"] = G8m(_randn(3, 1, 8), noise_mode="const", fused=fused)
    G8m.mapping(_randn(4, 3, 8), update_w_avg=True)
    out["g8_w_avg"] = G8m.mapping.w_avg.clone()
    no_noise = fill(Generator(GeneratorConfig(**{**vars(G8), "use_noise": False})), 5)
    out["g8_no_noise"] = no_noise(_randn(6, 1, 8), fused=fused)
    return out


def _discriminator_cases() -> dict[str, torch.Tensor]:
    D = fill(Discriminator(DiscriminatorConfig(8, channel_base=64, channel_max=8, mbstd_num_channels=2)), 7, scale=1.5)
    img = _randn(8, 6, 3, 8, 8).requires_grad_(True)  # group size 4 does not divide 6: the layer falls back to 3
    logits = D(img)
    (grad,) = torch.autograd.grad(logits.square().sum(), img)
    return {"d8_logits": logits.detach(), "d8_grad": grad[:2]}


def _scalable_cases(fused: bool) -> dict[str, torch.Tensor]:
    G = fill(ScalableGenerator(S16), 9)
    z, c, noise = scalable_inputs(G, [11, 12])
    z, c, noise = z.double(), c.double(), [n.double() for n in noise]
    out = {"s16_g": G(z, c, noise=noise, fused=fused)}
    issued = fold_fingerprint(G, c[0])
    out["s16_issued"] = issued(z[:1], noise=[n[:1] for n in noise], fused=fused)
    dec = fill(ScalableDecoder(S16), 10)
    out["s16_decoder"] = torch.cat(dec(out["s16_g"]), dim=1)
    return out


def _layer_cases(fused: bool) -> dict[str, torch.Tensor]:
    x, w, s = _randn(13, 2, 3, 4, 4), _randn(14, 4, 3, 3, 3), _randn(15, 2, 3)
    f = setup_filter().double()
    out = {}
    for name, up, down, demod in (("same", 1, 1, True), ("up", 2, 1, True), ("down", 1, 2, True),
                                  ("up_nodemod", 2, 1, False)):
        out[f"modconv_{name}"] = modulated_conv2d(x, w, s, demodulate=demod, up=up, down=down, resample_filter=f,
                                                  fused=fused)
    out["modconv_1x1"] = modulated_conv2d(x, w[:, :, 1:2, 1:2], s, demodulate=False, fused=fused)
    out["upfirdn_crop"] = upfirdn2d(x, setup_filter([1, 2, 1]).double(), up=2, down=3, padding=(2, -1, 0, 1), gain=2)
    out["upsample"], out["downsample"] = upsample2d(x, f), downsample2d(x, f)
    for name, kw in (("conv_up", {"up": 2}), ("conv_down", {"down": 2, "activation": "lrelu"})):
        out[name] = fill(Conv2dLayer(3, 4, 3, **kw), 16)(x, gain=0.5)
    return out


@torch.no_grad()
def _no_grad_cases(fused: bool) -> dict[str, torch.Tensor]:
    return {**_generator_cases(fused), **_scalable_cases(fused), **_layer_cases(fused)}


def reference_outputs(fused: bool = True) -> dict[str, np.ndarray]:
    out = {**_no_grad_cases(fused), **_discriminator_cases()}
    return {k: v.detach().numpy().astype(np.float32) for k, v in out.items()}


def state_dict_layouts() -> dict[str, np.ndarray]:
    """'key (shape)' of every state-dict entry, in order: what an existing export must find."""
    d8 = DiscriminatorConfig(8, channel_base=64, channel_max=8, mbstd_num_channels=2)
    nets = {"keys_g16": Generator(G16), "keys_d8": Discriminator(d8)}
    return {name: np.array([f"{k} {tuple(v.shape)}" for k, v in net.state_dict().items()])
            for name, net in nets.items()}


def test_state_dict_keys_and_shapes_are_unchanged():
    saved = np.load(DATA)
    for name, layout in state_dict_layouts().items():
        assert layout.tolist() == saved[name].tolist(), name


@pytest.mark.parametrize("fused", [True, False])
def test_outputs_match_the_saved_reference(fused):
    saved = np.load(DATA)
    got = reference_outputs(fused)
    assert sorted(got) == sorted(k for k in saved.files if not k.startswith("keys_"))
    for key in got:
        assert got[key].shape == saved[key].shape, key
        # float32 storage rounds at ~6e-8 relative; anything that changes the arithmetic moves far more.
        np.testing.assert_allclose(got[key], saved[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_reference_is_not_trivial():
    # Outputs that vanish or saturate would let a broken layer pass the comparison above.
    saved = np.load(DATA)
    for key in (k for k in saved.files if not k.startswith("keys_")):
        assert np.isfinite(saved[key]).all() and saved[key].std() > 1e-3, key


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    np.savez_compressed(DATA, **reference_outputs(), **state_dict_layouts())
    print(f"wrote {DATA} ({DATA.stat().st_size} bytes)")
