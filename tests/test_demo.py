"""`ganprint demo` end to end at a tiny size: every stage runs, the report is written, a re-run resumes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ganprint.cli import main
from ganprint.demo import format_summary, run_demo


def test_demo_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    s = run_demo(out, steps=6, train_count=64, test_count=12, device="cpu")
    assert s["heldout_images"] == 12 and s["per_image_fingerprints"] == 12
    for key in ("bit_accuracy_fingerprinted", "bit_accuracy_per_image_fingerprints", "bit_accuracy_clean"):
        assert 0 <= s[key] <= 1
    assert 0 <= s["false_positive_rate_clean"] <= 1 and s["psnr_db"] > 0 and -1 <= s["ssim"] <= 1
    assert json.loads((out / "summary.json").read_text())["fingerprint"] == s["fingerprint"]
    assert (out / "examples.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "fresh random fingerprint per held-out image" in report and "examples.png" in report
    # 6 steps learn nothing: the terminal summary must not claim success.
    assert "below target" in format_summary(s)

    again = run_demo(out, steps=6, train_count=64, test_count=12, device="cpu")  # resumes: nothing retrained
    assert again["bit_accuracy_fingerprinted"] == s["bit_accuracy_fingerprinted"]
    assert again["timings_s"]["train_s"] < s["timings_s"]["train_s"] + 1


def test_demo_cli_rejects_bad_steps(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--outdir", str(tmp_path / "d"), "--steps", "0", "--device", "cpu"])
    assert r.exit_code != 0 and "--steps" in r.output
