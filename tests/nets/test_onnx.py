"""ONNX export of the decoders: ONNX Runtime reads the same bits as PyTorch (`ganprint export --format onnx`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.core.images import read_image
from ganprint.nets.scalable import ScalableConfig, ScalableDecoder

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'ganprint[onnx]'")
pytest.importorskip("onnxscript", reason="the onnx extra: pip install 'ganprint[onnx]'")

from ganprint.nets.onnx import OnnxDecoder  # noqa: E402


def _test_images(sample_folder, r: int) -> np.ndarray:
    from ganprint.core.images import preprocess

    photos = [preprocess(read_image(p), r) for p in sorted(sample_folder.glob("*.png"))]
    noise = np.random.default_rng(0).integers(0, 256, (8, r, r, 3), dtype=np.uint8)
    return np.concatenate([np.stack(photos), noise])  # [32, R, R, 3]


def test_stega_and_scalable_decoders_read_the_same_bits(tmp_path, tiny_stega_model, sample_folder):
    torch.manual_seed(1)
    cfg = ScalableConfig(resolution=32, fingerprint_length=48, z_dim=8, w_dim=16, mapping_layers=1,
                         channel_base=256, channel_max=16, modulated_res=[4, 8, 16, 32])
    sc_path = save_export(tmp_path / "sc.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    for path, scalable in ((tiny_stega_model, False), (sc_path, True)):
        out = tmp_path / (path.stem + ".onnx")
        r = CliRunner().invoke(main, ["export", "--model", str(path), "--format", "onnx", str(out)])
        assert r.exit_code == 0, r.output
        dec = OnnxDecoder(out)
        imgs = _test_images(sample_folder, dec.resolution)
        module, _, _ = load_export(path)
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            logits = module(x / 127.5 - 1)[1] if scalable else module.dec(x / 255)
        ort_logits = dec.logits(imgs)
        assert ort_logits.shape == tuple(logits.shape)
        assert np.abs(ort_logits - logits.numpy()).max() < 1e-3
        assert np.array_equal(dec.bits(imgs), (logits > 0).float().numpy())
        assert dec.kind == ("scalable-decoder" if scalable else "stega")


def test_bad_inputs(tmp_path, tiny_stega_model):
    g = tmp_path / "g.onnx"
    r = CliRunner().invoke(main, ["export", "--model", str(tmp_path / "none.safetensors"), "--format", "onnx",
                                  str(g)])
    assert r.exit_code == 1 and "does not exist" in r.output
    out = tmp_path / "s.onnx"
    assert CliRunner().invoke(main, ["export", "--model", str(tiny_stega_model), "--format", "onnx",
                                     str(out)]).exit_code == 0
    with pytest.raises(GanprintError, match=r"uint8 \[N, 32, 32, 3\]"):
        OnnxDecoder(out).bits(np.zeros((1, 16, 16, 3), np.uint8))


def test_detect_and_attribute_give_the_same_rows_with_onnx_runtime(tmp_path, tiny_stega_model, sample_folder):
    from ganprint.artificial.detect import detect
    from ganprint.scalable.attribute import attribute_images
    from ganprint.registry.store import Registry

    rows = {}
    for runtime in ("torch", "onnx"):
        detect(tiny_stega_model, sample_folder, tmp_path / f"det-{runtime}", fingerprint="0x3c", fpr=0.01,
               device="cpu", precision="fp32", runtime=runtime, jobs=1)
        rows[runtime] = (tmp_path / f"det-{runtime}" / "detections.jsonl").read_text()
    assert rows["onnx"] == rows["torch"] and rows["torch"].count("\n") == 24

    torch.manual_seed(2)
    cfg = ScalableConfig(resolution=32, fingerprint_length=48, z_dim=8, w_dim=16, mapping_layers=1,
                         channel_base=256, channel_max=16, modulated_res=[4, 8, 16, 32])
    dec = save_export(tmp_path / "sc.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    reg = Registry(tmp_path / "reg.sqlite")
    for _ in range(3):
        reg.issue(fingerprint_length=48, who="x")
    for runtime in ("torch", "onnx"):
        attribute_images(dec, tmp_path / "reg.sqlite", sample_folder, tmp_path / f"a-{runtime}", device="cpu",
                         runtime=runtime)
    rows = {r: (tmp_path / f"a-{r}" / "attributions.jsonl").read_text() for r in ("torch", "onnx")}
    assert rows["onnx"] == rows["torch"] and rows["torch"].count("\n") == 24
    with pytest.raises(GanprintError, match="`scale_search` runs with `runtime` torch only"):
        detect(tiny_stega_model, sample_folder, tmp_path / "x", runtime="onnx", scale_search="auto", device="cpu")


def test_tiles_are_cut_in_numpy_as_pytorch_cuts_them_and_their_logits_averaged(tmp_path, reactive_onnx,
                                                                                sample_folder):
    """`OnnxDecoder(tiles=n)` reads n R x n R views: numpy cuts the tiles in `inference.fullsize.split_tiles`'s
    order, and the logits are the mean over the tiles of the graph's own logits."""
    from ganprint.core.images import preprocess
    from ganprint.inference.fullsize import split_tiles as torch_split
    from ganprint.nets.onnx_runtime import split_tiles

    v = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)  # NHWC
    want = torch_split(torch.from_numpy(v).permute(0, 3, 1, 2), 3).permute(0, 2, 3, 1).numpy()
    assert split_tiles(v, 3).shape == (18, 2, 2, 3) and np.array_equal(split_tiles(v, 3), want)
    assert split_tiles(v, 1) is v
    with pytest.raises(GanprintError, match="does not split into 4 x 4"):
        split_tiles(v, 4)
    one, two = OnnxDecoder(reactive_onnx), OnnxDecoder(reactive_onnx, tiles=2)
    views = np.stack([preprocess(read_image(p), 64) for p in sorted(sample_folder.glob("*.png"))[:6]])
    per_tile = one.logits(split_tiles(views, 2)).reshape(6, 4, -1)
    np.testing.assert_allclose(two.logits(views), per_tile.mean(axis=1), rtol=0, atol=1e-6)
    assert np.array_equal(two.bits(views), (per_tile.mean(axis=1) > 0).astype(np.float32))
    with pytest.raises(GanprintError, match=r"uint8 \[N, 64, 64, 3\]"):
        two.bits(views[:, :32, :32])
    for bad in (0, 9, 1.5):
        with pytest.raises(GanprintError, match=r"`tiles` must be a whole number in \[1, 8\]"):
            OnnxDecoder(reactive_onnx, tiles=bad)
