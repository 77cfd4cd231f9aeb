"""The two back-ends: registry URLs, read-only use, SQLite's locks (nothing but SQLite opens the file), a killed
writer's hot journal, and network file systems refused for SQLite."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core import mounts
from ganprint.core.errors import GanprintError
from ganprint.core.mounts import filesystem_type, network_filesystem
from ganprint.registry.store import Registry
from tests.registry.kit import tiny_generator


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
    Registry(f"sqlite:///{tmp_path}/u.sqlite").issue(fingerprint_length=8, who="u")
    assert [r.who for r in Registry(tmp_path / "u.sqlite").list()] == ["u"]


def test_read_only_registry_is_readable_and_untouched(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "r.sqlite"
    Registry(path).issue(fingerprint_length=16, who="alice")
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
    reg.issue(fingerprint_length=16, who="a")
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
    Registry(path).issue(fingerprint_length=16, who="first")
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
    r = CliRunner().invoke(main, ["issue", "--model", str(tiny_generator(tmp_path)), "--registry",
                                  str(share / "r.sqlite"), "--models-dir", str(tmp_path / "issued")])
    assert r.exit_code == 1 and "nfs file system" in r.output and "PostgreSQL" in r.output, r.output
    assert not (share / "r.sqlite").exists()
    Registry(tmp_path / "local.sqlite").issue(fingerprint_length=8)  # a local disk is fine
