"""ganprint.data.samples and `ganprint data samples`: seeded crops of packaged photos, sources, splits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.core.images import read_image
from ganprint.data.samples import PHOTOS, available_photos, write_samples

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _pixels(paths):
    return np.stack([read_image(p) for p in paths])


def test_write_samples_is_a_pure_function_of_the_seed(tmp_path):
    a = write_samples(tmp_path / "a", resolution=16, count=10, seed=3)
    b = write_samples(tmp_path / "b", resolution=16, count=10, seed=3)
    c = write_samples(tmp_path / "c", resolution=16, count=10, seed=4)
    assert [p.name for p in a] == [f"{i:06d}.png" for i in range(10)]
    pa = _pixels(a)
    assert pa.shape == (10, 16, 16, 3)
    np.testing.assert_array_equal(pa, _pixels(b))
    assert not np.array_equal(pa, _pixels(c))
    assert (pa.reshape(10, -1).std(axis=1) >= 4).all()  # flat crops were redrawn
    assert len({p.tobytes() for p in pa}) == 10


def test_sources_are_recorded(tmp_path):
    write_samples(tmp_path, resolution=16, count=6, seed=0)
    meta = json.loads((tmp_path / "sources.json").read_text())
    assert meta["params"] == {"resolution": 16, "seed": 0, "photos": "all"}
    assert sum(p["crops"] for p in meta["photos"]) == 6
    for p in meta["photos"]:
        assert p["version"] and p["licence"] and p["package"] in ("scikit-image", "scikit-learn", "matplotlib")
    by_name = {p["name"]: p for p in meta["photos"]}
    assert "CC0" in by_name["chelsea"]["licence"] and "CC BY 2.0" in by_name["china"]["licence"]
    assert by_name["grace_hopper"]["licence"].startswith("unknown")
    md = (tmp_path / "SOURCES.md").read_text()
    assert "| astronaut | scikit-image" in md
    crops = [json.loads(line) for line in (tmp_path / "crops.jsonl").read_text().splitlines()]
    assert len(crops) == 6 and all(len(c["box"]) == 3 and c["box"][2] >= 16 for c in crops)


def test_resume_extends_and_refuses_other_settings(tmp_path):
    first = _pixels(write_samples(tmp_path / "x", resolution=16, count=4, seed=5))
    more = _pixels(write_samples(tmp_path / "x", resolution=16, count=7, seed=5))
    np.testing.assert_array_equal(more[:4], first)
    np.testing.assert_array_equal(more, _pixels(write_samples(tmp_path / "y", resolution=16, count=7, seed=5)))
    write_samples(tmp_path / "x", resolution=16, count=3, seed=5)
    assert sorted(p.name for p in (tmp_path / "x").glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    with pytest.raises(GanprintError, match="`seed`: 5 -> 6.*new `outdir`"):
        write_samples(tmp_path / "x", resolution=16, count=7, seed=6)
    (tmp_path / "x" / ".ganprint.json").unlink()  # a folder of an older ganprint: sources.json, no record
    assert len(write_samples(tmp_path / "x", resolution=16, count=4, seed=5)) == 4  # still resumes
    with pytest.raises(GanprintError, match="`seed`: 5 -> 6"):
        write_samples(tmp_path / "x", resolution=16, count=4, seed=6)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "a.png").write_bytes(b"x")
    with pytest.raises(GanprintError, match="did not write"):
        write_samples(tmp_path / "foreign", resolution=16, count=2)


def test_photo_split_is_fixed_and_disjoint(tmp_path):
    train = {p["name"] for p in available_photos("train")}
    held = {p["name"] for p in available_photos("heldout")}
    assert held == {"chelsea", "rocket", "china"} and not train & held
    assert train | held == {p.name for p in PHOTOS}
    write_samples(tmp_path, resolution=16, count=12, seed=0, photos="heldout")
    used = {json.loads(line)["photo"] for line in (tmp_path / "crops.jsonl").read_text().splitlines()}
    assert used <= held
    with pytest.raises(GanprintError, match="`photos`"):
        available_photos("test")


def test_cli_data_samples(tmp_path):
    argv = ["data", "samples", "--outdir", str(tmp_path / "s"), "--resolution", "16", "--count", "3", "--photos",
            "train"]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s").glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    assert (tmp_path / "s" / "SOURCES.md").is_file()
    # The library names fields; the CLI shows the command's flags in their place.
    res = CliRunner().invoke(main, [*argv[:-1], "test"])
    assert res.exit_code == 1 and "--photos must be one of" in res.output, res.output
    res = CliRunner().invoke(main, [*argv[:-2], "--seed", "1"])
    assert res.exit_code == 1 and "--seed: 0 -> 1" in res.output and "choose a new --outdir" in res.output, res.output


def test_varied_crops_are_reproducible_recorded_and_different(tmp_path):
    plain = _pixels(write_samples(tmp_path / "p", resolution=16, count=12, seed=2, photos="train"))
    varied = _pixels(write_samples(tmp_path / "v", resolution=16, count=12, seed=2, photos="train", vary=True))
    again = _pixels(write_samples(tmp_path / "v2", resolution=16, count=12, seed=2, photos="train", vary=True))
    np.testing.assert_array_equal(varied, again)
    assert np.abs(varied.astype(int) - plain.astype(int)).mean() > 10  # really other pixels
    meta = json.loads((tmp_path / "v" / "sources.json").read_text())
    assert meta["params"]["vary"] is True and "varied" in meta["method"]
    rows = [json.loads(line) for line in (tmp_path / "v" / "crops.jsonl").read_text().splitlines()]
    assert all({"rot90", "saturation", "gamma"} <= set(r) for r in rows)
    with pytest.raises(GanprintError, match="params|vary|settings|made with"):
        write_samples(tmp_path / "v", resolution=16, count=12, seed=2, photos="train")  # other settings: refused


def test_a_folder_of_photos_is_a_source(tmp_path):
    from tests.conftest import write_image_folder

    write_image_folder(tmp_path / "mine", n=3, sizes=((60, 80),))
    paths = write_samples(tmp_path / "out", resolution=16, count=5, seed=0, photos=str(tmp_path / "mine"))
    assert len(paths) == 5 and read_image(paths[0]).shape == (16, 16, 3)
    assert "a folder of the user's own photos" in (tmp_path / "out" / "SOURCES.md").read_text()
    with pytest.raises(GanprintError, match="`photos`"):
        write_samples(tmp_path / "bad", resolution=16, count=2, photos=str(tmp_path / "missing"))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("ref") / "s"
    write_samples(root, resolution=16, count=1000, seed=3)
    return _files(root)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["INT", "TERM", "KILL"])
def test_an_interrupted_run_resumes_to_the_bytes_of_an_uninterrupted_one(tmp_path, sig, uninterrupted):
    """Ctrl-C, SIGTERM or kill -9 mid-way, then the same command: it resumes (the folder's record is written before
    the first crop) and ends with the files of a run that was never interrupted."""
    argv = ["data", "samples", "--outdir", str(tmp_path / "s"), "--count", "1000", "--resolution", "16", "--seed", "3"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    # SIGINT back to its default in the child: a shell that starts the tests in the background (no job control)
    # ignores it, and Python then never raises KeyboardInterrupt (a fresh-clone run did so and finished all 1000).
    proc = subprocess.Popen([sys.executable, "-m", "ganprint", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        if len(list((tmp_path / "s").glob("*.png"))) > 30:  # crops, not the record or temporary files
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode in (-sig, 130), f"the run ended before it was stopped: {proc.returncode} {err}"
    assert "Traceback" not in err
    written = sorted((tmp_path / "s").glob("*.png"))
    assert 30 <= len(written) < 1000  # stopped mid-way
    res = CliRunner().invoke(main, argv)  # the same command again
    assert res.exit_code == 0, res.output
    got, want = _files(tmp_path / "s"), dict(uninterrupted)  # the files of a run never interrupted
    assert sorted(got) == sorted(want)  # the same files, no temporary left behind
    meta = [json.loads(files.pop("sources.json")) for files in (got, want)]
    assert [{k: v for k, v in m.items() if k != "created"} for m in meta] == [  # "created": when each run ended
        {k: v for k, v in meta[1].items() if k != "created"}] * 2
    assert [name for name in want if got[name] != want[name]] == []  # PNGs, crops.jsonl, SOURCES.md, the record
