"""A stega model trained here (16 px, 16 bits, CPU) embeds fingerprints that `detect` finds, and only those.

The model (`trained_stega16`, tests/conftest.py) is trained once per session on sample crops of the training photos
until it reads its bits back from 8-bit images of the held-out photos (other scenes) at >= 0.99, then every check
runs on those held-out photos.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import ganprint
from ganprint.core.errors import GanprintError

from tests.conftest import TRAINED_MAX_STEPS as MAX_STEPS
from tests.conftest import TRAINED_N_HELDOUT as N_HELDOUT
from tests.conftest import TRAINED_R as R
from tests.conftest import TRAINED_TARGET as TARGET

FPR = 1e-3  # at K = 16 and FPR 1e-3, detection needs >= 15 matching bits


def test_training_learns_the_bits(trained_stega16):
    steps, accs = zip(*trained_stega16["curve"])
    assert accs[0] < 0.75, trained_stega16["curve"]  # it starts near chance (25 steps in) ...
    assert accs[-1] >= TARGET and steps[-1] < MAX_STEPS, trained_stega16["curve"]  # ... and learns within the budget


def test_embedded_fingerprints_are_detected_and_clean_images_are_not(trained_stega16, tmp_path):
    root, model = trained_stega16["root"], trained_stega16["model"]
    emb = ganprint.embed(model, root / "heldout", tmp_path / "emb", seed=7, device="cpu", check=True, precision="fp32")
    assert emb["fingerprinted"] == N_HELDOUT and emb["check_bit_accuracy"] >= 0.97
    embedded = tmp_path / "emb" / "embedded_fingerprints.txt"

    det = ganprint.detect(model, tmp_path / "emb" / "fingerprinted_images", tmp_path / "det", embedded=embedded,
                          fpr=FPR, device="cpu", precision="fp32")
    assert det["with_reference"] == N_HELDOUT and det["mean_bit_accuracy"] >= 0.97
    assert det["match_threshold"] == 15 and det["detected"] >= 0.9 * N_HELDOUT
    rows = [json.loads(line) for line in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    assert sum(r["detected"] for r in rows) == det["detected"]
    assert all(r["detected"] == (r["matches"] >= 15) for r in rows)

    # The same photos without a fingerprint, held against the fingerprints they would have carried.
    clean = ganprint.detect(model, root / "heldout", tmp_path / "clean", embedded=embedded, fpr=FPR, device="cpu",
                            precision="fp32")
    assert clean["with_reference"] == N_HELDOUT and clean["detected"] == 0
    assert clean["mean_bit_accuracy"] < 0.75

    # Fingerprinted images held against fingerprints they do not carry (another seed's) are not detected either.
    other = ganprint.embed(model, root / "heldout", tmp_path / "emb-other", seed=8, device="cpu", precision="fp32")
    assert other["fingerprinted"] == N_HELDOUT
    wrong = ganprint.detect(model, tmp_path / "emb" / "fingerprinted_images", tmp_path / "wrong",
                            embedded=tmp_path / "emb-other" / "embedded_fingerprints.txt", fpr=FPR, device="cpu",
                            precision="fp32")
    assert wrong["detected"] == 0 and wrong["mean_bit_accuracy"] < 0.75


def test_photos_fingerprinted_at_their_own_size_are_detected(trained_stega16, tmp_path):
    """`keep_size`: each photo keeps its size, its margins are untouched, and `detect` reads the fingerprint."""
    from PIL import Image

    from ganprint.core.images import psnr_u8
    from ganprint.inference.fullsize import centre_square

    src = tmp_path / "photos"
    src.mkdir()
    sizes = [(96, 128), (128, 96), (160, 160), (R, R), (70, 41)]
    for i, p in enumerate(sorted((trained_stega16["root"] / "heldout").glob("*.png"))[:10]):
        h, w = sizes[i % len(sizes)]
        Image.open(p).convert("RGB").resize((w, h), Image.BICUBIC).save(src / f"p{i}.png")
    emb = ganprint.embed(trained_stega16["model"], src, tmp_path / "emb", identical=True, fingerprint="0xa5c3", keep_size=True,
                         strength=1.5, check=True, device="cpu", precision="fp32")
    assert emb["status"] == "complete" and emb["keep_size"] and emb["check_bit_accuracy"] >= 0.9
    psnrs = []
    for p in sorted(src.iterdir()):
        a = np.asarray(Image.open(p))
        b = np.asarray(Image.open(tmp_path / "emb" / "fingerprinted_images" / p.name))
        top, left, s = centre_square(*a.shape[:2])
        assert a.shape == b.shape  # no resize of the user's image
        margin = np.ones(a.shape[:2], bool)
        margin[top:top + s, left:left + s] = False
        assert np.array_equal(a[margin], b[margin]) and not np.array_equal(a, b)
        psnrs.append(psnr_u8(a, b))
    assert emb["mean_psnr"] == pytest.approx(np.mean(psnrs))  # at each image's own size
    det = ganprint.detect(trained_stega16["model"], tmp_path / "emb" / "fingerprinted_images", tmp_path / "det",
                          fingerprint="0xa5c3", fpr=FPR, device="cpu", precision="fp32")
    assert det["detected"] >= 9 and det["mean_bit_accuracy"] >= 0.9
    clean = ganprint.detect(trained_stega16["model"], src, tmp_path / "clean", fingerprint="0xa5c3", fpr=FPR, device="cpu",
                            precision="fp32")
    assert clean["detected"] == 0
    with pytest.raises(GanprintError, match="different config .`keep_size`: True"):  # never mixed with a resize run
        ganprint.embed(trained_stega16["model"], src, tmp_path / "emb", identical=True, fingerprint="0xa5c3", device="cpu",
                       precision="fp32")


def test_photos_fingerprinted_as_tiles_are_read_as_tiles_even_cropped_or_turned(trained_stega16, tmp_path):
    """`tiles`: each tile carries the bits and the tiled reading finds them, the wide search undoes a crop and a
    rotation, and clean photos stay undetected. (What tiles gain at high PSNR needs a model whose errors come from
    the photo's content, as `robust-32`'s do: benchmarks/experiments/wild; this 14-dB test model's do not.)"""
    from PIL import Image

    from ganprint.evaluation.evaluate import EvaluateSpec, run_evaluate

    src = tmp_path / "photos"
    src.mkdir()
    for i, p in enumerate(sorted((trained_stega16["root"] / "heldout").glob("*.png"))[:8]):
        Image.open(p).convert("RGB").resize((96, 80) if i % 2 else (64, 64), Image.BICUBIC).save(src / f"p{i}.png")
    kw = dict(identical=True, fingerprint="0xa5c3", keep_size=True, strength=1.0, device="cpu", precision="fp32")
    tiled = ganprint.embed(trained_stega16["model"], src, tmp_path / "t4", tiles=4, check=True, **kw)
    single = ganprint.embed(trained_stega16["model"], src, tmp_path / "t1", **kw)
    assert tiled["tiles"] == 4 and single["tiles"] == 1
    read = {name: ganprint.detect(trained_stega16["model"], tmp_path / name / "fingerprinted_images", tmp_path / f"d{name}",
                                  fingerprint="0xa5c3", fpr=FPR, device="cpu", precision="fp32", tiles=n)
            for name, n in (("t4", 4), ("t1", 1))}
    assert read["t4"]["mean_bit_accuracy"] >= 0.97 and read["t4"]["detected"] >= 7
    assert read["t1"]["mean_bit_accuracy"] >= 0.9
    assert tiled["check_bit_accuracy"] == pytest.approx(read["t4"]["mean_bit_accuracy"], abs=0.02)
    clean = ganprint.detect(trained_stega16["model"], src, tmp_path / "clean", fingerprint="0xa5c3", fpr=FPR, device="cpu",
                            precision="fp32", tiles=4, scale_search="wide")
    assert clean["detected"] == 0
    got = {}
    for search in (None, "wide"):
        ev = run_evaluate(EvaluateSpec(model=trained_stega16["model"], data=tmp_path / "t4" / "fingerprinted_images",
                                       fingerprint="0xa5c3", keep_size=True, tiles=4, scale_search=search, fpr=FPR,
                                       attacks=["crop:0.75", "rotate:4"], outdir=tmp_path / f"ev{search}", device="cpu"))
        assert ev["tiles"] == 4
        got[search] = {r["spec"]: r["mean_bit_accuracy"] for r in ev["summary"]}
    assert got["wide"]["none:0"] == got[None]["none:0"] >= 0.97  # the search keeps an untouched reading
    assert got["wide"]["crop:0.75"] >= got[None]["crop:0.75"] + 0.2 and got["wide"]["rotate:4"] >= 0.9
    with pytest.raises(GanprintError, match="`tiles` .*add `keep_size`"):
        ganprint.embed(trained_stega16["model"], src, tmp_path / "x", tiles=2)
    with pytest.raises(GanprintError, match="`tiles` must be"):
        ganprint.detect(trained_stega16["model"], src, tmp_path / "x", tiles=9)
    assert not (tmp_path / "x").exists()
