"""Attribution: exact Hamming search (numpy and faiss), planted fingerprints, `unknown`, the decision threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import pack_bits
from ganprint.core.hamming import HammingIndex, hamming_to_all
from ganprint.core.stats import match_threshold
from ganprint.scalable.attribute import UNKNOWN, attribute_bits, summarize
from ganprint.registry.store import Registry


def test_hamming_to_all_matches_naive():
    rng = np.random.default_rng(0)
    for k in (7, 64, 100, 128):
        a = rng.integers(0, 2, (5, k))
        b = rng.integers(0, 2, (9, k))
        naive = (a[:, None] != b[None]).sum(-1)
        assert (hamming_to_all(pack_bits(a), pack_bits(b)) == naive).all()


@pytest.mark.parametrize("use_faiss", [False, True])
def test_index_nearest(use_faiss):
    rng = np.random.default_rng(1)
    db = rng.integers(0, 2, (500, 128))
    q = db[[3, 77, 499]].copy()
    q[0, :5] ^= 1
    q[1, 10:30] ^= 1
    ix = HammingIndex(pack_bits(db), use_faiss=use_faiss)
    assert ix.backend == ("faiss" if use_faiss else "numpy")
    idx, dist = ix.search(pack_bits(q))
    assert idx.tolist() == [3, 77, 499] and dist.tolist() == [5, 20, 0]


def test_planted_fingerprints(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    k = 128
    for _ in range(30):
        reg.issue(fingerprint_length=k)
    ids, packed = reg.packed()
    fps = torch.stack([r.bits for r in reg.list()])  # [30, K]
    g = torch.Generator().manual_seed(0)
    owner = torch.randint(0, 30, (200,), generator=g)
    flips = (torch.rand(200, k, generator=g) < 0.08).float()  # 8% bit errors: a realistic decoder
    decoded = (fps[owner] + flips) % 2
    rows = attribute_bits(decoded, ids, packed, k, fpr=1e-6)
    assert [r["attributed"] for r in rows] == [int(ids[o]) for o in owner]
    assert all(r["p_value_corrected"] < 1e-6 for r in rows)
    # Images from no issued model (random bits) are never attributed.
    clean = torch.randint(0, 2, (300, k), generator=g).float()
    rows_clean = attribute_bits(clean, ids, packed, k, fpr=1e-6)
    assert all(r["attributed"] == UNKNOWN for r in rows_clean)
    s = summarize(rows + rows_clean, len(ids), k, 1e-6)
    assert s["images"] == 500 and s["attributed"] == 200 and s[UNKNOWN] == 300
    assert s["min_matches"] == match_threshold(k, 1e-6, 30)


def test_threshold_boundary():
    k = 64
    fp = torch.zeros(1, k)
    ids, packed = np.array([7]), pack_bits(fp)
    m = match_threshold(k, 1e-3, 1)
    at = fp.clone()
    at[0, : k - m] = 1  # exactly m matches
    below = fp.clone()
    below[0, : k - m + 1] = 1  # m - 1 matches
    r_at, r_below = attribute_bits(torch.cat([at, below]), ids, packed, k, fpr=1e-3)
    assert r_at["attributed"] == 7 and r_at["matches"] == m
    assert r_below["attributed"] == UNKNOWN and r_below["nearest_fp_id"] == 7


def test_bad_inputs():
    with pytest.raises(GanprintError, match="empty"):
        attribute_bits(torch.zeros(1, 8), np.zeros(0, np.int64), np.zeros((0, 1), np.uint8), 8)
    with pytest.raises(GanprintError, match="`fpr`"):
        attribute_bits(torch.zeros(1, 8), np.array([1]), np.zeros((1, 1), np.uint8), 8, fpr=2.0)


@pytest.fixture
def attribution_setup(tmp_path, sample_folder):
    from ganprint.core.artifacts import save_export
    from ganprint.nets.scalable import ScalableConfig, ScalableDecoder

    torch.manual_seed(5)
    cfg = ScalableConfig(resolution=16, fingerprint_length=24, z_dim=8, w_dim=16, mapping_layers=1,
                         channel_base=128, channel_max=16, modulated_res=[4, 8, 16])
    dec = save_export(tmp_path / "dec.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    reg = Registry(tmp_path / "reg.sqlite")
    for _ in range(3):
        reg.issue(fingerprint_length=24, who="x")
    return {"model": dec, "registry": tmp_path / "reg.sqlite", "data": sample_folder}


def test_attribute_writes_its_outdir_and_takes_a_spec_or_keywords(attribution_setup, tmp_path):
    from ganprint.core.paths import read_record
    from ganprint.scalable.attribute import AttributeSpec, attribute_images

    s1 = attribute_images(AttributeSpec(**attribution_setup, outdir=tmp_path / "a", fpr=0.01, device="cpu"))
    s2 = attribute_images(*attribution_setup.values(), tmp_path / "b", fpr=0.01, device="cpu")
    rows = {n: (tmp_path / n / "attributions.jsonl").read_text() for n in "ab"}
    assert rows["a"] == rows["b"] and rows["a"].count("\n") == 24 and s1 == s2
    assert read_record(tmp_path / "a")["command"] == "attribute"
    assert s1 == __import__("json").loads((tmp_path / "a" / "summary.json").read_text())
    attribute_images(**attribution_setup, outdir=tmp_path / "a", fpr=0.01, device="cpu")  # a re-run is fine
    with pytest.raises(GanprintError, match=r"`outdir` .* different config \(`fpr`: 0.01 -> 0.05\)"):
        attribute_images(**attribution_setup, outdir=tmp_path / "a", fpr=0.05, device="cpu")


def test_the_attribute_spec_refuses_bad_values_by_field_name(attribution_setup, tmp_path):
    from ganprint.scalable.attribute import AttributeSpec

    cases = [({}, "give `outdir`"), ({"outdir": "o", "out": "o.jsonl"}, "give `outdir`"),
             ({"outdir": "o", "overwrite": True}, "`overwrite` goes with `out`"),
             ({"outdir": "o", "fpr": 1.5}, "`fpr` must be in"), ({"outdir": "o", "batch_size": 0}, "`batch_size`"),
             ({"outdir": "o", "runtime": "tf"}, "`runtime`")]
    for extra, message in cases:
        with pytest.raises(GanprintError, match=message):
            AttributeSpec(**attribution_setup, **extra)
    with pytest.raises(GanprintError, match="needs `registry`"):
        AttributeSpec(model="m", data="d", outdir="o")


def test_the_cli_takes_new_flags_and_the_old_ones_with_a_warning(attribution_setup, tmp_path):
    from click.testing import CliRunner

    from ganprint.cli import main

    r = CliRunner()
    a = attribution_setup
    res = r.invoke(main, ["attribute", "--model", str(a["model"]), "--registry", str(a["registry"]), "--data",
                          str(a["data"]), "--outdir", str(tmp_path / "new"), "--fpr", "0.01", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["attribute", "--decoder", str(a["model"]), "--registry", str(a["registry"]), "--input",
                          str(a["data"]), "--out", str(tmp_path / "old.jsonl"), "--fpr", "0.01", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    for old in ("--decoder is the old name of --model", "--input is the old name of --data", "--out FILE is the old"):
        assert old in res.output
    assert (tmp_path / "old.jsonl").read_text() == (tmp_path / "new" / "attributions.jsonl").read_text()
    assert (tmp_path / "old.jsonl.summary.json").is_file()
    res = r.invoke(main, ["attribute", "--model", str(a["model"]), "--registry", str(a["registry"]), "--data",
                          str(a["data"]), "--out", str(tmp_path / "old.jsonl"), "--device", "cpu"])
    assert res.exit_code == 1 and "--out" in res.output and "--overwrite" in res.output, res.output
    res = r.invoke(main, ["attribute", "--model", str(a["model"]), "--registry", str(a["registry"]), "--data",
                          str(a["data"]), "--device", "cpu"])
    assert res.exit_code == 2 and "--outdir" in res.output, res.output
    help_text = r.invoke(main, ["attribute", "--help"]).output
    assert "--outdir" in help_text and "--out " not in help_text and "--decoder" not in help_text
