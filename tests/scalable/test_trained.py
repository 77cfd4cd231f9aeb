"""A scalable generator trained here (16 px, 16 bits, CPU) gives issued models whose images are attributed to them.

One training per session, as the `small` preset's first phase: the generator and the decoder learn the fingerprint
while the adversarial and consistency terms stay gated off (this test is about fingerprints, not image quality).
Then four models are issued with fingerprints 8 bits apart, each generates images, and `attribute` must name the
right model for them and no model for real photos.
"""

from __future__ import annotations

import json

import pytest

import ganprint
from ganprint.data.samples import write_samples
from ganprint.scalable.train import ScalableTrainConfig

R, K = 16, 16
FPR = 1e-2  # with 4 issued 16-bit fingerprints: attributed at >= 14 matching bits
# Rows of a 16 x 16 Hadamard matrix as bits: every two differ in 8 places.
FINGERPRINTS = ["0101010101010101", "0011001100110011", "0110011001100110", "0000111100001111"]
PER_MODEL = 8


@pytest.fixture(scope="session")
def issued(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("scalable-trained")
    write_samples(root / "train", resolution=R, count=256, seed=0, photos="train")
    write_samples(root / "real", resolution=R, count=16, seed=1, photos="heldout")
    # A gate accuracy above 1 (and a kimg cap beyond the run) keeps the adversarial phase closed for the whole run.
    cfg = ScalableTrainConfig(data=str(root / "train"), resolution=R, fingerprint_length=K,
                              modulated_res=f"4-{R}", preset="small", kimg=6.0, seed=0, device="cpu", batch_size=8,
                              lr=0.004, consistency_gate_acc=2.0, consistency_gate_kimg=1e6, tick_kimg=1.0,
                              snapshot_kimg=1e6, metric_kimg=1e6, metric_images=256)
    ganprint.train(cfg, root / "run")
    models = [ganprint.issue(root / "run" / "scalable-G.safetensors", root / "registry.sqlite", root / "issued",
                             fingerprint=fp, who=f"user{i}") for i, fp in enumerate(FINGERPRINTS)]
    for m in models:
        ganprint.generate(m["issued_path"], list(range(100, 100 + PER_MODEL)), root / f"images-{m['fp_id']}",
                          device="cpu")
    return {"root": root, "models": models}


def _attribute(root, folder: str) -> tuple[list[dict], dict]:
    out = root / f"{folder}-attribution" / "attributions.jsonl"
    summary = ganprint.attribute(root / "run" / "scalable-decoder.safetensors", root / "registry.sqlite", root / folder,
                                 out.parent, fpr=FPR, device="cpu")
    return [json.loads(line) for line in out.read_text().splitlines()], summary


def test_training_learns_the_fingerprint(issued):
    metric = issued["root"] / "run" / "metric-bit-accuracy.jsonl"
    rows = [json.loads(line) for line in metric.read_text().splitlines()]
    assert rows[-1]["kimg"] == 6.0 and rows[-1]["bit_accuracy"] >= 0.9, rows  # G_ema, random fingerprints


def test_issued_models_are_attributed_to_themselves(issued):
    root, wrong, unknown, total = issued["root"], [], 0, 0
    for m in issued["models"]:
        rows, summary = _attribute(root, f"images-{m['fp_id']}")
        assert summary["min_matches"] == 14 and summary["issued"] == len(FINGERPRINTS)
        assert len(rows) == PER_MODEL and all(r["nearest_fp_id"] == m["fp_id"] for r in rows), rows
        wrong += [r for r in rows if r["attributed"] not in (m["fp_id"], "unknown")]
        unknown += sum(r["attributed"] == "unknown" for r in rows)
        assert all(r["who"] == m["who"] for r in rows if r["attributed"] == m["fp_id"])
        total += len(rows)
    assert not wrong and unknown <= 0.1 * total, (wrong, unknown)


def test_real_photos_are_attributed_to_no_model(issued):
    rows, summary = _attribute(issued["root"], "real")
    assert len(rows) == 16 and summary["attributed"] == 0 and summary["unknown"] == 16
    assert max(r["matches"] for r in rows) < 14
