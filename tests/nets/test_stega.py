"""Contract tests of the stega encoder/decoder: shapes for several R and K, gradients, export round trip."""

import pytest
import torch

from ganprint.artificial.train import export_decoder, export_model, init_weights
from ganprint.core.artifacts import load_export
from ganprint.nets.stega import StegaConfig, StegaDecoder, StegaModel


@pytest.mark.parametrize("r,k", [(16, 8), (32, 64), (64, 3)])
def test_shapes_and_range(r, k):
    torch.manual_seed(0)
    m = StegaModel(StegaConfig(r, k)).eval()
    x = torch.rand(2, 3, r, r)
    bits = torch.randint(0, 2, (2, k)).float()
    with torch.no_grad():
        out, logits = m(bits, x)
    assert out.shape == (2, 3, r, r) and logits.shape == (2, k)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(logits).all()


@pytest.mark.parametrize("scheme", ["torch", "he"])
def test_every_parameter_gets_a_gradient(scheme):
    m = StegaModel(StegaConfig(32, 16))
    init_weights(m, scheme, seed=3)
    x = torch.rand(4, 3, 32, 32)
    bits = torch.randint(0, 2, (4, 16)).float()
    out, logits = m(bits, x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, bits) + ((out - x) ** 2).mean()
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_init_is_deterministic_and_he_keeps_the_signal():
    a, b = StegaModel(StegaConfig(32, 16)), StegaModel(StegaConfig(32, 16))
    init_weights(a, "he", seed=1)
    init_weights(b, "he", seed=1)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    # The reason for "he": with PyTorch's default init the bit gradient reaching the encoder all but vanishes.
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    bits = torch.randint(0, 2, (16, 16)).float()
    t = StegaModel(StegaConfig(32, 16))
    init_weights(t, "torch", seed=1)
    grads = []
    for m in (a, t):
        _, logits = m(bits, x)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, bits).backward()
        grads.append(m.enc.secret_dense.weight.grad.norm())
    assert grads[0] > 100 * grads[1]


def test_export_load_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = StegaModel(StegaConfig(32, 12)).eval()
    x = torch.rand(3, 3, 32, 32)
    bits = torch.randint(0, 2, (3, 12)).float()
    export_model(m, tmp_path / "m.safetensors")
    export_decoder(m, tmp_path / "d.safetensors")
    m2, cfg, _ = load_export(tmp_path / "m.safetensors", kind="stega")
    d2, cfg_d, _ = load_export(tmp_path / "d.safetensors", kind="stega-decoder")
    assert cfg == cfg_d == {"resolution": 32, "fingerprint_length": 12, "channels": 3}
    with torch.no_grad():
        out, logits = m(bits, x)
        out2, logits2 = m2(bits, x)
        assert torch.equal(out, out2) and torch.equal(logits, logits2)
        assert torch.equal(d2.dec(out), logits)


def test_upsample_conv_as_transposed_is_the_same_function():
    from ganprint.nets.stega import upsample_conv_as_transposed

    torch.manual_seed(1)
    conv = torch.nn.Conv2d(5, 7, 2)
    for h, w in ((1, 1), (3, 4), (8, 8)):
        x = torch.randn(2, 5, h, w)
        ref = conv(torch.nn.functional.pad(torch.nn.functional.interpolate(x, scale_factor=2), (0, 1, 0, 1)))
        got = upsample_conv_as_transposed(conv)(x)
        assert got.shape == ref.shape == (2, 7, 2 * h, 2 * w)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("r", [16, 32, 64])
def test_inference_encoder_matches_the_encoder(r):
    from ganprint.nets.stega import InferenceEncoder

    torch.manual_seed(r)
    m = StegaModel(StegaConfig(r, 24)).eval()
    init_weights(m, "he", seed=r)  # larger activations than torch's default init
    fast = InferenceEncoder(m.enc).eval()
    x, bits = torch.rand(3, 3, r, r), torch.randint(0, 2, (3, 24)).float()
    with torch.no_grad():
        torch.testing.assert_close(fast(bits, x), m.enc(bits, x), rtol=0, atol=1e-6)
        # bf16 weights (how embed runs it): within bf16 rounding of the original in bf16
        lo_fast = InferenceEncoder(m.enc).to(torch.bfloat16)(bits.bfloat16(), x.bfloat16())
        lo_ref = m.enc.to(torch.bfloat16)(bits.bfloat16(), x.bfloat16())
    assert (lo_fast - lo_ref).abs().max() < 4 / 255


def test_inference_encoder_fused_path_and_its_fallback(monkeypatch, caplog):
    from ganprint.nets import stega

    torch.manual_seed(5)
    m = StegaModel(StegaConfig(32, 16)).eval()
    x, bits = torch.rand(2, 3, 32, 32), torch.randint(0, 2, (2, 16)).float()
    unfused = stega.InferenceEncoder(m.enc, fuse=False)
    with torch.no_grad():
        ref = unfused(bits, x)
        if stega._fused_ops() is not None:  # the oneDNN ops: same numbers in fp32 and in channels_last
            torch.testing.assert_close(stega.InferenceEncoder(m.enc)(bits, x), ref, rtol=0, atol=1e-6)
            cl = stega.InferenceEncoder(m.enc).to(memory_format=torch.channels_last)
            torch.testing.assert_close(cl(bits, x.contiguous(memory_format=torch.channels_last)), ref, rtol=0, atol=1e-6)

        def broken(*args):
            raise RuntimeError("no such kernel")

        monkeypatch.setattr(stega, "_fused_ops", lambda: (broken, broken))
        fast = stega.InferenceEncoder(m.enc)
        torch.testing.assert_close(fast(bits, x), ref, rtol=0, atol=1e-6)
    assert fast.fuse is False and "unfused" in caplog.text


def test_decoder_keeps_the_original_checkpoint_layout():
    # The original decoder checkpoint: seven 3x3 convs at the even indices of `decoder` (a ReLU after each), then
    # `dense`; these keys, shapes and strides are what `import-agf` loads into.
    dec = StegaDecoder(64, 3, 48)
    convs = {f"decoder.{2 * j}": (shape, stride) for j, (shape, stride) in enumerate([
        ((32, 3, 3, 3), 2), ((32, 32, 3, 3), 1), ((64, 32, 3, 3), 2), ((64, 64, 3, 3), 1), ((64, 64, 3, 3), 2),
        ((128, 64, 3, 3), 2), ((128, 128, 3, 3), 2)])}
    expected = {f"{k}.{p}": s if p == "weight" else s[:1] for k, (s, _) in convs.items() for p in ("weight", "bias")}
    expected.update({"dense.0.weight": (512, 64 * 64 * 128 // 1024), "dense.0.bias": (512,),
                     "dense.2.weight": (48, 512), "dense.2.bias": (48,)})
    assert {k: tuple(v.shape) for k, v in dec.state_dict().items()} == expected
    for key, (_, stride) in convs.items():
        conv = dec.get_submodule(key)
        assert conv.stride == (stride, stride) and conv.padding == (1, 1)
        assert isinstance(dec.decoder[int(key.split(".")[1]) + 1], torch.nn.ReLU)
