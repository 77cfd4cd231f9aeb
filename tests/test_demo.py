"""`ganprint demo` end to end at a tiny size: every stage runs, the report is written, a re-run resumes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.demo import format_summary, run_demo


def test_demo_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    s = run_demo(out, steps=6, train_count=64, test_count=12, device="cpu")
    assert s["heldout_images"] == 12 and s["per_image_fingerprints"] == 12
    for key, det in (("bit_accuracy_fingerprinted", "detect-fingerprinted"), ("bit_accuracy_clean", "detect-clean"),
                     ("bit_accuracy_per_image_fingerprints", "detect-per-image")):  # each figure from its own run
        rows = [json.loads(x) for x in (out / det / "detections.jsonl").read_text().splitlines()]
        assert len(rows) == 12 and s[key] == pytest.approx(sum(r["bit_accuracy"] for r in rows) / 12)
    assert 0 <= s["false_positive_rate_clean"] <= 1 and s["psnr_db"] > 0 and -1 <= s["ssim"] <= 1
    assert json.loads((out / "summary.json").read_text())["fingerprint"] == s["fingerprint"]
    assert (out / "examples.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "fresh random fingerprint per held-out image" in report and "examples.png" in report
    # 6 steps learn nothing: the terminal summary must not claim success.
    assert "below target" in format_summary(s)

    model, stats = out / "train" / "model.safetensors", out / "train" / "stats.jsonl"
    before = (model.stat().st_mtime_ns, model.read_bytes(), stats.read_text())
    again = run_demo(out, steps=6, train_count=64, test_count=12, device="cpu")  # resumes: nothing retrained
    assert again["bit_accuracy_fingerprinted"] == s["bit_accuracy_fingerprinted"]
    assert (model.stat().st_mtime_ns, model.read_bytes(), stats.read_text()) == before
    assert json.loads((out / "embedded" / "manifest.json").read_text())["counts"]["new_this_run"] == 0


def test_demo_cli_rejects_bad_steps(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--outdir", str(tmp_path / "d"), "--steps", "0", "--device", "cpu"])
    assert r.exit_code != 0 and "--steps" in r.output
