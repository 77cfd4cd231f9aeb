"""The one decoder adapter: the same bits whatever the image layout or runtime, the arithmetic the commands had."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.core.stats import decode_bits
from ganprint.inference.decoders import STEGA_KINDS, Decoder, DecoderOptions
from ganprint.nets.scalable import ScalableConfig, ScalableDecoder

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript"))


@pytest.fixture(scope="module")
def scalable_decoder(tmp_path_factory):
    torch.manual_seed(4)
    cfg = ScalableConfig(resolution=16, fingerprint_length=24, z_dim=8, w_dim=16, mapping_layers=1,
                         channel_base=128, channel_max=16, modulated_res=[4, 8, 16])
    return save_export(tmp_path_factory.mktemp("sc") / "dec.safetensors", ScalableDecoder(cfg), "scalable-decoder",
                       cfg.to_dict())


def _images(r: int, n: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, r, r, 3), dtype=np.uint8)  # [N, R, R, 3]


def test_stega_bits_do_not_depend_on_the_layout_or_the_batching(tiny_stega_model):
    nhwc = Decoder(tiny_stega_model, DecoderOptions(layout="nhwc"), STEGA_KINDS)
    nchw = Decoder(tiny_stega_model, DecoderOptions(layout="nchw"), STEGA_KINDS)
    imgs = _images(nhwc.resolution)
    bits = nhwc.bits(imgs)
    assert bits.shape == (10, nhwc.k) and set(bits.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(bits, nchw.bits(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()))
    assert torch.equal(bits, nhwc.bits(imgs, batch_size=3))
    # the arithmetic of detect before the adapter: [0, 1] input, channels-last decoder
    module, _, _ = load_export(tiny_stega_model)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255.0).contiguous(memory_format=torch.channels_last)
    assert torch.equal(bits, decode_bits(module.dec.to(memory_format=torch.channels_last)(x).float()))


def test_scalable_bits_are_the_decoders_reading_in_minus_one_to_one(scalable_decoder):
    dec = Decoder(scalable_decoder)
    assert dec.kind == "scalable-decoder" and (dec.k, dec.resolution) == (24, 16)
    imgs = _images(16, seed=1)
    module, _, _ = load_export(scalable_decoder)
    with torch.no_grad():
        want = decode_bits(module(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0)[1])
    assert torch.equal(dec.bits(imgs), want)


def test_bf16_reads_the_same_shape_and_mostly_the_same_bits(tiny_stega_model):
    fp32 = Decoder(tiny_stega_model, DecoderOptions(precision="fp32"), STEGA_KINDS)
    bf16 = Decoder(tiny_stega_model, DecoderOptions(precision="bf16"), STEGA_KINDS)
    imgs = _images(fp32.resolution, n=32, seed=2)
    a, b = fp32.bits(imgs), bf16.bits(imgs)
    assert a.shape == b.shape and b.dtype == torch.float32
    assert (a == b).float().mean() > 0.9  # rounding flips only bits whose logits are near 0


@pytest.mark.skipif(not HAS_ONNX, reason="the onnx extra: pip install 'ganprint[onnx]'")
def test_onnx_runtime_reads_the_same_bits_and_keeps_its_session(tiny_stega_model, scalable_decoder):
    for path, kinds in ((tiny_stega_model, STEGA_KINDS), (scalable_decoder, ("scalable-decoder",))):
        torch_dec = Decoder(path, DecoderOptions(), kinds)
        onnx_dec = Decoder(path, DecoderOptions(runtime="onnx", threads=1), kinds)
        assert onnx_dec.session is not None and onnx_dec.net is None
        imgs = _images(torch_dec.resolution, n=12, seed=3)
        assert torch.equal(torch_dec.bits(imgs), onnx_dec.bits(imgs))
        assert torch.equal(onnx_dec.bits(imgs), onnx_dec.bits(imgs, batch_size=5))  # the session outlives its file


def test_bad_options_are_refused_by_field(tiny_stega_model, scalable_decoder):
    with pytest.raises(GanprintError, match="`runtime` must be torch or onnx"):
        DecoderOptions(runtime="tensorrt")
    with pytest.raises(GanprintError, match="`scale_search` runs with `runtime` torch only"):
        DecoderOptions(runtime="onnx", scales=(1.0, 0.9))
    with pytest.raises(GanprintError, match="`precision`"):
        DecoderOptions(precision="fp16")
    with pytest.raises(GanprintError, match="scalable-decoder"):
        Decoder(scalable_decoder, DecoderOptions(scales=(1.0, 0.9)))
    with pytest.raises(GanprintError):
        Decoder(scalable_decoder, kinds=STEGA_KINDS)  # the wrong kind of export


def test_scale_search_gives_a_scale_per_image(tiny_stega_model):
    dec = Decoder(tiny_stega_model, DecoderOptions(scales=(1.0, 0.8)), STEGA_KINDS)
    bits, chosen = dec.decode(_images(dec.resolution, n=4))
    assert bits.shape == (4, dec.k) and len(chosen) == 4 and set(chosen) <= {1.0, 0.8}
