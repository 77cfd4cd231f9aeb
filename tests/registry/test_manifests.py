"""Manifest stores in the registry, on both back-ends: kept byte for byte, looked up by record, exported and
imported whole, bad input refused."""

from __future__ import annotations

import base64
import json
import os

import pytest

from ganprint.registry.errors import DumpError, RegistryConflict, RegistryInputError, RegistryNotFound
from ganprint.registry.store import Registry, export_registry, import_registry

ID = "urn:c2pa:0b6f0d36-7c4e-4b0a-9a51-6d5c6f1f2a11"


def test_a_store_is_kept_whole_and_found_by_its_record(url):
    reg = Registry(url)
    a = reg.issue(fingerprint_length=16, who="alice", min_distance=1)
    b = reg.issue(fingerprint_length=16, who="bob", min_distance=1)
    ds = reg.add_dataset("faces", "0x3c", "d" * 64, "/models/stega.safetensors")
    store = os.urandom(40_000)
    row = reg.add_manifest(ID, "io.github.ganprint.scalable.1", "AAE=", store, fp_id=a.fp_id)
    assert row.fp_id == a.fp_id and row.ds_id is None
    other = ID.replace("0b6f", "1b6f")
    reg.add_manifest(other, "io.github.ganprint.artificial.1", "PA==", b"\x00store", ds_id=ds.ds_id)
    assert reg.manifest_store(ID) == store
    assert [m.manifest_id for m in reg.manifests_of(fp_id=a.fp_id)] == [ID]
    assert reg.manifests_of(fp_id=b.fp_id) == []
    assert [m.manifest_id for m in reg.manifests_of(ds_id=ds.ds_id)] == [other]
    assert len(reg.manifests()) == 2
    reg.check()  # every row still reads through the checks


@pytest.mark.parametrize("kwargs, error, words", [
    ({"manifest_id": "not a urn"}, RegistryInputError, "manifest label"),
    ({"fp_id": 999}, RegistryNotFound, "no issued model with `fp_id` 999"),
    ({"fp_id": None}, RegistryInputError, "exactly one record"),
    ({"store": b""}, RegistryInputError, "`store`"),
    ({"alg": ""}, RegistryInputError, "`alg`"),
])
def test_bad_manifests_are_refused_by_field(url, kwargs, error, words):
    reg = Registry(url)
    fp = reg.issue(fingerprint_length=8, who="alice").fp_id
    args = {"manifest_id": ID, "alg": "io.github.ganprint.scalable.1", "value": "AA==", "store": b"x", "fp_id": fp,
            **kwargs}
    with pytest.raises(error, match=words):
        reg.add_manifest(args.pop("manifest_id"), args.pop("alg"), args.pop("value"), args.pop("store"), **args)
    assert reg.manifests() == []


def test_a_taken_id_conflicts_and_an_unknown_one_is_not_found(url):
    reg = Registry(url)
    fp = reg.issue(fingerprint_length=8, who="alice").fp_id
    reg.add_manifest(ID, "io.github.ganprint.scalable.1", "AA==", b"one", fp_id=fp)
    with pytest.raises(RegistryConflict, match="already holds"):
        reg.add_manifest(ID, "io.github.ganprint.scalable.1", "AA==", b"two", fp_id=fp)
    assert reg.manifest_store(ID) == b"one"
    with pytest.raises(RegistryNotFound, match="no manifest"):
        reg.manifest_store(ID.replace("0b6f", "2b6f"))


def test_export_and_import_keep_the_stores_and_refuse_a_damaged_one(url, tmp_path):
    reg = Registry(url)
    fp = reg.issue(fingerprint_length=8, who="alice").fp_id
    store = os.urandom(5000)
    reg.add_manifest(ID, "io.github.ganprint.scalable.1", "AA==", store, fp_id=fp)
    dump = tmp_path / "dump.json"
    assert export_registry(url, dump)["manifests"] == 1
    assert import_registry(dump, tmp_path / "copy.sqlite")["manifests"] == 1
    copy = Registry(tmp_path / "copy.sqlite")
    assert copy.manifest_store(ID) == store and copy.export() == reg.export()
    data = json.loads(dump.read_text())
    for damage, words in ((lambda d: d["manifests"][0].__setitem__("store", base64.b64encode(b"other").decode()),
                           "does not match the row's sha256"),
                          (lambda d: d["manifests"][0].__setitem__("fp_id", 77), "a record not in the export"),
                          (lambda d: d["manifests"][0].__setitem__("manifest_id", "x"), "not a C2PA manifest label")):
        bad = json.loads(json.dumps(data))
        damage(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(DumpError, match=words):
            import_registry(tmp_path / "bad.json", tmp_path / "never.sqlite")
        assert not (tmp_path / "never.sqlite").exists()
