"""The in-memory verifier: `Detector.detect` gives `detect`'s and `attribute`'s rows for images given as PIL images,
arrays or tensors, refuses what it cannot read by name, and checks ONNX graphs without importing torch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganprint
from ganprint.core.errors import GanprintError
from ganprint.core.images import read_image, to_tensor01
from ganprint.verification.detector import Detector, DetectorOptions, ImageInputError, check_files

from tests.conftest import write_image_folder

ROOT = Path(__file__).resolve().parents[2]
FPR = 0.005  # with 8 bits: detected only when all 8 match (P = 1/256)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_are_detects_rows_for_pil_images_arrays_and_tensors(tmp_path, reactive_stega_model):
    """Mixed sizes and formats (png, jpg, 40x48, 64x32, 32x32): every input form gives the row `detect` wrote."""
    files = write_image_folder(tmp_path / "imgs", n=6)
    ganprint.detect(reactive_stega_model, tmp_path / "imgs", tmp_path / "det", fingerprint="00101001", fpr=FPR,
                    device="cpu", precision="fp32", jobs=1)
    want = {r.pop("name"): r for r in _jsonl(tmp_path / "det" / "detections.jsonl")}
    names = [f.relative_to(tmp_path / "imgs").as_posix() for f in files]
    assert sorted(names) == sorted(want)
    det = ganprint.load_detector(reactive_stega_model, fingerprint="00101001", fpr=FPR, precision="fp32")
    arrays = [read_image(f) for f in files]
    forms = {
        "pil": [Image.open(f) for f in files],
        "arrays": arrays,
        "tensors": [to_tensor01(a) for a in arrays],  # [3, H, W] in [0, 1]
    }
    for form, images in forms.items():
        assert det.detect(images) == [want[n] for n in names], form
    assert len({r["bits"] for r in want.values()}) > 1  # the decoder reads different bits: the rows mean something
    assert det.detect(forms["pil"][0]) == [want[names[0]]]  # one image, not in a list
    square = [i for i, a in enumerate(arrays) if a.shape[:2] == (32, 32)]
    batch = np.stack([arrays[i] for i in square])  # [N, H, W, 3] and [N, 3, H, W]
    assert det.detect(batch) == det.detect(to_tensor01(batch)) == [want[names[i]] for i in square]
    assert [r["image"] for r in check_files(det, [str(f) for f in files])] == [str(f) for f in files]


def test_rows_are_attributes_rows_with_a_registry(tmp_path, sample_folder):
    from ganprint.core.artifacts import save_export
    from ganprint.nets.scalable import ScalableConfig, ScalableDecoder
    from ganprint.registry.store import Registry
    from ganprint.scalable.attribute import attribute_images

    torch.manual_seed(5)
    cfg = ScalableConfig(resolution=16, fingerprint_length=24, z_dim=8, w_dim=16, mapping_layers=1,
                         channel_base=128, channel_max=16, modulated_res=[4, 8, 16])
    dec = save_export(tmp_path / "dec.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    reg = Registry(tmp_path / "reg.sqlite")
    for who in ("ann", "bob", "cy"):
        reg.issue(fingerprint_length=24, who=who)
    attribute_images(dec, tmp_path / "reg.sqlite", sample_folder, tmp_path / "att", fpr=0.01, device="cpu")
    want = {r.pop("file"): r for r in _jsonl(tmp_path / "att" / "attributions.jsonl")}
    files = sorted(sample_folder.glob("*.png"))
    det = Detector.from_file(dec, registry=tmp_path / "reg.sqlite", fpr=0.01)
    rows = det.detect([Image.open(f) for f in files])
    assert rows == [want[f.name] for f in files] and len(rows) == 24
    assert det.threshold is not None and all(det.decision(r) == (r["attributed"] != "unknown") for r in rows)
    with pytest.raises(GanprintError, match="`registry` attributes images to issued scalable models"):
        Detector.from_file(_stega(tmp_path), registry=tmp_path / "reg.sqlite")
    with pytest.raises(GanprintError, match="`tiles` reads stega decoders; .*dec.safetensors is a scalable-decoder"):
        Detector.from_file(dec, registry=tmp_path / "reg.sqlite", tiles=2)


def _stega(tmp_path: Path) -> Path:
    from ganprint.core.artifacts import save_export
    from ganprint.nets.stega import StegaConfig, StegaModel, stega_config_dict

    model = StegaModel(StegaConfig(16, 8))
    return save_export(tmp_path / "s16.safetensors", model, "stega", stega_config_dict(model.cfg))


def test_without_a_reference_rows_hold_the_bits_and_no_decision(reactive_stega_model, sample_folder):
    det = Detector.from_file(reactive_stega_model)
    rows = det.detect([read_image(p) for p in sorted(sample_folder.glob("*.png"))[:3]])
    assert [set(r) for r in rows] == [{"bits"}] * 3 and det.threshold is None
    assert det.decision(rows[0]) is None


@pytest.mark.parametrize("images,message", [
    (np.zeros((8, 8, 3), np.float32), r"`images` is a float32 array; arrays must be uint8 \[H, W, 3\]"),
    (np.zeros((8, 8), np.uint8), r"`images` has shape \[8, 8\]; arrays must be \[H, W, 3\]"),
    (np.zeros((8, 8, 4), np.uint8), r"shape \[8, 8, 4\]"),
    (np.zeros((0, 8, 3), np.uint8), "zero size"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), r"`images` is a uint8 tensor; tensors must be float in \[0, 1\]"),
    (torch.full((3, 8, 8), 1.5), r"values outside \[0, 1\] \(from 1.5 to 1.5"),
    (torch.full((3, 8, 8), float("nan")), r"`images` holds NaN or infinite values"),
    (torch.zeros(8, 8, 3), r"`images` has shape \[8, 8, 3\]; tensors must be \[3, H, W\]"),
    ([np.zeros((8, 8, 3), np.uint8), "x.png"], r"`images`\[1\] is a str; give a PIL image"),
    ([[np.zeros((8, 8, 3), np.uint8)]], r"`images`\[0\] is a list: give a flat list"),
])
def test_bad_images_are_refused_by_name(reactive_stega_model, images, message):
    with pytest.raises(ImageInputError, match=message):
        Detector.from_file(reactive_stega_model).detect(images)


def test_bad_settings_are_refused_by_field_name(tmp_path, reactive_stega_model):
    cases = [({"fingerprint": "0110", "registry": "r.sqlite"}, "either `fingerprint` or `registry`"),
             ({"runtime": "tf"}, "`runtime` must be auto, torch or onnx"), ({"fpr": 0.0}, "`fpr` must be in"),
             ({"fpr": 1e-9, "fingerprint": "0x29"}, "`fpr` 1e-09 is too small for 8 bits"),
             ({"fingerprint": "0x3"}, "fewer than the model's 8"), ({"batch_size": 0}, "`batch_size`"),
             ({"tiles": 0}, r"`tiles` must be a whole number in \[1, 8\], got 0"), ({"tiles": 9}, "`tiles`"),
             ({"tiles": 1.5}, "`tiles`"), ({"tile": 2}, "unknown detector option `tile`; the options are runtime"),
             ({"options": {"tiles": 2}}, "`options` is a dict; give a DetectorOptions")]
    for kwargs, message in cases:
        with pytest.raises(GanprintError, match=message):
            Detector.from_file(reactive_stega_model, **kwargs)
    with pytest.raises(GanprintError, match="`model` .*missing.onnx does not exist"):
        Detector.from_file(tmp_path / "missing.onnx")
    (tmp_path / "fake.onnx").write_text("not a graph")
    with pytest.raises(GanprintError, match="runs with `runtime` onnx"):
        Detector.from_file(tmp_path / "fake.onnx", runtime="torch")
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'ganprint[onnx]'")
    with pytest.raises(GanprintError, match="fake.onnx is not an ONNX graph ONNX Runtime can load"):
        Detector.from_file(tmp_path / "fake.onnx")


def test_options_are_one_frozen_dataclass_and_keywords_replace_its_fields(reactive_stega_model):
    opts = DetectorOptions(fpr=FPR, precision="fp32", tiles=2)
    det = ganprint.load_detector(reactive_stega_model, fingerprint="00101001", options=opts, batch_size=3)
    assert det.options == dataclasses.replace(opts, batch_size=3)
    assert (det.fpr, det.batch_size, det.tiles) == (FPR, 3, 2)
    assert det.threshold == 8  # the threshold of `fpr` from the options
    assert Detector.from_file(reactive_stega_model, options=opts).options is opts
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.tiles = 3
    with pytest.raises(GanprintError, match="`tiles` must be"):
        DetectorOptions(tiles=9)


def _tile_mean_bits(model_path: Path, arrays: list[np.ndarray], tiles: int) -> list[str]:
    """The bits of the decoder's logits averaged over each image's tiles, computed here from the decoder itself."""
    from ganprint.core.artifacts import load_export
    from ganprint.core.fingerprints import bits_to_strs
    from ganprint.core.images import preprocess
    from ganprint.inference.fullsize import split_tiles

    model, config, _ = load_export(model_path, kind="stega")
    side = int(config["resolution"]) * tiles
    views = torch.stack([to_tensor01(preprocess(a, side)) for a in arrays])  # [N, 3, nR, nR]
    with torch.no_grad():
        logits = model.dec(split_tiles(views, tiles)).reshape(len(arrays), tiles * tiles, -1).mean(dim=1)
    return bits_to_strs((logits > 0).float())


def test_tiles_read_the_mean_of_the_tiles_with_pytorch_and_onnx_runtime_alike(tmp_path, reactive_stega_model,
                                                                              reactive_onnx):
    """`tiles` 2 on mixed sizes: each image's centre square, resized to 2R, is read as 2 x 2 tiles whose logits are
    averaged; PyTorch, the ONNX graph and the safetensors export under ONNX Runtime give the same rows."""
    arrays = [read_image(f) for f in write_image_folder(tmp_path / "imgs", n=6)]
    want = _tile_mean_bits(reactive_stega_model, arrays, 2)
    opts = DetectorOptions(fpr=FPR, precision="fp32", tiles=2)
    rows = {"torch": Detector.from_file(reactive_stega_model, fingerprint="00101001", options=opts).detect(arrays),
            "graph": Detector.from_file(reactive_onnx, fingerprint="00101001", options=opts).detect(arrays),
            "converted": Detector.from_file(reactive_stega_model, fingerprint="00101001", options=opts,
                                            runtime="onnx").detect(arrays)}
    assert [r["bits"] for r in rows["torch"]] == want and len(set(want)) > 1
    assert rows["graph"] == rows["converted"] == rows["torch"]
    untiled = Detector.from_file(reactive_onnx, fingerprint="00101001", fpr=FPR).detect(arrays)
    assert [r["bits"] for r in untiled] != want  # the tiles are what is read


# A `torch` package that cannot be imported, first on the path: what a machine without PyTorch looks like.
_NO_TORCH = 'raise ImportError("no torch on this machine (a test stand-in)")\n'


def _without_torch(tmp_path: Path) -> dict:
    block = tmp_path / "no-torch"
    (block / "torch").mkdir(parents=True)
    (block / "torch" / "__init__.py").write_text(_NO_TORCH)
    return {"PYTHONPATH": f"{block}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"}


def test_an_onnx_graph_is_checked_without_torch(tmp_path, reactive_onnx, reactive_stega_model, sample_folder):
    files = sorted(sample_folder.glob("*.png"))[:6]
    want = Detector.from_file(reactive_stega_model, fingerprint="00101001", fpr=FPR, precision="fp32").detect(
        [read_image(f) for f in files])
    assert Detector.from_file(reactive_onnx, fingerprint="00101001", fpr=FPR).detect(
        [read_image(f) for f in files]) == want
    script = ("import json, sys\n"
              "import ganprint\n"
              "from PIL import Image\n"
              f"det = ganprint.load_detector({str(reactive_onnx)!r}, fingerprint='00101001', fpr={FPR})\n"
              f"rows = det.detect([Image.open(p) for p in {[str(f) for f in files]!r}])\n"
              f"det = ganprint.load_detector({str(reactive_onnx)!r}, fingerprint='00101001', fpr={FPR}, tiles=2)\n"
              f"tiled = det.detect([Image.open(p) for p in {[str(f) for f in files]!r}])\n"
              "print(json.dumps({'rows': rows, 'tiled': tiled, 'torch': 'torch' in sys.modules}))\n")
    env = _without_torch(tmp_path)
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    tiled = Detector.from_file(reactive_stega_model, fingerprint="00101001", fpr=FPR, precision="fp32",
                               tiles=2).detect([read_image(f) for f in files])
    assert out == {"rows": want, "tiled": tiled, "torch": False} and tiled != want
    # the stand-in does block torch: the PyTorch path fails there
    res = subprocess.run([sys.executable, "-c", f"import ganprint; ganprint.load_detector({str(reactive_stega_model)!r})"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "no torch on this machine" in res.stderr
