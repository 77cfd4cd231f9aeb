"""--jobs: the same result as one process, errors from workers, and no worker left behind after a kill."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ganprint.artificial.detect import detect
from ganprint.artificial.embed import embed
from ganprint.core.errors import GanprintError
from ganprint.core.images import BadImageError, read_image
from ganprint.data import folders as data
from ganprint.data import listing
from ganprint.inference.jobs import _TMP_PREFIX, plan_jobs
from tests.conftest import write_image_folder


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
    with pytest.raises(BadImageError, match="zz-broken.png.*`skip_bad`"):
        embed(tiny_stega_model, data, tmp_path / "out", device="cpu", jobs=2)
    s = embed(tiny_stega_model, data, tmp_path / "out", device="cpu", jobs=2, skip_bad=True)
    assert s["fingerprinted"] == 8 and s["resumed"] >= 1 and [x["file"] for x in s["skipped"]] == ["zz-broken.png"]


def test_jobs_resolution(monkeypatch):
    from ganprint.inference.jobs import MIN_IMAGES_PER_JOB, resolve_jobs

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("ganprint.inference.jobs.usable_cores", lambda: 4)
    assert resolve_jobs("auto", "cpu", 10 * MIN_IMAGES_PER_JOB) == 4
    assert resolve_jobs("auto", "cpu", 2 * MIN_IMAGES_PER_JOB) == 2
    assert resolve_jobs("auto", "cpu", 10) == 1  # too few images to pay for a process
    assert resolve_jobs("auto", "cpu", 2000, min_per_job=1000) == 2 and resolve_jobs("auto", "cpu", 1999, 1000) == 1
    assert resolve_jobs("3", "cpu", 10) == 3
    for bad in ("0", "many", -1):
        with pytest.raises(GanprintError, match="`jobs`"):
            resolve_jobs(bad, "cpu", 10)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_jobs("auto", "cpu", 10_000) == 1  # torchrun's ranks already split the work
    with pytest.raises(GanprintError, match="torchrun"):
        resolve_jobs(2, "cpu", 10_000)


def test_one_listing_walks_a_folder_once_and_forgets_it_after(image_folder):
    calls = []
    real = listing._walk_images

    def counting(root):
        calls.append(root)
        return real(root)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(listing, "_walk_images", counting)
        with data.one_listing():
            a = data.list_images(image_folder)
            b = data.ImageFolderDataset(image_folder, 16).paths
        assert a == b and len(calls) == 1
        data.list_images(image_folder)  # outside the block: walked again, so new files are seen
        assert len(calls) == 2


def test_auto_jobs_need_more_images_per_process_for_detect(tiny_stega_model, sample_folder, monkeypatch):
    from ganprint.inference import jobs

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(jobs, "usable_cores", lambda: 2)
    assert plan_jobs("auto", "cpu", sample_folder, tiny_stega_model, 12) == 2  # 24 images: 12 per process
    assert plan_jobs("auto", "cpu", sample_folder, tiny_stega_model, 13) == 1
    assert plan_jobs(2, "cpu", sample_folder, tiny_stega_model, 10**6) == 2  # an explicit number is kept
    assert jobs.MIN_IMAGES_PER_DETECT_JOB > jobs.MIN_IMAGES_PER_JOB  # detect does less work per image


# --- crash tests: kill `ganprint embed/detect --jobs 2` at a random point, then re-run -------------------------------

N_CRASH = 300


def _cli(cmd: str, model, data, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ganprint", "-q", cmd, "--model", str(model), "--data", str(data), "--outdir",
            str(out), "--jobs", "2", "--device", "cpu", "--precision", "fp32", "--batch-size", "1", *extra]


def _env(tmpdir: Path) -> dict:
    tmpdir.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


SRC = Path(__file__).resolve().parents[2] / "src"


def _no_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell that runs the tests in the background ignores it


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _wait_for(cond, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run_and_kill(argv, env, cwd, started, target: str, sig: int, rng: random.Random | None) -> int:
    """Start `argv` in its own process group, wait until `started()` and a random moment more (none without `rng`),
    send `sig` to the command (target "pid") or to its whole group ("group"); then no process of the group may
    survive, nor write. Returns the command's pid."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_no_core_dumps)
    try:
        assert _wait_for(lambda: started() or proc.poll() is not None, 120), "the command never started working"
        time.sleep(rng.uniform(0.0, 0.5) if rng else 0.0)
        # On a fast machine the command may be done by now (poll() has reaped it): then there is nothing to kill.
        with contextlib.suppress(ProcessLookupError):
            if target == "pid":
                os.kill(proc.pid, sig)
            else:
                os.killpg(proc.pid, sig)
        proc.wait(timeout=60)
        survivors = _group_members(proc.pid)
        assert _wait_for(lambda: not _group_members(proc.pid), 15), f"workers survived: {survivors}"
    finally:
        if proc.poll() is None or _group_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert b"Traceback" not in proc.stderr.read()
    return proc.pid


@pytest.fixture(scope="module")
def crash_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    write_image_folder(root / "data", n=N_CRASH, seed=3, sizes=((32, 32), (24, 32), (40, 32)))
    return root / "data"


@pytest.fixture(scope="module")
def crash_reference(tiny_stega_model, crash_data, tmp_path_factory):
    """An uninterrupted `embed --jobs 2` and a `detect --jobs 2` of its output."""
    root = tmp_path_factory.mktemp("crash-ref")
    env = _env(root / "tmp")
    for argv in (_cli("embed", tiny_stega_model, crash_data, root / "emb"),
                 _cli("detect", tiny_stega_model, root / "emb" / "fingerprinted_images", root / "det", "--embedded",
                      str(root / "emb" / "embedded_fingerprints.txt"), "--fpr", "0.01")):
        subprocess.run(argv, env=env, cwd=root, check=True, timeout=300, capture_output=True)
    return root


def _same_files(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert fa == fb  # no leftover temporaries, nothing missing
    for name in fa:
        if name == "summary.json":  # names its own output folder
            assert {**json.loads((a / name).read_text()), "outdir": None} == \
                {**json.loads((b / name).read_text()), "outdir": None}
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


# Kills of one run, each (whom, signal); the run is started again after each, so later kills hit a resumed run.
EMBED_KILLS = {"pid": [("pid", s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGKILL)],
               "group": [("group", s) for s in (signal.SIGTERM, signal.SIGKILL)]}


def _records(out: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (out / ".progress").glob("*.jsonl")) \
        if (out / ".progress").is_dir() else 0


@pytest.mark.parametrize("kills", sorted(EMBED_KILLS))
def test_killed_embed_leaves_no_worker_and_resumes_to_the_same_bytes(tiny_stega_model, crash_data, crash_reference,
                                                                      tmp_path, kills):
    rng = random.Random(kills)
    out, env = tmp_path / "out", _env(tmp_path / "tmp")
    argv = _cli("embed", tiny_stega_model, crash_data, out)
    mid_run = 0
    for i, (target, sig) in enumerate(EMBED_KILLS[kills]):
        step = f"{target} {signal.Signals(sig).name}"
        before = _records(out)
        # the first kill comes at the first record, so that one comes mid-run however fast the machine is
        pid = _run_and_kill(argv, env, tmp_path, lambda: _records(out) > before, target, sig,  # noqa: B023
                            rng if i else None)
        files = _snapshot(out)
        time.sleep(0.5)
        assert _snapshot(out) == files, f"{step}: something still writes"
        left = [p.name for p in (tmp_path / "tmp").iterdir()]
        if sig == signal.SIGKILL:  # the workers remove a killed supervisor's folder on their way out, racing each
            # other; what they leave (seen once at load 6), the next run removes as stale (asserted after the last run)
            left = [n for n in left if not n.startswith(f"{_TMP_PREFIX}{pid}-")]
        if (target, sig) != ("group", signal.SIGKILL):  # a group SIGKILL leaves no one to clean; the next run does
            assert left == [], step
        mid_run += json.loads((out / "manifest.json").read_text())["status"] == "running"
    assert mid_run >= 1  # at least one kill came before the end of the work
    subprocess.run(argv, env=env, cwd=tmp_path, check=True, timeout=300, capture_output=True)
    assert list((tmp_path / "tmp").iterdir()) == []
    ref = crash_reference / "emb"
    assert (out / "embedded_fingerprints.txt").read_bytes() == (ref / "embedded_fingerprints.txt").read_bytes()
    _same_files(out / "fingerprinted_images", ref / "fingerprinted_images")
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_killed_detect_leaves_no_worker_and_reruns_to_the_same_bytes(tiny_stega_model, crash_reference, tmp_path):
    rng = random.Random(1)
    out, env = tmp_path / "det", _env(tmp_path / "tmp")
    emb = crash_reference / "emb"
    argv = _cli("detect", tiny_stega_model, emb / "fingerprinted_images", out, "--embedded",
                str(emb / "embedded_fingerprints.txt"), "--fpr", "0.01")

    def workers_started() -> bool:
        return any(p.startswith(_TMP_PREFIX) for p in os.listdir(tmp_path / "tmp"))

    for target, sig in (("pid", signal.SIGTERM), ("group", signal.SIGKILL)):
        _run_and_kill(argv, env, tmp_path, workers_started, target, sig, rng)
        if target == "pid":
            assert list((tmp_path / "tmp").iterdir()) == []
    subprocess.run(argv, env=env, cwd=tmp_path, check=True, timeout=300, capture_output=True)
    assert list((tmp_path / "tmp").iterdir()) == []
    _same_files(out, crash_reference / "det")


def test_a_worker_killed_alone_stops_the_run_in_one_line(tiny_stega_model, crash_data, tmp_path):
    out, env = tmp_path / "out", _env(tmp_path / "tmp")
    proc = subprocess.Popen(_cli("embed", tiny_stega_model, crash_data, out), env=env, cwd=tmp_path,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: len(_group_members(proc.pid)) >= 3 or proc.poll() is not None, 120)
        workers = [p for p in _group_members(proc.pid) if p != proc.pid]
        killed = False
        if workers:
            try:
                os.kill(max(workers), signal.SIGKILL)
                killed = True
            except ProcessLookupError:  # it ended between the listing and the kill (the run was finishing)
                pass
        proc.wait(timeout=120)
        assert _wait_for(lambda: not _group_members(proc.pid), 15)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    err = proc.stderr.read()
    if killed and proc.returncode != 0:  # (unless the run had already finished)
        assert proc.returncode == 1 and "Traceback" not in err and "was killed by signal 9" in err, err
    assert list((tmp_path / "tmp").iterdir()) == []
