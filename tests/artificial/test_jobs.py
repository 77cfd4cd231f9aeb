"""--jobs: the same result as one process, errors from workers, and no worker left behind after a kill."""

from __future__ import annotations

import numpy as np
import pytest

from ganprint.artificial.batches import plan_jobs
from ganprint.artificial.detect import detect
from ganprint.artificial.embed import embed
from ganprint.core.errors import GanprintError
from ganprint.core.images import BadImageError, read_image


def test_jobs_split_the_work_and_give_the_same_result(tiny_stega_model, sample_folder, tmp_path):
    one = embed(tiny_stega_model, sample_folder, tmp_path / "one", device="cpu", precision="fp32")
    two = embed(tiny_stega_model, sample_folder, tmp_path / "two", device="cpu", precision="fp32", jobs=2)
    assert one["fingerprinted"] == two["fingerprinted"] == 24 and two["new"] == 24
    assert (tmp_path / "one" / "embedded_fingerprints.txt").read_text() == \
        (tmp_path / "two" / "embedded_fingerprints.txt").read_text()
    for p in sorted((tmp_path / "one" / "fingerprinted_images").glob("*.png")):
        assert np.array_equal(read_image(p), read_image(tmp_path / "two" / "fingerprinted_images" / p.name)), p.name
    progress = sorted(p.name for p in (tmp_path / "two" / ".progress").glob("*.jsonl"))
    assert progress == ["embed-rank0.jsonl", "embed-rank1.jsonl"]  # each process did its share
    emb = tmp_path / "one" / "embedded_fingerprints.txt"
    d1 = detect(tiny_stega_model, tmp_path / "one" / "fingerprinted_images", tmp_path / "d1", embedded=emb, fpr=0.01,
                    device="cpu", precision="fp32")
    d2 = detect(tiny_stega_model, tmp_path / "one" / "fingerprinted_images", tmp_path / "d2", embedded=emb, fpr=0.01,
                    device="cpu", precision="fp32", jobs=2)
    assert d1["mean_bit_accuracy"] == d2["mean_bit_accuracy"] and d2["images"] == 24
    assert (tmp_path / "d1" / "detections.jsonl").read_text() == (tmp_path / "d2" / "detections.jsonl").read_text()


def test_jobs_report_a_bad_file_and_keep_finished_work(tiny_stega_model, sample_folder, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(sample_folder.glob("*.png"))[:8]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "zz-broken.png").write_text("not an image")
    with pytest.raises(BadImageError, match="zz-broken.png.*--skip-bad"):
        embed(tiny_stega_model, data, tmp_path / "out", device="cpu", jobs=2)
    s = embed(tiny_stega_model, data, tmp_path / "out", device="cpu", jobs=2, skip_bad=True)
    assert s["fingerprinted"] == 8 and s["resumed"] >= 1 and [x["file"] for x in s["skipped"]] == ["zz-broken.png"]


def test_jobs_resolution(monkeypatch):
    from ganprint.artificial.jobs import MIN_IMAGES_PER_JOB, resolve_jobs

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("ganprint.artificial.jobs.usable_cores", lambda: 4)
    assert resolve_jobs("auto", "cpu", 10 * MIN_IMAGES_PER_JOB) == 4
    assert resolve_jobs("auto", "cpu", 2 * MIN_IMAGES_PER_JOB) == 2
    assert resolve_jobs("auto", "cpu", 10) == 1  # too few images to pay for a process
    assert resolve_jobs("auto", "cpu", 2000, min_per_job=1000) == 2 and resolve_jobs("auto", "cpu", 1999, 1000) == 1
    assert resolve_jobs("3", "cpu", 10) == 3
    for bad in ("0", "many", -1):
        with pytest.raises(GanprintError, match="--jobs"):
            resolve_jobs(bad, "cpu", 10)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_jobs("auto", "cpu", 10_000) == 1  # torchrun's ranks already split the work
    with pytest.raises(GanprintError, match="torchrun"):
        resolve_jobs(2, "cpu", 10_000)


def test_one_listing_walks_a_folder_once_and_forgets_it_after(image_folder):
    from ganprint.data import folders as data

    calls = []
    real = data._walk_images

    def counting(root):
        calls.append(root)
        return real(root)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "_walk_images", counting)
        with data.one_listing():
            a = data.list_images(image_folder)
            b = data.ImageFolderDataset(image_folder, 16).paths
        assert a == b and len(calls) == 1
        data.list_images(image_folder)  # outside the block: walked again, so new files are seen
        assert len(calls) == 2


def test_auto_jobs_need_more_images_per_process_for_detect(tiny_stega_model, sample_folder, monkeypatch):
    from ganprint.artificial import jobs

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(jobs, "usable_cores", lambda: 2)
    assert plan_jobs("auto", "cpu", sample_folder, tiny_stega_model, 12) == 2  # 24 images: 12 per process
    assert plan_jobs("auto", "cpu", sample_folder, tiny_stega_model, 13) == 1
    assert plan_jobs(2, "cpu", sample_folder, tiny_stega_model, 10**6) == 2  # an explicit number is kept
    assert jobs.MIN_IMAGES_PER_DETECT_JOB > jobs.MIN_IMAGES_PER_JOB  # detect does less work per image
