"""Schema migrations: a registry of each older schema, created at test time with the statements of its day, is
read as it is and migrated in place keeping every row (schema 3 on both back-ends)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.errors import GanprintError
from ganprint.registry.schema import MIGRATIONS, SCHEMA_VERSION
from ganprint.registry.store import Registry, migrate


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
    # stdout holds the JSON; the log line "schema 1 -> N" goes to stderr, which `output` mixes in
    assert json.loads(r.stdout)["schema_before"] == 1 and json.loads(r.stdout)["schema_after"] == SCHEMA_VERSION
    reg = Registry(path, create=False)
    assert reg.schema_version() == SCHEMA_VERSION and [x.who for x in reg.list()] == ["old"]
    assert migrate(path)["schema_before"] == SCHEMA_VERSION
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(GanprintError, match="schema 99"):
        Registry(path, create=False)


def _run(url: str, statements: list[tuple[str, tuple]]) -> None:
    """Execute `statements` ('?' placeholders) on the database at `url`, outside ganprint."""
    if "://" not in url:
        with sqlite3.connect(url) as con:
            for sql, params in statements:
                con.execute(sql, params)
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        for sql, params in statements:
            con.execute(sql.replace("?", "%s"), params)


def _schema_3(url: str) -> None:
    """A registry exactly as ganprint wrote schema 3 (the fingerprint length named `bit_length`), with two issued
    fingerprints, a data set and a token."""
    backend = 1 if "://" in url else 0
    statements = [("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", ())]
    statements += [(s, ()) for m in MIGRATIONS[:3] for s in m[backend]]
    statements += [
        ("INSERT INTO meta VALUES ('schema_version', '3'), ('bit_length', '8'), ('registry_id', '0123456789abcdef')",
         ()),
        *[("INSERT INTO fingerprints (bits_hex, packed, bit_length, who, notes, created, model_sha256, min_distance,"
           " issued_path, issued_sha256) VALUES (?, ?, 8, ?, '', '2026-01-01T00:00:00+00:00', '', ?, ?, ?)",
           (hx, bytes.fromhex(hx[2:]), who, dmin, path, sha))
          for hx, who, dmin, path, sha in (("0xff", "alice", None, None, None),
                                           ("0x0f", "bob", 4, "/models/issued-2.safetensors", "ab" * 32))],
        ("INSERT INTO datasets (name, bits_hex, bit_length, decoder_sha256, decoder_path, created, notes) VALUES"
         " ('faces', '0x5a', 8, ?, '/models/stega.safetensors', '2026-01-02T00:00:00+00:00', 'n')", ("cd" * 32,)),
        ("INSERT INTO tokens (name, token_hash, created, scopes, expires) VALUES ('ops', ?, "
         "'2026-01-03T00:00:00+00:00', 'issue metrics', '2030-01-01T00:00:00+00:00')", ("ef" * 32,)),
    ]
    _run(url, statements)


def _rows(reg: Registry) -> tuple:
    return ([r.to_dict() for r in reg.list()], [d.to_dict() for d in reg.datasets()],
            [t.to_dict() for t in reg.tokens()], reg.fingerprint_length(), reg.identity(create=False))


def test_a_schema_3_registry_is_read_as_it_is_and_migrated_keeping_every_row(url):
    _schema_3(url)
    old = Registry(url, create=False)  # read without migrating: the old names are read
    assert old.schema_version() == 3
    before = _rows(old)
    assert [r["who"] for r in before[0]] == ["alice", "bob"] and before[0][1]["fingerprint_length"] == 8
    assert before[1][0]["name"] == "faces" and before[1][0]["fingerprint_length"] == 8
    assert before[2][0]["scopes"] == ["issue", "metrics"] and before[3] == 8
    assert old.schema_version() == 3  # reading changed nothing
    r = CliRunner().invoke(main, ["registry", "migrate", url])
    assert r.exit_code == 0 and json.loads(r.output)["schema_before"] == 3, r.output
    reg = Registry(url)
    assert reg.schema_version() == SCHEMA_VERSION == 5 and _rows(reg) == before
    assert reg.export()["fingerprint_length"] == 8 and "bit_length" not in json.dumps(reg.export())
    assert reg.issue(fingerprint_length=8, who="carol", min_distance=1).fp_id == 3
    with pytest.raises(GanprintError, match="8-bit"):
        reg.issue(fingerprint_length=16)
    _run(url, [("UPDATE meta SET value='x' WHERE key='fingerprint_length'", ())])  # the renamed key is the one read
    with pytest.raises(GanprintError, match="meta.fingerprint_length is 'x'"):
        reg.list()
