"""invisible-watermark beside ganprint: its three methods on real photos, and `evaluate`'s side-by-side rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ganprint.core.errors import GanprintError
from ganprint.core.images import read_image
from ganprint.core.specs import SpecError
from ganprint.data.samples import write_samples
from ganprint.evaluation import baselines
from ganprint.evaluation.evaluate import EvaluateSpec, run_evaluate


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos256")
    write_samples(root, resolution=256, count=2, seed=5, photos="heldout")
    return root


def test_the_names_are_checked():
    assert baselines.parse_baselines("imwatermark") == list(baselines.METHODS)
    assert baselines.parse_baselines("rivagan, dwtDct") == ["rivaGan", "dwtDct"]
    assert baselines.parse_baselines(["imwatermark:dwtDctSvd", "dwtDctSvd"]) == ["dwtDctSvd"]
    with pytest.raises(GanprintError, match="unknown baseline 'stegastamp'.*known: imwatermark"):
        baselines.parse_baselines("stegastamp")
    assert baselines.parse_baselines(()) == [] and baselines.parse_baselines(None) == []  # none asked for
    for empty in ("", ",", " , "):
        with pytest.raises(GanprintError, match="names no method"):
            baselines.parse_baselines(empty)


@pytest.mark.parametrize("method", baselines.METHODS)
def test_each_method_reads_back_its_message_from_a_photo(method, photos):
    img = read_image(sorted(photos.glob("*.png"))[0])
    bits = baselines.message(3)
    marked = baselines.embed(method, img, bits)
    assert marked.shape == img.shape and marked.dtype == np.uint8 and not np.array_equal(marked, img)
    assert (baselines.decode(method, marked) == bits).mean() >= 0.9
    small = marked[::2, ::2]  # below the library's minimum: enlarged before decoding, never an error
    assert baselines.decode(method, small).shape == (baselines.BITS,)


def test_evaluate_writes_the_side_by_side_table(tiny_stega_model, photos, tmp_path):
    from ganprint.artificial.embed import embed

    embed(tiny_stega_model, photos, tmp_path / "emb", identical=True, fingerprint="0x5a", keep_size=True,
          device="cpu")
    spec = EvaluateSpec(model=tiny_stega_model, data=tmp_path / "emb" / "fingerprinted_images", fingerprint="0x5a",
                        clean=photos, keep_size=True, attacks="jpeg:50 shrink:0.5", baselines="dwtDct,dwtDctSvd",
                        outdir=tmp_path / "ev", fpr=1e-2)
    res = run_evaluate(spec)
    rows = [json.loads(x) for x in (tmp_path / "ev" / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"ganprint", "dwtDct", "dwtDctSvd"}
    assert len([r for r in rows if r["method"] == "dwtDct"]) == 2 * 3 * 2  # images x settings x (marked, clean)
    assert [r["n"] for r in res["summary"]] == [2, 2, 2]  # the main summary is ganprint's own
    assert set(res["baselines"]) == {"dwtDct", "dwtDctSvd"} and all(30 < v < 60 for v in res["baselines"].values())
    table = (tmp_path / "ev" / "compare.md").read_text()
    assert "| shrink:0.5 |" in table and "dwtDctSvd bit acc" in table and "PSNR (dB)" in table
    none = {r["method"]: r for r in res["compare"] if r["spec"] == "none:0"}
    assert none["dwtDctSvd"]["mean_bit_accuracy"] >= 0.9 and none["dwtDctSvd"]["clean_detected"] == 0
    assert "Side by side with invisible-watermark" in (tmp_path / "ev" / "report.md").read_text()


def test_baselines_need_the_originals_at_their_own_size(tiny_stega_model, photos, tmp_path):
    common = dict(model=tiny_stega_model, data=photos, fingerprint="0x5a", outdir=tmp_path / "ev")
    with pytest.raises(SpecError, match="`baselines` .*`clean`.*`keep_size`"):
        EvaluateSpec(**common, baselines="imwatermark", keep_size=True)
    with pytest.raises(SpecError, match="`baselines` .*`keep_size`"):
        EvaluateSpec(**common, baselines="imwatermark", clean=photos)
    with pytest.raises(GanprintError, match="unknown baseline"):
        EvaluateSpec(**common, baselines="nope", clean=photos, keep_size=True)
