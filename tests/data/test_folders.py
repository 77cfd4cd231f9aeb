"""ganprint.data: listing, lazy folder data sets, bad-file handling in a DataLoader, packed dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ganprint.core.errors import GanprintError
from ganprint.core.images import BadImageError, preprocess, read_image
from ganprint.data import packed
from ganprint.data.folders import ImageFolderDataset, collate, list_images, open_image_dataset


def test_list_images_recursive_sorted_and_filtered(image_folder):
    (image_folder / "notes.txt").write_text("x")
    (image_folder / ".hidden.png").write_bytes(b"")
    (image_folder / ".cache").mkdir()
    (image_folder / ".cache" / "x.png").write_bytes(b"")
    (image_folder / "UPPER.PNG").write_bytes((image_folder / "img00.png").read_bytes())
    rel = [p.relative_to(image_folder).as_posix() for p in list_images(image_folder)]
    assert rel == ["UPPER.PNG", "img00.png", "img02.png", "img04.jpg", "sub/img01.jpg", "sub/img03.png",
                   "sub/img05.png"]
    assert list_images(image_folder) == list_images(str(image_folder))  # stable


def test_list_images_skips_what_a_ganprint_record_lists_as_not_data(image_folder):
    from ganprint.core.paths import OutputFolder

    (image_folder / "plots").mkdir()
    (image_folder / "plots" / "roc.png").write_bytes((image_folder / "img00.png").read_bytes())
    (image_folder / "grid.png").write_bytes((image_folder / "img00.png").read_bytes())
    before = [p.relative_to(image_folder).as_posix() for p in list_images(image_folder)]
    assert "grid.png" in before and "plots/roc.png" in before  # no record: a user's folder, every image counts
    OutputFolder(image_folder, "--outdir", "generate", {}, not_data=["grid.png", "plots"]).claim()
    rel = [p.relative_to(image_folder).as_posix() for p in list_images(image_folder)]
    assert rel == [r for r in before if r not in ("grid.png", "plots/roc.png")]


def test_list_images_single_file_and_errors(image_folder, tmp_path):
    assert list_images(image_folder / "img00.png") == [image_folder / "img00.png"]
    with pytest.raises(GanprintError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanprintError, match="no images"):
        list_images(tmp_path / "empty")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(GanprintError, match="not an image file"):
        list_images(tmp_path / "a.txt")


def test_folder_dataset_items(image_folder):
    ds = ImageFolderDataset(image_folder, 16)
    assert len(ds) == 6
    item = ds[4]
    assert set(item) == {"img", "index"} and item["index"] == 4
    assert item["img"].dtype == torch.uint8 and item["img"].shape == (3, 16, 16)
    ref = preprocess(read_image(ds.paths[4]), 16)
    np.testing.assert_array_equal(item["img"].permute(1, 2, 0).numpy(), ref)
    assert ds.relpath(3) == "sub/img01.jpg"
    ds2 = ImageFolderDataset([image_folder / "img00.png", image_folder / "sub" / "img01.jpg"], 16)
    assert len(ds2) == 2 and ds2.relpath(1) == "sub/img01.jpg"


def test_bad_files_skip_or_raise(image_folder):
    (image_folder / "sub" / "broken.png").write_bytes(b"not a png")
    (image_folder / "zero.jpg").write_bytes(b"")
    strict = ImageFolderDataset(image_folder, 16)
    bad = [i for i, p in enumerate(strict.paths) if p.name in ("broken.png", "zero.jpg")]
    with pytest.raises(BadImageError, match="broken.png"):
        strict[bad[0]]
    lenient = ImageFolderDataset(image_folder, 16, skip_bad=True)
    item = lenient[bad[0]]
    assert item["img"] is None and item["index"] == bad[0] and "broken.png" in item["error"]
    seen, skipped = [], []
    for batch in DataLoader(lenient, batch_size=3, collate_fn=collate):
        assert batch["img"].shape[1:] in ((3, 16, 16), ()) or batch["img"].numel() == 0
        assert len(batch["index"]) == batch["img"].shape[0]
        seen += batch["index"].tolist()
        skipped += [i for i, _ in batch["skipped"]]
    assert sorted(skipped) == sorted(bad)
    assert sorted(seen + skipped) == list(range(len(lenient)))


def test_collate_all_bad():
    out = collate([{"img": None, "index": 3, "error": "x"}])
    assert out["img"].numel() == 0 and out["index"].tolist() == [] and out["skipped"] == [(3, "x")]


def test_dataloader_with_workers(image_folder):
    ds = ImageFolderDataset(image_folder, 16, skip_bad=True)
    batches = list(DataLoader(ds, batch_size=4, num_workers=1, collate_fn=collate))
    assert sum(len(b["index"]) for b in batches) == 6


def test_open_image_dataset_folder_and_packed(image_folder, tmp_path):
    ds = open_image_dataset(image_folder, 16)
    assert isinstance(ds, ImageFolderDataset) and len(ds) == 6
    imgs = [preprocess(read_image(p), 16) for p in ds.paths]
    packed.write_packed(tmp_path / "packed", iter(imgs), len(imgs), 16, source=str(image_folder),
                        names=[ds.relpath(i) for i in range(len(ds))], shuffle=False, seed=None)
    pds = open_image_dataset(tmp_path / "packed", 16)
    assert isinstance(pds, packed.PackedDataset) and len(pds) == 6
    np.testing.assert_array_equal(pds[2]["img"].numpy(), ds[2]["img"].numpy())
    with pytest.raises(GanprintError, match="`resolution` 16"):
        open_image_dataset(tmp_path / "packed", 32)
