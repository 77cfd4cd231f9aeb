"""Fingerprint registry on SQLite and on a real PostgreSQL: uniqueness, minimum distance, concurrent issuing,
all-or-nothing issues (model file included), read-only use, schema migration, export/import, data sets, tokens."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.artifacts import save_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import sha256_file
from ganprint.core.fingerprints import parse_bits
from ganprint.nets.scalable import ScalableConfig, ScalableGenerator
from ganprint.scalable.issue import issue_model, issued_name, pending_name, repair_issued
from ganprint.core import mounts
from ganprint.core.mounts import filesystem_type, network_filesystem
from ganprint.scalable.registry import (SCHEMA_VERSION, CommitUnknown, Registry, default_min_distance, migrate,
                                       register_dataset)
from tests.service.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A new registry URL on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "r.sqlite")
    return request.getfixturevalue("postgres_url")


def test_issue_random_and_min_distance(url):
    reg = Registry(url)
    assert len(reg) == 0 and reg.bit_length() is None and reg.schema_version() == SCHEMA_VERSION
    rows = [reg.issue(bit_length=32, who="alice", notes=f"n{i}", min_distance=8) for i in range(20)]
    assert [r.fp_id for r in rows] == list(range(1, 21))
    assert rows[0].min_distance is None
    assert all(r.min_distance >= 8 for r in rows[1:])
    bits = torch.stack([r.bits for r in rows])  # [20, 32]
    d = (bits[:, None] != bits[None]).sum(-1) + torch.eye(20, dtype=torch.long) * 999
    assert int(d.min()) >= 8
    # The recorded min distance is the distance to the nearest *earlier* fingerprint.
    for i in range(1, 20):
        assert rows[i].min_distance == int(d[i, :i].min())
    assert reg.bit_length() == 32 and len(reg) == 20
    listed = Registry(url, create=False).list()
    assert [r.bits_hex for r in listed] == [r.bits_hex for r in rows] and listed[3].notes == "n3"
    ids, packed = reg.packed()
    assert ids.tolist() == list(range(1, 21)) and packed.shape == (20, 4)
    assert reg.revision() == (20, 20, 0, 0)


def test_given_fingerprint_refused_when_close(url):
    reg = Registry(url)
    a = "0" * 16
    reg.issue(a, who="a")
    with pytest.raises(GanprintError, match="already issued"):
        reg.issue(a)
    with pytest.raises(GanprintError, match="Hamming distance 1"):
        reg.issue("1" + "0" * 15)  # default min distance for 16 bits is 4
    rec = reg.issue("1111" + "0" * 12)
    assert rec.min_distance == 4 == default_min_distance(16)
    with pytest.raises(GanprintError, match="16-bit"):
        reg.issue("0" * 8 + "1" * 24)
    with pytest.raises(GanprintError, match="model expects 16"):
        reg.issue(torch.zeros(8), bit_length=16)
    assert len(reg) == 2  # the refused ones left nothing behind
    assert reg.get(2).bits.tolist() == parse_bits("1111" + "0" * 12).tolist()
    with pytest.raises(GanprintError, match="no fingerprint with id 9"):
        reg.get(9)


def test_exhausted_space_is_a_clear_error(url):
    reg = Registry(url)
    for _ in range(2):
        reg.issue(bit_length=2, min_distance=2)  # only two 2-bit strings are 2 apart from each other
    with pytest.raises(GanprintError, match="lower --min-distance"):
        reg.issue(bit_length=2, min_distance=2, max_tries=50)


def test_bad_registries(tmp_path):
    with pytest.raises(GanprintError, match="does not exist"):
        Registry(tmp_path / "none.sqlite", create=False)
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database at all" * 100)
    with pytest.raises(GanprintError, match="not a usable"):
        Registry(bad)
    with pytest.raises(GanprintError, match="is a directory"):
        Registry(tmp_path)
    with pytest.raises(GanprintError, match="unknown scheme"):
        Registry("mysql://x/y")
    with pytest.raises(GanprintError, match="cannot connect"):
        Registry("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    Registry(f"sqlite:///{tmp_path}/u.sqlite").issue(bit_length=8, who="u")
    assert [r.who for r in Registry(tmp_path / "u.sqlite").list()] == ["u"]


def _issue_worker(url: str, n: int, q) -> None:
    reg = Registry(url)
    q.put([reg.issue(bit_length=64, who=f"proc{os.getpid()}", min_distance=16).bits_hex for _ in range(n)])


@pytest.mark.parametrize("min_distance", [16])
def test_concurrent_processes_no_loss_no_duplicates(url, min_distance):
    Registry(url)
    ctx = mp.get_context("fork")  # the workers only use the database; fork avoids re-importing torch
    q = ctx.Queue()
    procs = [ctx.Process(target=_issue_worker, args=(url, 8, q)) for _ in range(6)]
    for p in procs:
        p.start()
    got = [h for _ in procs for h in q.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    rows = Registry(url).list()
    assert len(rows) == 48 == len(got)
    assert sorted(r.bits_hex for r in rows) == sorted(got)
    assert len({r.bits_hex for r in rows}) == 48
    assert [r.fp_id for r in rows] == list(range(1, 49))
    bits = np.array([[c == "1" for c in format(int(r.bits_hex, 16), "064b")] for r in rows])
    d = (bits[:, None] != bits[None]).sum(-1) + np.eye(48, dtype=int) * 999
    assert d.min() >= min_distance


def _slow_issue(url: str, marker: str) -> None:
    def finalize(rec):
        open(marker, "w").close()
        time.sleep(60)  # killed here: the row was inserted but never committed
        return "x", "y"

    Registry(url).issue(bit_length=16, who="victim", finalize=finalize)


def test_killed_issuer_leaves_no_record_and_no_lock(url, tmp_path):
    reg = Registry(url)
    reg.issue(bit_length=16, who="first")
    marker = tmp_path / "inside"
    p = mp.get_context("fork").Process(target=_slow_issue, args=(url, str(marker)))
    p.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and p.is_alive()
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert [r.who for r in reg.list()] == ["first"]
    assert reg.issue(bit_length=16, who="after").who == "after"  # the lock went with the process
    assert [r.who for r in reg.list()] == ["first", "after"]


def test_failed_finalize_rolls_back(url):
    reg = Registry(url)

    def boom(rec):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        reg.issue(bit_length=16, finalize=boom)
    assert len(reg) == 0
    rec = reg.issue(bit_length=16, finalize=lambda r: ("/m.safetensors", "ab" * 32))
    assert Registry(url).get(rec.fp_id).issued_path == "/m.safetensors"


def _tiny_generator(tmp_path):
    cfg = ScalableConfig(resolution=8, fingerprint_length=16, z_dim=4, w_dim=8, mapping_layers=1, channel_base=32,
                         channel_max=8, modulated_res=[4, 8])
    path = tmp_path / "G.safetensors"
    save_export(path, ScalableGenerator(cfg), "scalable-G", cfg.to_dict())
    return path


def test_issue_model_writes_the_file_inside_the_transaction(url, tmp_path):
    g = _tiny_generator(tmp_path)
    row = issue_model(g, url, tmp_path / "issued", who="carol")
    assert sha256_file(row["issued_path"]) == row["issued_sha256"] == Registry(url).get(1).issued_sha256
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GanprintError, match="--outdir .* is a file, not a folder"):
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


def test_read_only_registry_is_readable_and_untouched(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "r.sqlite"
    Registry(path).issue(bit_length=16, who="alice")
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        r = CliRunner().invoke(main, ["registry", "list", str(path)])
        assert r.exit_code == 0 and "alice" in r.output, r.output
        assert Registry(path, create=False).packed()[0].tolist() == [1]
        assert sorted(os.listdir(folder)) == ["r.sqlite"]
    finally:
        folder.chmod(0o755)
    # A legacy WAL-mode file is read without creating -wal/-shm beside it.
    with sqlite3.connect(path) as con:
        path.chmod(0o644)
        con.execute("PRAGMA journal_mode=WAL")
    Registry(path, create=False).list()
    assert sorted(os.listdir(folder)) == ["r.sqlite"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_migrate_from_schema_1(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:  # what ganprint 0.1 wrote
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        con.execute("CREATE TABLE fingerprints (fp_id INTEGER PRIMARY KEY AUTOINCREMENT, bits_hex TEXT NOT NULL "
                    "UNIQUE, packed BLOB NOT NULL, bit_length INTEGER NOT NULL, who TEXT NOT NULL, notes TEXT NOT "
                    "NULL, created TEXT NOT NULL, model_sha256 TEXT NOT NULL, min_distance INTEGER, issued_path "
                    "TEXT, issued_sha256 TEXT)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('bit_length', '8')")
        con.execute("INSERT INTO fingerprints (bits_hex, packed, bit_length, who, notes, created, model_sha256) "
                    "VALUES ('0xff', x'ff', 8, 'old', '', '2026-01-01T00:00:00+00:00', '')")
    assert Registry(path, create=False).datasets() == []  # read as it is
    r = CliRunner().invoke(main, ["registry", "migrate", str(path)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["schema_before"] == 1 and json.loads(r.output)["schema_after"] == SCHEMA_VERSION
    reg = Registry(path, create=False)
    assert reg.schema_version() == SCHEMA_VERSION and [x.who for x in reg.list()] == ["old"]
    assert migrate(path)["schema_before"] == SCHEMA_VERSION
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(GanprintError, match="schema 99"):
        Registry(path, create=False)


def test_datasets_and_tokens(url, tmp_path, tiny_stega_model):
    bits = "0x5a"  # the tiny stega model reads 8 bits
    row = register_dataset(url, "faces-v1", bits, tiny_stega_model)
    assert row["bits_hex"] == "0x5a" and row["bit_length"] == 8
    assert register_dataset(url, "faces-v1", bits, tiny_stega_model)["ds_id"] == row["ds_id"]  # idempotent
    with pytest.raises(GanprintError, match="already has a data set named"):
        register_dataset(url, "faces-v1", "0x00", tiny_stega_model)
    with pytest.raises(GanprintError, match="does not exist"):
        register_dataset(url, "x", bits, tmp_path / "missing.safetensors")
    with pytest.raises(GanprintError, match="more than the 8 bits"):
        register_dataset(url, "x", "0x" + "ab" * 2, tiny_stega_model)
    with pytest.raises(GanprintError, match="not valid hex"):  # one check, in parse_bits: no bare ValueError
        register_dataset(url, "x", "0xzz", tiny_stega_model)
    with pytest.raises(GanprintError, match="'scalable-G' model"):
        register_dataset(url, "x", bits, _tiny_generator(tmp_path))
    r = CliRunner().invoke(main, ["registry", "add-dataset", url, "--name", "cli-set", "--model",
                                  str(tiny_stega_model), "--fingerprint", "1" * 8])
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[-1])["bits_hex"] == "0xff", r.output
    reg = Registry(url, create=False)
    assert [d.name for d in reg.datasets()] == ["faces-v1", "cli-set"] and reg.revision()[2:] == (2, 2)
    token = reg.create_token("issuer-a")
    assert reg.token_owner(token) == "issuer-a" and reg.token_owner(token + "x") is None
    assert token not in json.dumps(reg.export())


def test_export_import_between_backends(tmp_path, postgres_url, tiny_stega_model):
    src = tmp_path / "a.sqlite"
    reg = Registry(src)
    for i in range(5):
        reg.issue(bit_length=32, who=f"u{i}")
    register_dataset(src, "d", "0x11", tiny_stega_model)
    token = reg.create_token("t")
    cli = CliRunner()
    dump = tmp_path / "dump.json"
    assert cli.invoke(main, ["registry", "export", str(src), str(dump)]).exit_code == 0
    r = cli.invoke(main, ["registry", "import", str(dump), postgres_url])
    assert r.exit_code == 0, r.output
    pg = Registry(postgres_url, create=False)
    assert [x.to_dict() for x in pg.list()] == [x.to_dict() for x in reg.list()]
    assert pg.datasets() == reg.datasets() and pg.token_owner(token) == "t"
    assert pg.issue(bit_length=32, who="next").fp_id == 6  # the id sequence continues after the imported rows
    back = tmp_path / "b.sqlite"
    assert cli.invoke(main, ["registry", "export", postgres_url, str(tmp_path / "d2.json")]).exit_code == 0
    assert cli.invoke(main, ["registry", "import", str(tmp_path / "d2.json"), str(back)]).exit_code == 0
    assert [x.who for x in Registry(back).list()] == [f"u{i}" for i in range(5)] + ["next"]
    r = cli.invoke(main, ["registry", "import", str(dump), str(back)])
    assert r.exit_code == 1 and "import only into a new registry" in r.output


def test_registry_list_cli(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    reg.issue("0x" + "ab" * 4, who="bob", notes="hello")
    r = CliRunner().invoke(main, ["registry", "list", str(tmp_path / "r.sqlite")])
    assert r.exit_code == 0 and "0xabababab" in r.output and "bob" in r.output and "1 fingerprint" in r.output
    r = CliRunner().invoke(main, ["registry", "list", "--json", str(tmp_path / "r.sqlite")])
    assert '"notes": "hello"' in r.output
    r = CliRunner().invoke(main, ["registry", "list", str(tmp_path / "missing.sqlite")])
    assert r.exit_code == 1 and "does not exist" in r.output


# --- SQLite's locks belong to the process: nothing may open the database file but SQLite -------------------------

_TRY_LOCK = ("import sqlite3, sys\n"
             "con = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
             "con.execute('BEGIN IMMEDIATE')\n")


def _other_process_gets_the_write_lock(path) -> bool:
    r = subprocess.run([sys.executable, "-c", _TRY_LOCK, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 or "database is locked" in r.stderr, r.stderr
    return r.returncode == 0


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_read_in_another_thread_keeps_the_write_lock(tmp_path, journal):
    """A thread holds BEGIN IMMEDIATE; reads of the registry in another thread of the same process must leave that
    lock in place, so that a second process still cannot write (closing any descriptor of the file would drop it)."""
    path = tmp_path / "r.sqlite"
    reg = Registry(path)
    reg.issue(bit_length=16, who="a")
    reg.create_token("t")
    if journal == "wal":  # a registry an older ganprint left in WAL mode, in use by another connection
        sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").fetchone()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    readers = {"revision": reg.revision, "Registry(path).revision": lambda: Registry(path).revision(),
               "list": reg.list, "packed": reg.packed, "export": reg.export,
               "token_owner": lambda: reg.token_owner("x"), "identity": lambda: reg.identity(),
               "read-only Registry": lambda: Registry(path, create=False).datasets()}
    try:
        assert not _other_process_gets_the_write_lock(path)
        for name, read in readers.items():
            failure: list[BaseException] = []
            t = threading.Thread(target=lambda: _run_catching(read, failure))
            t.start()
            t.join(60)
            assert not failure, failure
            assert not _other_process_gets_the_write_lock(path), f"{name}() in another thread dropped the lock"
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _run_catching(fn, failure: list) -> None:
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - reported by the test
        failure.append(e)


def test_a_killed_writer_hot_journal_is_rolled_back_for_readers(tmp_path):
    """A writer killed after its transaction spilled pages to the file leaves a hot journal; read-only use rolls it
    back (through a writable connection, as any SQLite reader would) instead of failing."""
    path = tmp_path / "r.sqlite"
    Registry(path).issue(bit_length=16, who="first")
    code = ("import sqlite3, sys, time\n"
            "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "con.execute('PRAGMA cache_size=1')\n"  # spill at once: the file itself is changed before COMMIT
            "con.execute('BEGIN IMMEDIATE')\n"
            "con.executemany('INSERT INTO tokens (name, token_hash, created) VALUES (?, ?, ?)',"
            " [('x' * 500, str(i), '') for i in range(500)])\n"
            "print('written', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.kill()
    proc.wait(10)
    assert (tmp_path / "r.sqlite-journal").exists()
    reg = Registry(path, create=False)
    assert [r.who for r in reg.list()] == ["first"] and reg.token_owner("0") is None
    assert sorted(os.listdir(tmp_path)) == ["r.sqlite"]


# --- network file systems: refused for SQLite ----------------------------------------------------------------

_MOUNTS = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw
60 22 0:40 / /srv/nfs rw,relatime shared:30 - nfs4 filer:/export rw,vers=4.2
61 60 0:41 / /srv/nfs/local\\040disk rw,relatime shared:31 - xfs /dev/sdb1 rw
62 22 0:42 / /home/me/remote rw,nosuid shared:32 - fuse.sshfs me@host:/data rw
63 22 0:43 / /mnt/share rw shared:33 - cifs //nas/share rw
64 22 0:44 / /mnt/share rw shared:34 - tmpfs tmpfs rw
65 22 0:45 / /mnt/c rw shared:35 - 9p drvfs rw
"""


@pytest.mark.parametrize("path,fstype", [
    ("/srv/nfs/reg.sqlite", "nfs4"), ("/srv/nfs/sub/deeper/reg.sqlite", "nfs4"),
    ("/srv/nfs/local disk/reg.sqlite", "xfs"),  # a local disk mounted below a network one
    ("/home/me/remote/r.sqlite", "fuse.sshfs"), ("/mnt/share/r.sqlite", "tmpfs"),  # the later mount is on top
    ("/mnt/c/r.sqlite", "9p"), ("/srv/nfsx/r.sqlite", "ext4"), ("/r.sqlite", "ext4"),
])
def test_filesystem_type_from_mountinfo(path, fstype):
    assert filesystem_type(path, _MOUNTS) == fstype


def test_sqlite_registry_on_a_network_file_system_is_refused(tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    table = tmp_path / "mountinfo"
    table.write_text(_MOUNTS + f"70 22 0:50 / {share} rw shared:40 - nfs filer:/x rw\n")
    assert network_filesystem(share / "r.sqlite", table.read_text()) == "nfs"
    assert network_filesystem(tmp_path / "r.sqlite", table.read_text()) is None
    monkeypatch.setattr(mounts, "MOUNTINFO", str(table))
    with pytest.raises(GanprintError, match=r"registry .*share/r.sqlite is on a nfs file system.*PostgreSQL"):
        Registry(share / "r.sqlite")
    r = CliRunner().invoke(main, ["issue", "--model", str(_tiny_generator(tmp_path)), "--registry",
                                  str(share / "r.sqlite"), "--outdir", str(tmp_path / "issued")])
    assert r.exit_code == 1 and "nfs file system" in r.output and "PostgreSQL" in r.output, r.output
    assert not (share / "r.sqlite").exists()
    Registry(tmp_path / "local.sqlite").issue(bit_length=8)  # a local disk is fine


# --- issued files: unique names, never replaced, a row iff its file ------------------------------------------------


def test_two_registries_one_outdir_keep_two_files(tmp_path):
    g = _tiny_generator(tmp_path)
    rows = []
    for reg, who in (("a.sqlite", "alice"), ("b.sqlite", "bob")):
        r = CliRunner().invoke(main, ["issue", "--model", str(g), "--registry", str(tmp_path / reg), "--outdir",
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
import ganprint.scalable.issue as issue
where = sys.argv[4]
if where == "after-commit":  # the row committed, the pending file is not renamed yet
    issue.place_issued = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
else:  # the pending file is written, COMMIT not sent
    write = issue.write_new_file
    def write_and_die(path, data):
        write(path, data)
        os.kill(os.getpid(), signal.SIGKILL)
    issue.write_new_file = write_and_die
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
    g, out = _tiny_generator(tmp_path), tmp_path / "issued"
    issue_model(g, url, out, who="first")
    rid = Registry(url).identity()
    _issue_killed(g, url, out, "after-commit")  # row #2 committed, its model only under the pending name
    assert Registry(url).get(2).who == "after-commit" and os.listdir(out).count(pending_name(rid, 2)) == 1
    report = repair_issued(Registry(url), out)
    assert report["completed"] == [issued_name(rid, 2)] and not report["removed"] and not report["missing"]
    _assert_row_iff_file(url, out)
    _issue_killed(g, url, out, "before-commit")  # a pending file whose row never committed
    assert len(Registry(url).list()) == 2 and len(os.listdir(out)) == 3
    assert issue_model(g, url, out, who="next")["who"] == "next"  # `ganprint issue` settles --outdir first
    assert [r.who for r in _assert_row_iff_file(url, out)] == ["first", "after-commit", "next"]
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
    return direct, proxy, proxy.url(name), _tiny_generator(tmp_path), tmp_path / "issued"


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


# --- registry import: the whole dump is checked before anything is written ------------------------------------


def _set(table: str, i: int, field: str, value):
    return lambda d: d[table][i].__setitem__(field, value)


_DUMP_CASES = [
    ("missing-field", lambda d: d["fingerprints"][1].pop("who"), "fingerprints[1] (fp_id 2) field 'who' is missing"),
    ("unknown-field", _set("tokens", 0, "colour", "red"), "tokens[0] (token_id 1) field 'colour' is not one"),
    ("wrong-type", _set("fingerprints", 0, "bit_length", "32"), "field 'bit_length' is str '32', not an integer"),
    ("bool-id", _set("fingerprints", 0, "fp_id", True), "fingerprints[0] field 'fp_id' is bool True"),
    ("id-too-large", _set("fingerprints", 2, "fp_id", 2**63), "field 'fp_id' is 9223372036854775808, outside"),
    ("row-bits-vs-header", lambda d: d["fingerprints"][2].update(bit_length=16, bits_hex="0x1234"),
     "fingerprints[2] (fp_id 3) field 'bit_length' is 16 but the export's bit_length is 32"),
    ("hex-too-short", _set("fingerprints", 1, "bits_hex", "0xabc"), "not 0x and 8 lower-case hex digits for 32 bits"),
    ("hex-upper-case", lambda d: d["fingerprints"][1].update(bits_hex=d["fingerprints"][1]["bits_hex"].upper()),
     "field 'bits_hex'"),
    ("duplicate-id", lambda d: d["fingerprints"][1].update(fp_id=1), "field 'fp_id' repeats fingerprints[0]'s"),
    ("duplicate-fingerprint", lambda d: d["fingerprints"][2].update(bits_hex=d["fingerprints"][0]["bits_hex"]),
     "field 'bits_hex' repeats fingerprints[0]'s"),
    ("nul", _set("fingerprints", 0, "who", "a\x00b"), "field 'who' holds a NUL"),
    ("lone-surrogate", _set("fingerprints", 0, "notes", "\ud800"), "field 'notes' holds a lone surrogate"),
    ("bad-sha", _set("tokens", 0, "token_hash", "xyz"), "field 'token_hash' is str 'xyz', not 64 lower-case hex"),
    ("bad-date", _set("datasets", 0, "created", "yesterday"), "field 'created' is str 'yesterday', not an ISO"),
    ("dataset-bits", _set("datasets", 0, "bits_hex", "0x1ff"), "datasets[0] (ds_id 1) field 'bits_hex'"),
    ("min-distance", _set("fingerprints", 1, "min_distance", 33), "more than the 32 bits"),
    ("no-tokens", lambda d: d.pop("tokens"), "field 'tokens' is missing"),
    ("rows-not-a-list", lambda d: d.__setitem__("datasets", {}), "field 'datasets' is dict {}, not a list"),
    ("row-not-an-object", lambda d: d["fingerprints"].append(7), "fingerprints[3] is int 7, not an object"),
    ("schema-too-new", lambda d: d.__setitem__("schema_version", 99), "'schema_version' is 99, outside 1 .. "),
    ("not-a-dump", lambda d: d.__setitem__("format", "other"), "is not a ganprint registry export"),
]


@pytest.fixture(scope="module")
def good_dump(tmp_path_factory, tiny_stega_model) -> dict:
    root = tmp_path_factory.mktemp("dump")
    reg = Registry(root / "src.sqlite")
    for i in range(3):
        reg.issue(bit_length=32, who=f"u{i}", model_sha256="ab" * 32)
    register_dataset(root / "src.sqlite", "d", "0x11", tiny_stega_model)
    reg.create_token("t")
    return reg.export()


@pytest.mark.parametrize("name,damage,words", _DUMP_CASES, ids=[c[0] for c in _DUMP_CASES])
def test_registry_import_refuses_a_damaged_dump_before_writing(tmp_path, good_dump, name, damage, words):
    data = json.loads(json.dumps(good_dump))
    damage(data)
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(data))
    target = tmp_path / "new.sqlite"
    r = CliRunner().invoke(main, ["registry", "import", str(dump), str(target)])
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(dump) in lines[0] and words in lines[0], r.output
    assert not target.exists()  # nothing written: not even an empty registry


def test_registry_import_of_the_good_dump_still_works(tmp_path, good_dump):
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(good_dump))
    r = CliRunner().invoke(main, ["registry", "import", str(dump), str(tmp_path / "new.sqlite")])
    assert r.exit_code == 0, r.output
    assert Registry(tmp_path / "new.sqlite").export() == good_dump
