"""Packed data sets: writer, reader, CelebA crop geometry, from-images resize, bad inputs, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.data.packed import PackedDataset, is_packed, pack_celeba, pack_images, write_packed


def _celeba_like(i: int) -> np.ndarray:
    """A 218x178 image whose pixel (y, x) encodes its coordinates, so crops are checkable exactly."""
    y, x = np.mgrid[0:218, 0:178]
    img = np.stack([y % 256, x % 256, np.full_like(x, i)], axis=-1).astype(np.uint8)  # [218, 178, 3]
    return img


@pytest.fixture
def celeba_dir(tmp_path):
    d = tmp_path / "img_align_celeba_png"
    d.mkdir()
    for i in (3, 1, 2, 0):  # written out of order; the tool sorts
        Image.fromarray(_celeba_like(i)).save(d / f"{i:06d}.png")
    return d


def test_celeba_crop_geometry(celeba_dir, tmp_path):
    out = pack_celeba(celeba_dir, tmp_path / "packed", limit=3)
    assert is_packed(out)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["format"] == "ganprint-packed" and meta["version"] == 1
    assert meta["count"] == 3 and meta["resolution"] == 128
    assert meta["names"] == ["000000.png", "000001.png", "000002.png"]
    ds = PackedDataset(out)
    assert len(ds) == 3
    item = ds[1]
    assert item["index"] == 1 and item["img"].dtype == torch.uint8 and item["img"].shape == (3, 128, 128)
    img = item["img"].permute(1, 2, 0).numpy()
    # Crop [cy-64:cy+64, cx-64:cx+64] with (cx, cy) = (89, 121): rows 57..184, columns 25..152.
    assert img[0, 0, 0] == 57 and img[0, 0, 1] == 25
    assert img[127, 127, 0] == 184 and img[127, 127, 1] == 152
    assert (img[..., 2] == 1).all()


def test_celeba_bad_size_names_file(celeba_dir, tmp_path):
    Image.fromarray(np.zeros((200, 178, 3), np.uint8)).save(celeba_dir / "000001.png")
    with pytest.raises(GanprintError, match="000001.png is 178x200"):
        pack_celeba(celeba_dir, tmp_path / "packed", limit=4)
    assert not (tmp_path / "packed").exists()  # atomic: nothing half-written left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".packed")]


def test_from_images_resize_and_shuffle(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(src / "sub" / "b.jpg")
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(src / "c.png")
    out = pack_images(src, tmp_path / "o", resolution=16, limit=3)
    ds = PackedDataset(out)
    assert ds.names == ["a.png", "c.png", "sub/b.jpg"]
    assert ds[1]["img"].shape == (3, 16, 16) and int(ds[1]["img"].float().mean()) == 7
    assert abs(ds[2]["img"].float().mean().item() - 200) < 3
    out2 = pack_images(src, tmp_path / "o2", resolution=16, shuffle=True, seed=5)
    m2 = json.loads((out2 / "dataset.json").read_text())
    assert sorted(m2["names"]) == ds.names and m2["shuffle"] is True and m2["seed"] == 5
    perm = np.random.RandomState(5).permutation(3)
    assert m2["names"] == [ds.names[i] for i in perm]


def test_bad_inputs(tmp_path):
    with pytest.raises(GanprintError, match="does not exist"):
        pack_images(tmp_path / "nope", tmp_path / "o", resolution=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanprintError, match="no images"):
        pack_images(tmp_path / "empty", tmp_path / "o", resolution=16)
    with pytest.raises(GanprintError, match="`resolution`"):
        pack_images(tmp_path / "empty", tmp_path / "o", resolution=24)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("x")
    with pytest.raises(GanprintError, match="not empty"):
        write_packed(tmp_path / "o", [], 0, 8, source="t", names=[], shuffle=False, seed=None)
    assert not is_packed(tmp_path / "o")
    with pytest.raises(GanprintError, match="not a ganprint packed"):
        PackedDataset(tmp_path / "o")


def test_memmap_and_pickle(tmp_path):
    imgs = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    out = write_packed(tmp_path / "p", iter(imgs), 5, 8, source="t", names=[f"{i}" for i in range(5)],
                       shuffle=False, seed=None)
    ds = PackedDataset(out)
    assert isinstance(ds._array(), np.memmap)
    import pickle

    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2._arr is None and int(ds2[4]["img"][0, 0, 0]) == 4


def test_cli(celeba_dir, tmp_path):
    r = CliRunner().invoke(main, ["dataset", "celeba", str(celeba_dir), str(tmp_path / "c"), "--num-images", "2"])
    assert r.exit_code == 0, r.output
    assert len(PackedDataset(tmp_path / "c")) == 2
    r = CliRunner().invoke(main, ["dataset", "from-images", str(celeba_dir), str(tmp_path / "f"),
                                  "--resolution", "32", "--shuffle", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert PackedDataset(tmp_path / "f")[0]["img"].shape == (3, 32, 32)
    r = CliRunner().invoke(main, ["dataset", "celeba", str(tmp_path / "missing"), str(tmp_path / "z")])
    assert r.exit_code == 1 and "does not exist" in r.output and "Traceback" not in r.output
