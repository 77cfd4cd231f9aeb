"""Fingerprint registry: uniqueness, minimum distance, given fingerprints, concurrent issuing, CLI listing."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import parse_bits
from ganprint.scalable.registry import Registry, default_min_distance


def test_issue_random_and_min_distance(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    assert len(reg) == 0 and reg.bit_length() is None
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
    listed = reg.list()
    assert [r.bits_hex for r in listed] == [r.bits_hex for r in rows] and listed[3].notes == "n3"
    ids, packed = reg.packed()
    assert ids.tolist() == list(range(1, 21)) and packed.shape == (20, 4)


def test_given_fingerprint_refused_when_close(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
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


def test_exhausted_space_is_a_clear_error(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    for _ in range(2):
        reg.issue(bit_length=2, min_distance=2)  # only two 2-bit strings are 2 apart from each other
    with pytest.raises(GanprintError, match="lower --min-distance"):
        reg.issue(bit_length=2, min_distance=2, max_tries=50)


def test_bad_registry_files(tmp_path):
    with pytest.raises(GanprintError, match="does not exist"):
        Registry(tmp_path / "none.sqlite", create=False)
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database at all" * 100)
    with pytest.raises(GanprintError, match="not a usable"):
        Registry(bad)


def _worker(path: str, n: int, q) -> None:
    reg = Registry(path)
    q.put([reg.issue(bit_length=64, who="proc", min_distance=16).bits_hex for _ in range(n)])


def test_concurrent_processes_no_loss_no_duplicates(tmp_path):
    path = str(tmp_path / "r.sqlite")
    Registry(path)
    ctx = mp.get_context("fork")  # the workers only use sqlite; fork avoids re-importing torch
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(path, 8, q)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [h for _ in procs for h in q.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    rows = Registry(path).list()
    assert len(rows) == 32 == len(got)
    assert sorted(r.bits_hex for r in rows) == sorted(got)
    assert len({r.bits_hex for r in rows}) == 32
    assert [r.fp_id for r in rows] == list(range(1, 33))
    bits = np.array([[c == "1" for c in format(int(r.bits_hex, 16), "064b")] for r in rows])
    d = (bits[:, None] != bits[None]).sum(-1) + np.eye(32, dtype=int) * 999
    assert d.min() >= 16
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_registry_list_cli(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    reg.issue("0x" + "ab" * 4, who="bob", notes="hello")
    r = CliRunner().invoke(main, ["registry", "list", str(tmp_path / "r.sqlite")])
    assert r.exit_code == 0 and "0xabababab" in r.output and "bob" in r.output and "1 fingerprint" in r.output
    r = CliRunner().invoke(main, ["registry", "list", "--json", str(tmp_path / "r.sqlite")])
    assert '"notes": "hello"' in r.output
    r = CliRunner().invoke(main, ["registry", "list", str(tmp_path / "missing.sqlite")])
    assert r.exit_code == 1 and "does not exist" in r.output
