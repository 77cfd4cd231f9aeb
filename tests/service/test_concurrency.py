"""Issuing at once on one SQLite registry: `ganprint serve --workers 2` under 8 concurrent clients while
`ganprint issue` processes issue too, in several rounds.

After each round: every answer carries a distinct id, every row has its file and every file its row, each file's
sha256 is its row's, no pending file is left, and SQLite's `PRAGMA integrity_check` is "ok". Before the read path
stopped opening the database file itself, this lost rows, handed one id to two clients and corrupted the index.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from ganprint.core.files import sha256_file
from ganprint.registry.store import Registry
from benchmarks.perf.service_kit import SRC, Server

CLIENTS, PER_CLIENT, CLI_PROCESSES, PER_PROCESS, ROUNDS = 8, 5, 2, 3, 3

# `ganprint issue` processes, started once and warmed up (imports done) so that their issues overlap the clients':
# each prints "ready", then per round waits for a line on stdin, runs the command PER_PROCESS times, prints "done".
_CLI = ("import sys\n"
        "from ganprint.cli import main\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        f"    for _ in range({PER_PROCESS}):\n"
        "        main(sys.argv[1:], prog_name='ganprint', standalone_mode=False)\n"
        "    print('done', flush=True)\n")


def _cli_round(p: subprocess.Popen) -> list[int]:
    """The ids one warmed-up `ganprint issue` process printed in this round."""
    ids = []
    for line in p.stdout:
        if line.strip() == "done":
            return ids
        if line.startswith("{"):
            ids.append(json.loads(line)["fp_id"])
    raise AssertionError(f"a `ganprint issue` process ended: {p.stderr.read()[-2000:]}")


def _client(url: str, token: str, who: str, ids: list, errors: list) -> None:
    for _ in range(PER_CLIENT):
        try:  # a new connection per request, so that both workers serve each client
            r = httpx.post(f"{url}/v1/issue", json={"who": who}, headers={"Authorization": f"Bearer {token}"},
                           timeout=120)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:300]}")
            else:
                ids.append(r.json()["id"])
        except httpx.HTTPError as e:
            errors.append(repr(e))


def _check(registry: Path, out: Path, answered: list[int]) -> None:
    assert len(answered) == len(set(answered)), "two issuers were given the same id"
    with sqlite3.connect(f"file:{registry}?mode=ro", uri=True) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    rows = Registry(registry, create=False).list()
    assert sorted(r.fp_id for r in rows) == sorted(answered), "rows and answers differ"
    assert sorted(os.listdir(out)) == sorted(Path(r.issued_path).name for r in rows), "a file without its row"
    for r in rows:
        assert sha256_file(r.issued_path) == r.issued_sha256, f"the file of #{r.fp_id} is not its row's"


def test_two_workers_and_cli_issuers_on_one_sqlite_registry(models, tmp_path):
    registry, out = tmp_path / "reg.sqlite", tmp_path / "issued"
    token = Registry(registry).create_token("load")
    srv = Server(["--registry", str(registry), "--scalable-decoder", str(models["decoder"]), "--base-model",
                  str(models["G"]), "--models-dir", str(out), "--workers", "2", "--sync-seconds", "0.1"],
                 tmp_path / "server.log")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    answered: list[int] = []
    cli = [subprocess.Popen([sys.executable, "-c", _CLI, "issue", "--model", str(models["G"]), "--registry",
                             str(registry), "--models-dir", str(out), "--who", f"cli{i}"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
           for i in range(CLI_PROCESSES)]
    try:
        for p in cli:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()[-2000:]
        for rnd in range(ROUNDS):
            ids: list[int] = []
            errors: list[str] = []
            threads = [threading.Thread(target=_client, args=(srv.url, token, f"client{rnd}.{i}", ids, errors))
                       for i in range(CLIENTS)]
            for t in threads:
                t.start()
            for p in cli:  # go, while the clients issue
                p.stdin.write("go\n")
                p.stdin.flush()
            for t in threads:
                t.join()
            for p in cli:
                ids += _cli_round(p)
            assert not errors, errors[:5]
            assert len(ids) == CLIENTS * PER_CLIENT + CLI_PROCESSES * PER_PROCESS
            answered += ids
            _check(registry, out, answered)
    finally:
        for p in cli:
            p.stdin.close()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        srv.stop()
