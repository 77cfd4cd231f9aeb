"""core.paths: an output is never an input, existing files are replaced only when asked, output-folder records."""

from __future__ import annotations

import json
import os

import pytest

from ganprint.core.errors import GanprintError
from ganprint.core.paths import RECORD, OutputFolder, check_new_file, check_overlap, not_data


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.png").write_bytes(b"png")
    (tmp_path / "m.safetensors").write_bytes(b"model")
    (tmp_path / "other").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "link")
    os.symlink(tmp_path / "m.safetensors", tmp_path / "mlink")
    os.link(tmp_path / "m.safetensors", tmp_path / "hard.safetensors")
    return tmp_path


def _refused(inputs, outputs, *words):
    with pytest.raises(GanprintError) as e:
        check_overlap(inputs, outputs)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


def test_an_output_that_is_holds_or_lies_inside_an_input_is_refused_naming_both(tree):
    data, model = tree / "data", tree / "m.safetensors"
    ins = [("data", data, "data"), ("model", model, "model")]
    _refused(ins, [("outdir", data)], "`outdir`", "`data`", "is `data`")
    _refused(ins, [("outdir", data / "out")], "lies inside `data`")
    _refused(ins, [("outdir", tree)], "`outdir`", "contains `data`")
    _refused(ins, [("outdir", tree / "link")], "through a link")  # a symbolic link to the data folder
    _refused(ins, [("outdir", tree / "link" / "out")], "lies inside `data`")
    _refused(ins, [("outdir", tree / "other" / ".." / "data")], "is")  # '..'
    _refused(ins, [("outdir", data / "sub" / ".." / "x")], "lies inside `data`")
    _refused(ins, [("OUT", model, "file")], "OUT", "`model`", "(the model)")
    _refused(ins, [("OUT", tree / "mlink", "file")], "through a link")
    _refused(ins, [("OUT", tree / "hard.safetensors", "file")], "hard link", "`model`")
    _refused(ins, [("out", data / "x.jsonl", "file")], "`out`", "lies inside `data`")
    # A file output is never said to contain anything: an existing folder given for it is another error.
    check_overlap([("model", tree / "other" / "m")], [("OUT", tree / "other", "file")])
    # Outputs elsewhere, None paths, and a registry that is both an input and an output of one flag pass.
    check_overlap(ins + [("embedded", None)], [("outdir", tree / "out"), ("registry", tree / "r.sqlite", "file")])
    check_overlap([("registry", tree / "r.sqlite")], [("registry", tree / "r.sqlite", "file")])


def test_an_existing_output_file_is_replaced_only_with_overwrite(tmp_path):
    f = tmp_path / "out.json"
    check_new_file(f, "OUT")
    f.write_text("mine")
    with pytest.raises(GanprintError, match="OUT .*out.json already exists.*`overwrite`"):
        check_new_file(f, "OUT")
    check_new_file(f, "OUT", overwrite=True)
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    with pytest.raises(GanprintError, match="already exists"):
        check_new_file(tmp_path / "dangling", "out")


def test_output_folder_takes_new_empty_or_its_own_run_only(tmp_path):
    out = tmp_path / "out"
    first = OutputFolder(out, "outdir", "embed", {"seed": 1, "precision": "fp32"}, labels={}, not_data=["g.png"])
    assert not first.check().resumed
    first.claim()
    rec = json.loads((out / RECORD).read_text())
    assert rec["command"] == "embed" and rec["identity"] == {"precision": "fp32", "seed": 1}
    assert not_data(out) == {"g.png"}
    (out / "a.png").write_bytes(b"x")  # the run's own output
    assert OutputFolder(out, "outdir", "embed", {"seed": 1, "precision": "fp32"}).check().resumed
    with pytest.raises(GanprintError) as e:
        OutputFolder(out, "outdir", "embed", {"seed": 1, "precision": "bf16"}, labels={}).check()
    msg = str(e.value)
    assert "`outdir` " in msg and "`precision`: 'fp32' -> 'bf16'" in msg and "seed" not in msg
    with pytest.raises(GanprintError, match="holds the output of `ganprint embed`"):
        OutputFolder(out, "outdir", "detect", {"seed": 1}).check()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / f".x.{2 ** 22 + 7}.1.tmp").write_bytes(b"")  # what a killed writer leaves does not count
    assert not OutputFolder(foreign, "OUTDIR", "data samples", {}).check().resumed
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(GanprintError, match="OUTDIR .*did not write"):
        OutputFolder(foreign, "OUTDIR", "data samples", {}).check()
    legacy = OutputFolder(foreign, "OUTDIR", "data samples", {"seed": 0}, legacy={"seed": 0})
    assert legacy.check().resumed  # what an older ganprint recorded in the folder stands in for the record
