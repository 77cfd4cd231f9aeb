"""Issued model files: unique names, never replaced, a row iff its file across kills and lost connections, and
the repair that settles what a kill left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.core.files import sha256_file
from ganprint.registry.errors import CommitUnknown
from ganprint.registry.issued import committed_file, issued_name, pending_name, repair_issued
from ganprint.registry.store import Registry
from ganprint.scalable.issue import issue_model
from tests.registry.kit import tiny_generator


def test_issue_model_writes_the_file_inside_the_transaction(url, tmp_path):
    g = tiny_generator(tmp_path)
    row = issue_model(g, url, tmp_path / "issued", who="carol")
    assert sha256_file(row["issued_path"]) == row["issued_sha256"] == Registry(url).get(1).issued_sha256
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GanprintError, match="`models_dir` .* is a file, not a folder"):
        issue_model(g, url, blocker / "sub", who="bad")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if not os.access(ro, os.W_OK):  # root writes anywhere: the check then has nothing to refuse
        with pytest.raises(GanprintError, match="not writable"):
            issue_model(g, url, ro, who="bad")
    # A failure while writing the model (a folder where the file goes) rolls the row back and removes nothing else.
    rid = Registry(url).identity()
    assert Path(row["issued_path"]).name == issued_name(rid, 1) == f"issued-000001-{rid}.safetensors"
    blocked = tmp_path / "issued" / pending_name(rid, 2)
    blocked.mkdir()
    with pytest.raises(OSError):
        issue_model(g, url, tmp_path / "issued", who="unlucky")
    assert blocked.is_dir()
    blocked.rmdir()
    # A file already at the name of the next id (no row of this registry) is never replaced: the issue is refused.
    squatter = tmp_path / "issued" / issued_name(rid, 3 if url.startswith("postgresql") else 2)  # PostgreSQL
    squatter.write_text("not ours")  # never reuses the id of a rolled-back row, SQLite does
    with pytest.raises(GanprintError, match="already holds"):
        issue_model(g, url, tmp_path / "issued", who="unlucky")
    assert squatter.read_text() == "not ours"
    rows = Registry(url).list()
    assert [r.who for r in rows] == ["carol"]
    assert all(r.issued_path and os.path.exists(r.issued_path) for r in rows)
    assert sorted(os.listdir(tmp_path / "issued")) == sorted([issued_name(rid, 1), squatter.name])


# --- issued files: unique names, never replaced, a row iff its file ------------------------------------------------


def test_two_registries_one_outdir_keep_two_files(tmp_path):
    g = tiny_generator(tmp_path)
    rows = []
    for reg, who in (("a.sqlite", "alice"), ("b.sqlite", "bob")):
        r = CliRunner().invoke(main, ["issue", "--model", str(g), "--registry", str(tmp_path / reg), "--models-dir",
                                      str(tmp_path / "issued"), "--who", who])
        assert r.exit_code == 0, r.output
        rows.append(json.loads(r.stdout.splitlines()[-1]))
    assert [r["fp_id"] for r in rows] == [1, 1] and rows[0]["issued_path"] != rows[1]["issued_path"]
    assert len(os.listdir(tmp_path / "issued")) == 2
    for reg, who in (("a.sqlite", "alice"), ("b.sqlite", "bob")):
        rec = Registry(tmp_path / reg).get(1)
        assert rec.who == who and sha256_file(rec.issued_path) == rec.issued_sha256


_DIE = """
import os, signal, sys
sys.path.insert(0, {src!r})
import ganprint.registry.issued as issued
import ganprint.scalable.issue as issue
where = sys.argv[4]
if where != "before-commit":  # the row committed, the pending file is not renamed yet
    issued.place_issued = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
else:  # the pending file is written, COMMIT not sent
    write = issued.write_new_file
    def write_and_die(path, data):
        write(path, data)
        os.kill(os.getpid(), signal.SIGKILL)
    issued.write_new_file = write_and_die
issue.issue_model(sys.argv[1], sys.argv[2], sys.argv[3], who=where)
"""


def _issue_killed(g, url, outdir, where: str) -> None:
    src = str(Path(__file__).resolve().parents[2] / "src")
    proc = subprocess.run([sys.executable, "-c", _DIE.format(src=src), str(g), url, str(outdir), where],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def _assert_row_iff_file(url, outdir) -> list:
    rows = Registry(url, create=False).list()
    assert sorted(os.listdir(outdir)) == sorted(Path(r.issued_path).name for r in rows)  # no pending file left
    for r in rows:
        assert Path(r.issued_path).parent == Path(outdir).resolve() and sha256_file(r.issued_path) == r.issued_sha256
    return rows


def test_an_issuer_killed_around_commit_leaves_a_row_iff_its_file(url, tmp_path):
    g, out = tiny_generator(tmp_path), tmp_path / "issued"
    issue_model(g, url, out, who="first")
    rid = Registry(url).identity()
    _issue_killed(g, url, out, "after-commit")  # row #2 committed, its model only under the pending name
    assert Registry(url).get(2).who == "after-commit" and os.listdir(out).count(pending_name(rid, 2)) == 1
    report = repair_issued(Registry(url), out)
    assert report["completed"] == [issued_name(rid, 2)] and not report["removed"] and not report["missing"]
    _assert_row_iff_file(url, out)
    _issue_killed(g, url, out, "read-before-repair")  # a reader puts a committed row's pending file in place
    row = Registry(url).get(3)
    assert committed_file(row) == Path(row.issued_path) and pending_name(rid, 3) not in os.listdir(out)
    _assert_row_iff_file(url, out)
    _issue_killed(g, url, out, "before-commit")  # a pending file whose row never committed
    assert len(Registry(url).list()) == 3 and len(os.listdir(out)) == 4
    assert issue_model(g, url, out, who="next")["who"] == "next"  # `ganprint issue` settles --models-dir first
    assert [r.who for r in _assert_row_iff_file(url, out)] == ["first", "after-commit", "read-before-repair", "next"]
    os.unlink(Registry(url).get(1).issued_path)  # a row whose file was deleted by hand is reported
    (out / issued_name(rid, 99)).write_bytes(b"x")  # as a file named for this registry without a row
    report = repair_issued(Registry(url), out)
    assert report["missing"] == [1] and report["orphans"] == [issued_name(rid, 99)]
    assert (out / issued_name(rid, 99)).exists()  # reported, never deleted: it may be all that is left of a model


def _commit_fault_setup(tmp_path, postgres_server, name: str):
    from tests.service.pgproxy import FaultProxy
    from tests.service.postgres import create_database

    direct = create_database(*postgres_server, name)
    proxy = FaultProxy(*postgres_server)
    Registry(direct)  # schema and id in place: the proxy sees only the issue's transaction
    return direct, proxy, proxy.url(name), tiny_generator(tmp_path), tmp_path / "issued"


def test_postgres_connection_lost_after_commit_keeps_the_model(tmp_path, postgres_server):
    direct, proxy, url, g, out = _commit_fault_setup(tmp_path, postgres_server, f"lost_after_{os.getpid()}")
    try:
        proxy.arm("after")
        row = issue_model(g, url, out, who="alice")  # COMMIT's answer never arrived; the registry says it committed
        assert proxy.fired.is_set() and Registry(direct).get(row["fp_id"]).who == "alice"
        assert [r.who for r in _assert_row_iff_file(direct, out)] == ["alice"]
    finally:
        proxy.close()


def test_postgres_connection_lost_before_commit_leaves_nothing(tmp_path, postgres_server):
    direct, proxy, url, g, out = _commit_fault_setup(tmp_path, postgres_server, f"lost_before_{os.getpid()}")
    try:
        proxy.arm("before")
        with pytest.raises(GanprintError, match="did not commit"):
            issue_model(g, url, out, who="bob")
        assert proxy.fired.is_set() and Registry(direct).list() == []
        assert os.listdir(out) == []
    finally:
        proxy.close()


def test_postgres_commit_of_unknown_outcome_is_settled_by_repair(tmp_path, postgres_server):
    direct, proxy, url, g, out = _commit_fault_setup(tmp_path, postgres_server, f"lost_unknown_{os.getpid()}")
    try:
        proxy.arm("after", refuse_after=True)  # ... and the database cannot be reached to ask
        with pytest.raises(CommitUnknown, match="registry repair"):
            issue_model(g, url, out, who="carol")
        rid = Registry(direct).identity()
        carol = Registry(direct).list()[-1]
        assert carol.who == "carol" and os.listdir(out) == [pending_name(rid, carol.fp_id)]
        proxy.refuse = False
        r = CliRunner().invoke(main, ["registry", "repair", url, "--models-dir", str(out)])
        assert r.exit_code == 0 and json.loads(r.stdout)["completed"] == 1, r.output
        assert [x.who for x in _assert_row_iff_file(direct, out)] == ["carol"]
    finally:
        proxy.close()
