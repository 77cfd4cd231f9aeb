"""The run folder: checks before any write, the config guard, log.txt, rewinding logs, leftover temporaries."""

import json
import logging
import os

import pytest

from ganprint.core.errors import GanprintError
from ganprint.training.run import RunFolder, check_outdir, config_differences, truncate_jsonl


def test_config_guard_names_the_differing_fields_and_lets_runtime_fields_change(tmp_path):
    cfg = {"lr": 0.001, "G": {"z_dim": 8, "w_dim": 8}, "kimg": 1.0, "betas": [0.0, 0.99]}
    with RunFolder(tmp_path, cfg, runtime_fields=("kimg",)):
        pass
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["lr"] == 0.001 and "git_sha" in written
    with RunFolder(tmp_path, {**cfg, "kimg": 5.0}, runtime_fields=("kimg",)):  # a longer run resumes
        pass
    other = {**cfg, "lr": 0.002, "G": {"z_dim": 16, "w_dim": 8}}
    with pytest.raises(GanprintError) as e:
        RunFolder(tmp_path, other, runtime_fields=("kimg",)).check()
    msg = str(e.value)
    assert "G.z_dim: 8 -> 16" in msg and "lr: 0.001 -> 0.002" in msg and "w_dim" not in msg
    assert f"`outdir` {tmp_path}" in msg and "\n" not in msg
    assert config_differences({"a": 1}, {"a": 1, "b": 2}) == ["b: '<unset>' -> 2"]


def test_outdir_checks_before_any_write(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(GanprintError, match="lies inside `data`"):
        check_outdir(data / "runs" / "a", data)
    with pytest.raises(GanprintError, match=r"is `data` .* \(the data\)"):
        check_outdir(data, data)
    with pytest.raises(GanprintError, match="contains `data`"):
        check_outdir(tmp_path, data)
    check_outdir(tmp_path / "elsewhere", data)
    (tmp_path / "file").write_text("x")
    with pytest.raises(GanprintError, match=r"parent .*file is a file"):
        check_outdir(tmp_path / "file" / "run")
    with pytest.raises(GanprintError, match="is a file"):
        check_outdir(tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file"]


def test_truncate_drops_rows_after_the_state_and_a_torn_line(tmp_path):
    path = tmp_path / "stats.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    assert truncate_jsonl(path, 2) == 3
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    assert truncate_jsonl(path, 2) == 0 and truncate_jsonl(tmp_path / "missing.jsonl", 0) == 0
    # Rows counted by another field (the diffusion trainer's ticks).
    path.write_text("".join(json.dumps({"tick": t, "step": 9}) + "\n" for t in (1, 2, 3)))
    assert truncate_jsonl(path, 1, key="tick") == 2 and len(path.read_text().splitlines()) == 1


def test_log_file_and_leftover_temporaries(tmp_path):
    with RunFolder(tmp_path, {"a": 1}):  # an earlier run: the folder is ganprint's, and so is what it leaves
        pass
    (tmp_path / "snapshots").mkdir(parents=True)
    leftovers = [tmp_path / ".stats.jsonl.123.140.tmp", tmp_path / ".training-state-00000002.pt.x1y2.tmp",
                 tmp_path / "snapshots" / ".00000004.png.9.9.tmp"]
    for p in leftovers:
        p.write_bytes(b"")
    keep = tmp_path / "notes.tmp"
    keep.write_text("not ours")
    lib = logging.getLogger("ganprint.somewhere")
    with RunFolder(tmp_path, {"a": 1}):
        lib.info("hello from the library")
    lib.info("after the run")
    assert not any(p.exists() for p in leftovers) and keep.exists()
    text = (tmp_path / "log.txt").read_text()
    assert "hello from the library" in text and "after the run" not in text
    assert "removed 3 temporary file(s)" in text


def test_a_folder_with_files_ganprint_did_not_write_is_refused(tmp_path):
    (tmp_path / "stats.jsonl").write_text("mine\n")
    with pytest.raises(GanprintError, match="did not write"):
        RunFolder(tmp_path, {"a": 1}).check()
    assert [p.name for p in tmp_path.iterdir()] == ["stats.jsonl"] and (tmp_path / "stats.jsonl").read_text() == "mine\n"
    legacy = tmp_path / "legacy"  # a run of an older ganprint: config.json and no record; it resumes
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"a": 1, "git_sha": "x"}))
    with RunFolder(legacy, {"a": 1}):
        pass
    with pytest.raises(GanprintError, match=r"different config \(a: 1 -> 2\)"):
        RunFolder(legacy, {"a": 2}).check()


def test_write_failures_inside_the_run_become_one_line(tmp_path):
    with pytest.raises(GanprintError, match=r"cannot write .*stats\.jsonl: No space left on device; free disk"):
        with RunFolder(tmp_path, {"a": 1}):
            raise OSError(28, "No space left on device", str(tmp_path / "stats.jsonl"))
    with pytest.raises(FileNotFoundError):  # reading something outside the run folder is not a write error
        with RunFolder(tmp_path, {"a": 1}):
            raise FileNotFoundError(2, "No such file or directory", "/elsewhere/x.png")


@pytest.fixture
def unwritable(tmp_path):
    """A folder nobody can write into, root included (the immutable attribute), or a skip where none can be made."""
    import shutil
    import subprocess

    folder = tmp_path / "locked"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                         capture_output=True).returncode != 0:
        if os.access(folder, os.W_OK) and os.geteuid() == 0:
            pytest.skip("cannot make a folder unwritable here (root without chattr)")
        folder.chmod(0o500)
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o700)


def test_an_unwritable_outdir_is_one_line_naming_it(unwritable):
    with pytest.raises(GanprintError) as e:
        with RunFolder(unwritable / "run", {"a": 1}):
            pass
    assert str(e.value).startswith(f"cannot write {unwritable / 'run'}: ") and "\n" not in str(e.value)
    with pytest.raises(GanprintError, match=f"cannot write {unwritable}"):
        with RunFolder(unwritable, {"a": 1}):
            pass


def test_a_failed_start_leaves_no_run_folder_but_earlier_work_stays(tmp_path):
    new = tmp_path / "runs" / "a"
    with pytest.raises(GanprintError, match="no diffusers"):
        with RunFolder(new, {"lr": 1}):
            (new / "snapshots").mkdir()
            (new / "snapshots" / "reals.png").write_bytes(b"png")
            raise GanprintError("no diffusers")
    assert not new.exists() and (tmp_path / "runs").is_dir()  # the parent it did not need to create stays
    with RunFolder(new, {"lr": 2}):  # the corrected command is not refused as "a different config"
        pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError):
        with RunFolder(empty, {"lr": 1}):
            raise ValueError("bad data")
    assert empty.is_dir() and list(empty.iterdir()) == []  # the caller's folder stays, emptied of this run
    with pytest.raises(ValueError):  # a run that reached its first checkpoint keeps everything
        with RunFolder(tmp_path / "b", {"lr": 1}):
            (tmp_path / "b" / "training-state-00000002.pt").write_bytes(b"state")
            raise ValueError("later failure")
    assert (tmp_path / "b" / "config.json").is_file()
    with pytest.raises(ValueError):  # a folder that held earlier work (here: its config) is never touched
        with RunFolder(new, {"lr": 2}):
            raise ValueError("bad data")
    assert (new / "config.json").is_file()
    with pytest.raises(KeyboardInterrupt):  # an interrupted start keeps its log for the user to read
        with RunFolder(tmp_path / "c", {"lr": 1}):
            raise KeyboardInterrupt
    assert (tmp_path / "c" / "log.txt").is_file()
