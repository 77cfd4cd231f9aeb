"""Issuing model fingerprints on SQLite and on a real PostgreSQL: uniqueness, minimum distance, concurrent
issuers, a killed issuer, all-or-nothing issues."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import parse_bits
from ganprint.registry.errors import RegistryConflict, RegistryExhausted
from ganprint.registry.fingerprints import default_min_distance
from ganprint.registry.schema import SCHEMA_VERSION
from ganprint.registry.store import Registry


def test_issue_random_and_min_distance(url):
    reg = Registry(url)
    assert len(reg) == 0 and reg.fingerprint_length() is None and reg.schema_version() == SCHEMA_VERSION
    rows = [reg.issue(fingerprint_length=32, who="alice", notes=f"n{i}", min_distance=8) for i in range(20)]
    assert [r.fp_id for r in rows] == list(range(1, 21))
    assert rows[0].min_distance is None
    assert all(r.min_distance >= 8 for r in rows[1:])
    bits = torch.stack([r.bits for r in rows])  # [20, 32]
    d = (bits[:, None] != bits[None]).sum(-1) + torch.eye(20, dtype=torch.long) * 999
    assert int(d.min()) >= 8
    # The recorded min distance is the distance to the nearest *earlier* fingerprint.
    for i in range(1, 20):
        assert rows[i].min_distance == int(d[i, :i].min())
    assert reg.fingerprint_length() == 32 and len(reg) == 20
    listed = Registry(url, create=False).list()
    assert [r.bits_hex for r in listed] == [r.bits_hex for r in rows] and listed[3].notes == "n3"
    ids, packed = reg.packed()
    assert ids.tolist() == list(range(1, 21)) and packed.shape == (20, 4)
    assert reg.revision() == (20, 20, 0, 0)


def test_given_fingerprint_refused_when_close(url):
    reg = Registry(url)
    a = "0" * 16
    reg.issue(a, who="a")
    with pytest.raises(RegistryConflict, match="already issued"):
        reg.issue(a)
    with pytest.raises(RegistryConflict, match="Hamming distance 1"):
        reg.issue("1" + "0" * 15)  # default min distance for 16 bits is 4
    rec = reg.issue("1111" + "0" * 12)
    assert rec.min_distance == 4 == default_min_distance(16)
    with pytest.raises(GanprintError, match="16-bit"):
        reg.issue("0" * 8 + "1" * 24)
    with pytest.raises(GanprintError, match="model expects 16"):
        reg.issue(torch.zeros(8), fingerprint_length=16)
    assert len(reg) == 2  # the refused ones left nothing behind
    assert reg.get(2).bits.tolist() == parse_bits("1111" + "0" * 12).tolist()
    with pytest.raises(GanprintError, match="no fingerprint with id 9"):
        reg.get(9)


def test_exhausted_space_is_a_clear_error(url):
    reg = Registry(url)
    for _ in range(2):
        reg.issue(fingerprint_length=2, min_distance=2)  # only two 2-bit strings are 2 apart from each other
    with pytest.raises(RegistryExhausted, match="lower `min_distance`"):
        reg.issue(fingerprint_length=2, min_distance=2, max_tries=50)


def _issue_worker(url: str, n: int, q) -> None:
    reg = Registry(url)
    q.put([reg.issue(fingerprint_length=64, who=f"proc{os.getpid()}", min_distance=16).bits_hex for _ in range(n)])


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

    Registry(url).issue(fingerprint_length=16, who="victim", finalize=finalize)


def test_killed_issuer_leaves_no_record_and_no_lock(url, tmp_path):
    reg = Registry(url)
    reg.issue(fingerprint_length=16, who="first")
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
    assert reg.issue(fingerprint_length=16, who="after").who == "after"  # the lock went with the process
    assert [r.who for r in reg.list()] == ["first", "after"]


def test_failed_finalize_rolls_back(url):
    reg = Registry(url)

    def boom(rec):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        reg.issue(fingerprint_length=16, finalize=boom)
    assert len(reg) == 0
    rec = reg.issue(fingerprint_length=16, finalize=lambda r: ("/m.safetensors", "ab" * 32))
    assert Registry(url).get(rec.fp_id).issued_path == "/m.safetensors"
