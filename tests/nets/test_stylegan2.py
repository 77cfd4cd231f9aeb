"""StyleGAN2 layers and networks: shapes, gradients, modulated conv against a per-sample reference."""

import math

import pytest
import torch
import torch.nn.functional as F

from ganprint.core.artifacts import load_export, save_export
from ganprint.nets.stylegan2 import (
    Conv2dLayer,
    Discriminator,
    DiscriminatorConfig,
    DiscriminatorEpilogue,
    FullyConnectedLayer,
    Generator,
    GeneratorConfig,
    MappingNetwork,
    MinibatchStdLayer,
    SynthesisBlock,
    SynthesisNetwork,
    downsample2d,
    generator_config_dict,
    modulated_conv2d,
    seeded_inputs,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

TINY_G = GeneratorConfig(img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16)
TINY_D = DiscriminatorConfig(img_resolution=16, channel_base=256, channel_max=16)


def _reference_modconv(x, weight, styles, demodulate, up=1, down=1):
    """Per-sample loop with explicit modulation (Eq. 1) and demodulation (Eq. 3)."""
    f = setup_filter()
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1)  # [O, I, k, k]
        if demodulate:
            norm = torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            w = w / norm
        xi = x[i: i + 1]
        k = weight.shape[-1]
        if up == 2:
            # StyleGAN2's up conv: transposed conv (stride 2) with the flipped kernel, then the [1,3,3,1] blur.
            y = F.conv_transpose2d(xi, w.flip([2, 3]).transpose(0, 1), stride=2)
            outs.append(upfirdn2d(y, f, padding=(1, 1, 1, 1), gain=4))
        elif down == 2:
            p = 2 + (k - 1)
            xi = upfirdn2d(xi, f, padding=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))
            outs.append(F.conv2d(xi, w, stride=2))
        else:
            outs.append(F.conv2d(xi, w, padding=k // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("up,down,k", [(1, 1, 3), (2, 1, 3), (1, 2, 3), (1, 1, 1)])
def test_modulated_conv2d_matches_reference(demodulate, fused, up, down, k):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, k, k, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64)
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, down=down,
                           resample_filter=setup_filter().double(), fused=fused)
    ref = _reference_modconv(x, weight, styles, demodulate, up, down)
    assert got.shape == ref.shape == (3, 4, 8 * up // down, 8 * up // down)
    torch.testing.assert_close(got, ref)


def test_demodulation_normalises_output_std():
    # With unit-variance input, demodulated outputs keep roughly unit variance whatever the style scale (Eq. 2-3).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 64, 16, 16, generator=g)
    weight = torch.randn(32, 64, 3, 3, generator=g)
    y = modulated_conv2d(x, weight, torch.full((4, 64), 50.0))
    assert 0.8 < y.std().item() < 1.2


def test_fir_resampling_keeps_constants_and_shapes():
    f = setup_filter()
    assert torch.isclose(f.sum(), torch.tensor(1.0))
    x = torch.ones(1, 2, 8, 8)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    # Away from the zero-padded border a constant stays constant.
    torch.testing.assert_close(up[..., 3:-3, 3:-3], torch.ones_like(up[..., 3:-3, 3:-3]))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.ones_like(down[..., 1:-1, 1:-1]))


def test_equalised_lr_layers_have_unit_gain():
    torch.manual_seed(0)
    fc = FullyConnectedLayer(256, 256)
    assert 0.85 < fc(torch.randn(512, 256)).std().item() < 1.15
    y = Conv2dLayer(64, 64, 3)(torch.randn(8, 64, 16, 16))
    assert 0.85 < y.std().item() < 1.15
    # The [1,3,3,1] blur before a strided conv low-passes white noise, so only the shape is checked there.
    assert Conv2dLayer(64, 64, 3, down=2)(torch.randn(8, 64, 16, 16)).shape == (8, 64, 8, 8)
    assert Conv2dLayer(8, 4, 3, up=2)(torch.randn(2, 8, 4, 4)).shape == (2, 4, 8, 8)


def test_mapping_network_shapes_and_truncation():
    m = MappingNetwork(z_dim=8, w_dim=12, num_ws=5, num_layers=3)
    z = torch.randn(4, 8)
    ws = m(z, update_w_avg=True)
    assert ws.shape == (4, 5, 12)
    assert (m.w_avg != 0).any()
    torch.testing.assert_close(m(z, psi=0.0), m.w_avg.expand(4, 5, 12))
    assert MappingNetwork(8, 12, None, 2)(z).shape == (4, 12)


def test_minibatch_std_appends_channels():
    y = MinibatchStdLayer(group_size=4, num_channels=2)(torch.randn(8, 6, 4, 4))
    assert y.shape == (8, 8, 4, 4)
    # Batch of 6 with group 4 falls back to a group size that divides the batch.
    assert MinibatchStdLayer(4, 1)(torch.randn(6, 6, 4, 4)).shape == (6, 7, 4, 4)
    assert DiscriminatorEpilogue(6, mbstd_group_size=0, out_features=5)(torch.randn(3, 6, 4, 4)).shape == (3, 5)


def test_generator_and_discriminator_shapes_and_all_grads():
    torch.manual_seed(0)
    G, D = Generator(TINY_G), Discriminator(TINY_D)
    img = G(torch.randn(4, 16))
    assert img.shape == (4, 3, 16, 16) and torch.isfinite(img).all()
    logits = D(img)
    assert logits.shape == (4, 1)
    (logits.sum() + img.square().mean()).backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


def test_synthesis_plain_conv_swap_and_external_input():
    # The scalable model: modulation only at some resolutions, and the 4x4 input supplied by the caller.
    net = SynthesisNetwork(w_dim=8, img_resolution=16, channel_base=128, channel_max=8, modulated_resolutions=[4, 8],
                           const_input=False)
    assert net.blocks[2].conv1.affine is None and net.blocks[1].conv1.affine is not None
    assert not hasattr(net.blocks[0], "const")
    ws = torch.randn(2, net.num_ws, 8, requires_grad=True)
    x = torch.randn(2, 8, 4, 4)
    img = net(ws, x=x, noise_mode="none")
    assert img.shape == (2, 3, 16, 16)
    img.sum().backward()
    assert ws.grad[:, :3].abs().sum() > 0  # ws of modulated layers matter
    with pytest.raises(ValueError, match="4x4 input"):
        net(ws, x=None)


def test_synthesis_block_ws_and_noise_contract():
    b = SynthesisBlock(8, 4, w_dim=6, resolution=8)
    assert (b.num_conv, b.num_torgb) == (2, 1)
    noise = [torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)]
    b.conv0.noise_strength.data.fill_(1.0)
    b.conv1.noise_strength.data.fill_(1.0)
    x, img = b(torch.randn(2, 8, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 6), noise=noise)
    assert x.shape == (2, 4, 8, 8) and img.shape == (2, 3, 8, 8)


def test_explicit_noise_and_seeded_inputs_are_deterministic():
    torch.manual_seed(0)
    G = Generator(TINY_G).eval()
    for layer in G.synthesis.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.5)
    z, noise = seeded_inputs(G, [3, 7])
    a = G(z, noise=noise)
    z1, n1 = seeded_inputs(G, [7])
    torch.testing.assert_close(z1[0], z[1])
    b = G(z1, noise=n1)
    torch.testing.assert_close(a[1:], b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(G(z, noise_mode="random"), a)  # noise matters


def test_export_round_trip(tmp_path):
    torch.manual_seed(0)
    G = Generator(TINY_G).eval()
    path = save_export(tmp_path / "g.safetensors", G, "stylegan2-G", generator_config_dict(TINY_G))
    G2, cfg, meta = load_export(path, kind="stylegan2-G")
    assert meta["ganprint.kind"] == "stylegan2-G" and cfg["z_dim"] == 16
    z = torch.randn(2, 16)
    torch.testing.assert_close(G(z, noise_mode="const"), G2(z, noise_mode="const"), rtol=0, atol=0)


def test_config_validation():
    with pytest.raises(ValueError):
        GeneratorConfig(img_resolution=24).validate()
    with pytest.raises(ValueError):
        GeneratorConfig.from_dict({"img_resolution": 32, "typo": 1})
    assert math.isclose(Generator(TINY_G).synthesis.num_ws, 2 * math.log2(16) - 2)


def test_up_conv_equals_upsample_then_conv_away_from_border():
    # Transposed conv + blur (what the layers run) == FIR upsampling then a plain conv, except at a 2-px border.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    f = setup_filter().double()
    a = modulated_conv2d(x, w, torch.ones(2, 5, dtype=torch.float64), demodulate=False, up=2, resample_filter=f)
    b = F.conv2d(upsample2d(x, f), w, padding=1)
    torch.testing.assert_close(a[..., 2:-2, 2:-2], b[..., 2:-2, 2:-2])


def test_upfirdn2d_convolves_rather_than_correlates():
    # An impulse comes out as the filter itself, unflipped, for an asymmetric filter: a true convolution.
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = torch.zeros(1, 2, 3, 3)
    x[:, :, 1, 1] = 1
    y = upfirdn2d(x, f, padding=(1, 1, 1, 1))
    torch.testing.assert_close(y[0, 1, 1:3, 1:3], f)
    # Zero-stuffing then keeping every 2nd sample gives back the input filtered by the centre tap only.
    y2 = upfirdn2d(x, torch.ones(1, 1), up=2, down=2)
    torch.testing.assert_close(y2, x)


def test_minibatch_std_values_match_a_direct_computation():
    x = torch.randn(6, 4, 2, 2, dtype=torch.float64)
    y = MinibatchStdLayer(group_size=3, num_channels=2)(x)
    torch.testing.assert_close(y[:, :4], x)
    for i in range(6):
        members = x[i % 2::2]  # the group of sample i: samples sharing i % (N / G)
        for j, chans in enumerate((slice(0, 2), slice(2, 4))):
            expected = (members[:, chans].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            torch.testing.assert_close(y[i, 4 + j], expected.expand(2, 2))


def test_mapping_layers_are_separate_copies_and_noise_mode_is_checked():
    m = MappingNetwork(z_dim=4, w_dim=3, num_ws=3, num_layers=2)
    ws = m(torch.randn(2, 4))
    ws[:, 2] = 0  # what style mixing does: one layer's styles replaced, the others kept
    assert ws[:, 0].abs().sum() > 0
    layer = SynthesisBlock(0, 4, w_dim=3, resolution=4)
    with pytest.raises(ValueError, match="noise_mode"):
        layer(None, None, torch.randn(2, 2, 3), noise_mode="fixed")


@pytest.mark.parametrize("fused", [True, False])
def test_float64_outputs_do_not_depend_on_the_batch(fused):
    # What makes `ganprint generate` write the same image for a seed whatever the batch size.
    torch.manual_seed(0)
    G = Generator(TINY_G).double().eval()
    z, noise = seeded_inputs(G, [0, 1, 2, 3, 4])
    with torch.no_grad():
        batch = G(z.double(), noise=[n.double() for n in noise], fused=fused)
        for i in range(5):
            alone = G(z[i:i + 1].double(), noise=[n[i:i + 1].double() for n in noise], fused=fused)
            torch.testing.assert_close(alone, batch[i:i + 1], rtol=0, atol=1e-12)
