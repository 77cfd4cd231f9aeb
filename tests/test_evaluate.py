"""`ganprint evaluate` end to end on a tiny untrained stega model, report files and JSONL schema; the
`metrics` commands; the report's summary maths."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ganprint.checkpoint import save_export
from ganprint.cli import main
from ganprint.errors import GanprintError
from ganprint.eval import EvalBatch, evaluate, run_evaluate
from ganprint.attacks import parse_attacks
from ganprint.fingerprints import bits_to_str, random_bits
from ganprint.models.stega import StegaConfig, StegaModel
from ganprint.report import summarize

ROW_KEYS = {"image", "attack", "strength", "bit_accuracy", "matches", "p_value", "log10_p", "detected"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ganprint.imageio import write_png

    root = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    cfg = StegaConfig(32, 8)
    model = root / "model.safetensors"
    save_export(model, StegaModel(cfg), "stega", asdict(cfg))
    rng = np.random.default_rng(0)
    for d in ("fp", "clean"):
        (root / d).mkdir()
        for i in range(5):
            write_png(root / d / f"img{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    bits = random_bits(5, 8, seed=1)
    (root / "embedded.txt").write_text("".join(f"img{i}.png {bits_to_str(bits[i])}\n" for i in range(5)))
    return root, model


def test_run_evaluate_writes_report_and_tidy_rows(setup, tmp_path):
    root, model = setup
    out = tmp_path / "out"
    res = run_evaluate(model, root / "fp", out, embedded=root / "embedded.txt",
                       attacks=["jpeg:50", "noise:0.05,0.1", "jpeg:50+noise:0.05", "crop:0.8"],
                       clean=root / "clean", device="cpu", batch_size=2)
    for f in ("results.jsonl", "summary.csv", "summary.md", "bit_accuracy.png", "roc.png", "report.md",
              "report.html", "eval.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    n_settings = 1 + 1 + 2 + 1 + 1  # none, jpeg, noise x2, chain, crop
    assert len(rows) == 2 * 5 * n_settings
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert 0 <= r["bit_accuracy"] <= 1 and r["matches"] == round(r["bit_accuracy"] * 8)
        assert isinstance(r["detected"], bool) and r["p_value"] == pytest.approx(10 ** r["log10_p"])
    assert {r["attack"] for r in rows} == {"none", "jpeg", "noise", "jpeg+noise", "crop"}
    assert res["match_threshold"] == 9 and res["images"] == 5 and res["clean_images"] == 5  # 8 bits: never at 1e-6
    assert not any(r["detected"] for r in rows)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    md = (out / "report.md").read_text()
    assert "bit_accuracy.png" in md and "AGF paper" in md
    assert len(res["summary"]) == n_settings


def test_evaluate_is_reproducible_and_source_agnostic(setup):
    root, model = setup
    from ganprint.checkpoint import load_export

    m, _, _ = load_export(model)
    g = torch.Generator().manual_seed(0)
    batches = [EvalBatch(torch.rand(3, 3, 32, 32, generator=g), [f"g{i}" for i in range(3)],
                         random_bits(3, 8, seed=2))]
    chains = parse_attacks("noise:0.1 randcrop:0.7")
    a = evaluate(m.dec, batches, chains, fpr=1e-3, seed=4)
    b = evaluate(m.dec, batches, chains, fpr=1e-3, seed=4)
    assert a == b and len(a) == 6 and {r["set"] for r in a} == {"fingerprinted"}


def test_bad_inputs_are_clear_errors(setup, tmp_path):
    root, model = setup
    with pytest.raises(GanprintError, match="exactly one"):
        run_evaluate(model, root / "fp", tmp_path, device="cpu")
    with pytest.raises(GanprintError, match="unknown attack"):
        run_evaluate(model, root / "fp", tmp_path, fingerprint="01010101", attacks=["jpgg"], device="cpu")
    with pytest.raises(GanprintError, match="8"):
        run_evaluate(model, root / "fp", tmp_path, fingerprint="0101", device="cpu")
    r = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--data", str(root / "fp"), "--outdir",
                                  str(tmp_path / "o"), "--fingerprint", "01010101", "--attacks", "blur:q=3"])
    assert r.exit_code == 1 and "no parameter 'q'" in r.output and "Traceback" not in r.output


def test_cli_evaluate_and_metrics(setup, tmp_path):
    root, model = setup
    runner = CliRunner()
    r = runner.invoke(main, ["evaluate", "--model", str(model), "--data", str(root / "fp"), "--outdir",
                             str(tmp_path / "o"), "--fingerprint", "0x5a", "--attacks", "jpeg:70", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "report.html").is_file()
    r = runner.invoke(main, ["metrics", "threshold", "--bits", "100", "--fpr", "1e-6", "--keys", "1000000", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["threshold"] == 85
    r = runner.invoke(main, ["metrics", "threshold", "--bits", "8", "--fpr", "1e-6"])
    assert r.exit_code == 0 and "no threshold" in r.output
    r = runner.invoke(main, ["metrics", "pvalue", "--bits", "100", "--bit-accuracy", "0.93", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["p_value"] == pytest.approx(1.4e-20, rel=0.05)
    r = runner.invoke(main, ["metrics", "pvalue", "--bits", "100"])
    assert r.exit_code == 1 and "exactly one" in r.output
    r = runner.invoke(main, ["metrics", "attacks"])
    assert r.exit_code == 0 and "jpeg" in r.output and "suite standard" in r.output
    r = runner.invoke(main, ["metrics", "fid", str(root / "fp"), str(root / "clean"), "--resolution", "32",
                             "--inception", str(tmp_path / "missing.pth")])
    assert r.exit_code == 1 and "pt_inception-2015-12-05-6726825d.pth" in r.output


def test_summarize_known_answer():
    rows = []
    for i, m in enumerate([100, 90, 60, 80]):  # K = 100, threshold at 1e-6 is 74
        rows.append({"image": f"p{i}", "set": "fingerprinted", "attack": "none", "strength": 0.0, "spec": "none:0",
                     "bit_accuracy": m / 100, "matches": m, "detected": m >= 74})
    for i, m in enumerate([50, 55, 45, 85]):
        rows.append({"image": f"c{i}", "set": "clean", "attack": "none", "strength": 0.0, "spec": "none:0",
                     "bit_accuracy": m / 100, "matches": m, "detected": m >= 74})
    s = summarize(rows, 1e-6, 100)[0]
    assert s["n"] == 4 and s["detected"] == 0.75 and s["clean_detected"] == 0.25
    assert s["mean_bit_accuracy"] == pytest.approx(0.825)
    assert s["tpr_empirical"] == pytest.approx(0.5)  # must beat the best clean score (85): 100 and 90
    assert s["auc"] == pytest.approx((4 + 4 + 3 + 3) / 16)
