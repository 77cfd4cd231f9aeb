"""The image stream and the batch writer: the same batches however they are read, records only after the files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.images import read_image
from ganprint.data.folders import open_image_dataset
from ganprint.inference.stream import item_names, loader
from ganprint.inference.writer import BatchWriter, png_name
from tests.conftest import write_image_folder


@pytest.fixture
def dataset(tmp_path):
    write_image_folder(tmp_path / "imgs", n=7, seed=1)
    return open_image_dataset(tmp_path / "imgs", 16)


def _batches(ds, indices, **kw):
    return [(b["index"].tolist(), b["img"]) for b in loader(ds, indices, 3, **kw)]


def test_every_way_of_reading_gives_the_same_batches_in_order(dataset):
    indices = [6, 0, 2, 5, 1]
    ref = _batches(dataset, indices, workers=None, read_threads=0)
    assert [i for i, _ in ref] == [[6, 0, 2], [5, 1]]
    for kw in ({"read_threads": 2}, {"read_threads": 3, "prefetch": 1}, {"workers": 1}):
        got = _batches(dataset, indices, **{"workers": None, **kw})
        assert [i for i, _ in got] == [i for i, _ in ref], kw
        assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, ref)), kw
    with pytest.raises(GanprintError, match="`workers`"):
        _batches(dataset, indices, workers=-1)


def test_item_names_and_png_names(dataset):
    names = item_names(dataset)
    assert len(names) == 7 and names == sorted(names) and any("/" in n for n in names)
    assert png_name("sub/a.b.JPG") == "sub/a.b.png" and png_name("x.weird") == "x.png"


@pytest.mark.parametrize("threads", [0, 2])
def test_the_writer_records_a_batch_after_its_files(tmp_path, threads):
    progress = tmp_path / "p" / "rank0.jsonl"
    progress.parent.mkdir()
    writer = BatchWriter(progress, threads=threads, depth=1)
    img = np.full((4, 4, 3), 7, np.uint8)
    for b in range(3):
        writer.submit([(str(tmp_path / f"{b}-{j}.png"), img + j) for j in range(2)], [{"batch": b}])
    writer.close()
    assert [json.loads(x) for x in progress.read_text().splitlines()] == [{"batch": b} for b in range(3)]
    assert all(np.array_equal(read_image(tmp_path / f"{b}-{j}.png"), img + j) for b in range(3) for j in range(2))


def test_a_failed_write_names_its_file_and_keeps_earlier_records(tmp_path):
    progress = tmp_path / "rank0.jsonl"
    writer = BatchWriter(progress, threads=0)
    img = np.zeros((4, 4, 3), np.uint8)
    writer.submit([(str(tmp_path / "ok.png"), img)], [{"batch": 0}])
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(GanprintError, match="a-file"):
        writer.submit([(str(tmp_path / "a-file" / "x.png"), img)], [{"batch": 1}])
    writer.close(failed=True)
    assert [json.loads(x) for x in progress.read_text().splitlines()] == [{"batch": 0}]
