"""Registry export and import: between back-ends, the whole dump checked before anything is written, dumps of an
older schema (the fingerprint length named `bit_length`) read and imported under the current names."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ganprint.artificial.register import register_dataset
from ganprint.cli import main
from ganprint.registry.store import Registry


def test_export_import_between_backends(tmp_path, postgres_url, tiny_stega_model):
    src = tmp_path / "a.sqlite"
    reg = Registry(src)
    for i in range(5):
        reg.issue(fingerprint_length=32, who=f"u{i}")
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
    assert pg.issue(fingerprint_length=32, who="next").fp_id == 6  # the id sequence continues after the imported rows
    back = tmp_path / "b.sqlite"
    assert cli.invoke(main, ["registry", "export", postgres_url, str(tmp_path / "d2.json")]).exit_code == 0
    assert cli.invoke(main, ["registry", "import", str(tmp_path / "d2.json"), str(back)]).exit_code == 0
    assert [x.who for x in Registry(back).list()] == [f"u{i}" for i in range(5)] + ["next"]
    r = cli.invoke(main, ["registry", "import", str(dump), str(back)])
    assert r.exit_code == 1 and "import only into a new registry" in r.output


# --- registry import: the whole dump is checked before anything is written ------------------------------------


def _set(table: str, i: int, field: str, value):
    return lambda d: d[table][i].__setitem__(field, value)


_DUMP_CASES = [
    ("missing-field", lambda d: d["fingerprints"][1].pop("who"), "fingerprints[1] (fp_id 2) field 'who' is missing"),
    ("unknown-field", _set("tokens", 0, "colour", "red"), "tokens[0] (token_id 1) field 'colour' is not one"),
    ("wrong-type", _set("fingerprints", 0, "fingerprint_length", "32"),
     "field 'fingerprint_length' is str '32', not an integer"),
    ("bool-id", _set("fingerprints", 0, "fp_id", True), "fingerprints[0] field 'fp_id' is bool True"),
    ("id-too-large", _set("fingerprints", 2, "fp_id", 2**63), "field 'fp_id' is 9223372036854775808, outside"),
    ("row-bits-vs-header", lambda d: d["fingerprints"][2].update(fingerprint_length=16, bits_hex="0x1234"),
     "fingerprints[2] (fp_id 3) field 'fingerprint_length' is 16 but the export's fingerprint_length is 32"),
    ("old-name-in-a-new-dump", lambda d: d.__setitem__("bit_length", d.pop("fingerprint_length")),
     "field 'bit_length' is not one that"),
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
        reg.issue(fingerprint_length=32, who=f"u{i}", model_sha256="ab" * 32)
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


def _as_schema_3(dump: dict) -> dict:
    """`dump` as ganprint wrote it at schema 3: the fingerprint length named `bit_length`, header and rows."""
    def old(row: dict) -> dict:
        return {("bit_length" if k == "fingerprint_length" else k): v for k, v in row.items()}

    return {**old(dump), "schema_version": 3, "fingerprints": [old(r) for r in dump["fingerprints"]],
            "datasets": [old(r) for r in dump["datasets"]]}


def test_a_schema_3_dump_is_read_under_its_old_names_and_exported_under_the_new(tmp_path, good_dump):
    old = _as_schema_3(good_dump)
    assert "bit_length" in old and "bit_length" in old["fingerprints"][0] and "fingerprint_length" not in old
    dump = tmp_path / "old.json"
    dump.write_text(json.dumps(old))
    r = CliRunner().invoke(main, ["registry", "import", str(dump), str(tmp_path / "new.sqlite")])
    assert r.exit_code == 0, r.output
    assert Registry(tmp_path / "new.sqlite").export() == good_dump  # every row, under the current names
    old["fingerprints"][1]["bit_length"] = "32"  # and its fields are checked under the names it uses
    dump.write_text(json.dumps(old))
    r = CliRunner().invoke(main, ["registry", "import", str(dump), str(tmp_path / "other.sqlite")])
    assert r.exit_code == 1 and "fingerprints[1] (fp_id 2) field 'bit_length' is str '32'" in r.output, r.output
    assert not (tmp_path / "other.sqlite").exists()
