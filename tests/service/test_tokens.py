"""Scoped tokens with expiry and revocation: the registry (SQLite and a real PostgreSQL), schema 2 -> 3, the
`ganprint token` commands, and the scopes a real server enforces on every request."""

from __future__ import annotations

import datetime
import hashlib
import json
import sqlite3
import time

import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.registry.errors import RegistryInputError, RegistryNotFound
from ganprint.registry.schema import MIGRATIONS, SCHEMA_VERSION
from ganprint.registry.store import Registry
from ganprint.registry.tokens import LEGACY_SCOPES, parse_expiry


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "r.sqlite")
    return request.getfixturevalue("postgres_url")


def test_scopes_expiry_revocation_and_text_checks(url):
    reg = Registry(url)
    own = reg.create_token("alice", ["download:own"], "30d")
    ops = reg.create_token("ops", "issue,download:all")
    rec = reg.token(own)
    assert rec.name == "alice" and rec.scopes == ("download:own",) and rec.refusal() is None
    assert rec.allows("download:own") and not rec.allows("download:all") and not rec.allows("issue")
    assert reg.token(ops).allows("download:own") and not reg.token(ops).allows("metrics")
    assert Registry(url).token(reg.create_token("root", ["admin"])).allows("metrics")
    later = datetime.datetime.fromisoformat(rec.expires) + datetime.timedelta(seconds=1)
    assert "expired" in rec.refusal(later) and reg.token(own + "x") is None
    revoked = reg.revoke_token(rec.token_id)
    assert revoked.revoked and "revoked" in reg.token(own).refusal() and reg.token_owner(own) is None
    assert reg.revoke_token(rec.token_id).revoked == revoked.revoked  # the first date stays
    assert reg.token_owner(ops) == "ops"
    assert [t.name for t in reg.tokens()] == ["alice", "ops", "root"]
    assert own not in json.dumps(reg.export()) and reg.export()["tokens"][0]["scopes"] == ["download:own"]
    for bad in [dict(scopes=["everything"]), dict(scopes=[]), dict(expires="yesterday"), dict(expires="2000-01-01")]:
        with pytest.raises(RegistryInputError, match="`scopes`|`expires`"):
            reg.create_token("x", **{"scopes": ["issue"], **bad})
    with pytest.raises(RegistryNotFound):
        reg.revoke_token(999)
    for bad_id in (2**63, -(2**63) - 1, "1; DROP TABLE tokens", True):
        with pytest.raises(RegistryInputError):
            reg.revoke_token(bad_id)
        with pytest.raises(RegistryInputError):
            reg.get(bad_id)
    with pytest.raises(RegistryNotFound):
        reg.get(2**63 - 1)
    for who in ("a\x00b", "\ud800", "line\nbreak", ""):  # PostgreSQL refused NUL itself (503 in the service)
        with pytest.raises(RegistryInputError):
            reg.issue(fingerprint_length=16, who=who)
    with pytest.raises(RegistryInputError):
        reg.create_token("a\x00b", ["issue"])
    assert reg.issue(fingerprint_length=16, who="ok", notes="two\nlines").notes == "two\nlines"


def test_expiry_forms():
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    assert parse_expiry("90m", now) == "2027-01-01T01:30:00+00:00"
    assert parse_expiry("2w", now) == "2027-01-15T00:00:00+00:00"
    assert parse_expiry("2027-02-01", now) == "2027-02-01T00:00:00+00:00"
    assert parse_expiry("2027-02-01T12:00:00+02:00", now) == "2027-02-01T10:00:00+00:00"
    assert parse_expiry("never", now) is None and parse_expiry(None, now) is None
    for bad in ("0d", "1y", "99999999999999d", "soon"):
        with pytest.raises(RegistryInputError):
            parse_expiry(bad, now)


def _schema_2(url: str, backend: str) -> None:
    """A registry exactly as ganprint wrote schema 2, with one token (the statements of MIGRATIONS 0 and 1)."""
    statements = ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"]
    statements += [s for m in MIGRATIONS[:2] for s in m[0 if backend == "sqlite" else 1]]
    statements += ["INSERT INTO meta VALUES ('schema_version', '2')",
                   "INSERT INTO tokens (name, token_hash, created) VALUES ('old', '%s', '2026-01-01T00:00:00+00:00')"
                   % hashlib.sha256(b"gpt_old-token").hexdigest()]
    if backend == "sqlite":
        with sqlite3.connect(url) as con:
            for s in statements:
                con.execute(s)
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            for s in statements:
                con.execute(s)


def test_schema_2_tokens_keep_what_they_could_do(url, tmp_path):
    backend = "sqlite" if "://" not in url else "postgresql"
    _schema_2(url, backend)
    assert Registry(url, create=False).token("gpt_old-token").scopes == LEGACY_SCOPES  # read without migrating
    reg = Registry(url)  # migrates to the current schema
    assert reg.schema_version() == SCHEMA_VERSION and reg.migrated == (2, SCHEMA_VERSION)
    old = reg.token("gpt_old-token")
    assert old.scopes == ("issue", "download:all") and old.expires is None and old.revoked is None
    dump = reg.export()
    dump["tokens"] = [{k: v for k, v in t.items() if k not in ("scopes", "expires", "revoked")}
                      for t in dump["tokens"]]  # as a schema 2 export wrote them
    fresh = Registry(tmp_path / "fresh.sqlite")
    fresh.import_(dump)
    assert fresh.token("gpt_old-token").scopes == LEGACY_SCOPES


def test_token_commands(tmp_path):
    reg = str(tmp_path / "r.sqlite")
    cli = CliRunner()
    r = cli.invoke(main, ["token", "create", "alice", "--registry", reg, "--scope", "download:own",
                          "--expires", "30d"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout.splitlines()[-1])
    assert made["token"].startswith("gpt_") and made["scopes"] == ["download:own"] and made["expires"]
    r = cli.invoke(main, ["token", "create", "--name", "ops", "--registry", reg, "--scope", "issue", "--scope",
                          "download:all"])  # the older spelling
    assert r.exit_code == 0, r.output
    r = cli.invoke(main, ["token", "list", "--registry", reg])
    listed = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [t["name"] for t in listed] == ["alice", "ops"] and "token" not in listed[0]
    r = cli.invoke(main, ["token", "revoke", str(made["token_id"]), "--registry", reg])
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[-1])["revoked"]
    for args in (["create", "x", "--registry", reg], ["create", "x", "--registry", reg, "--scope", "all"],
                 ["create", "x", "--registry", reg, "--scope", "issue", "--expires", "2001-01-01"],
                 ["revoke", "77", "--registry", reg], ["revoke", str(2**64), "--registry", reg]):
        r = cli.invoke(main, ["token", *args])
        assert r.exit_code != 0 and "Traceback" not in r.output
        assert len([x for x in r.output.splitlines() if x.startswith("Error")]) == 1, r.output


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_the_server_checks_scope_holder_expiry_and_revocation_on_every_request(server, models):
    reg = Registry(models["registry"])
    issuer = reg.create_token("shop", ["issue"])
    carol = reg.create_token("carol", ["download:own"])
    reader = reg.create_token("mirror", ["download:all"])
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)).isoformat()
    short = reg.create_token("temp", ["issue", "download:all"], soon)
    with server.client() as c:
        new = c.post("/v1/issue", json={"who": "carol"}, headers=_auth(issuer)).json()
        assert new["who"] == "carol"
        r = c.post("/v1/issue", json={"who": "carol"}, headers=_auth(carol))
        assert r.status_code == 403 and "do not include issue" in r.json()["error"]
        assert c.get(f"/v1/models/{new['id']}/download", headers=_auth(issuer)).status_code == 403
        d = c.get(f"/v1/models/{new['id']}/download", headers=_auth(carol))
        assert d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == new["sha256"]
        r = c.get("/v1/models/1/download", headers=_auth(carol))  # alice's
        assert r.status_code == 403 and "only models issued to carol" in r.json()["error"]
        assert c.get("/v1/models/1/download", headers=_auth(reader)).status_code == 200
        assert c.get("/v1/models/1/download", headers=_auth(short)).status_code == 200
        time.sleep(max(0.0, (datetime.datetime.fromisoformat(soon) -
                             datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 0.5)
        r = c.get("/v1/models/1/download", headers=_auth(short))
        assert r.status_code == 403 and "expired" in r.json()["error"]
        reg.revoke_token(reg.token(reader).token_id)
        r = c.get("/v1/models/1/download", headers=_auth(reader))  # the very next request
        assert r.status_code == 403 and "revoked" in r.json()["error"]
        r = c.get("/v1/models/1/download", headers={"Authorization": "Basic abc"})
        assert r.status_code == 401 and r.json()["error"]
    log = server.log.read_text()
    assert all(t not in log for t in (issuer, carol, reader, short))
