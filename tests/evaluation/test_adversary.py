"""Smoke tests of the adversary suite (`ganprint.evaluation.adversary`, `ganprint adversary`) on an untrained
8-bit decoder and a few 32-px crops: the rows and files are written, the white-box attacks move the bits the way
they aim, the pasted pattern lands at the PSNR asked for, and bad specs are refused with one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import bits_to_str
from ganprint.core.stats import decode_bits
from ganprint.core.specs import SpecError
from ganprint.evaluation.adversary import (
    AdversarySpec,
    estimate_pattern,
    parse_adversary,
    paste_pattern,
    pgd,
    run_adversary,
)
from ganprint.evaluation.defence import make_defence
from ganprint.evaluation.sources import FolderSource, load_decoder


def _images(folder, n=8):
    src = FolderSource(folder, 32, lambda name: torch.zeros(8), 64, False, n)
    return torch.cat([b.images for b in src])


def test_pgd_moves_the_bits_towards_and_away(tiny_stega_model, sample_folder):
    # an untrained decoder reads nearly the same bits everywhere, so the signed margin of the logits towards
    # the key (not the hard bits) is what a few steps must move
    dec, _, k, _ = load_decoder(tiny_stega_model)
    x = _images(sample_folder)
    with torch.no_grad():
        own = decode_bits(dec(x))[0]

    def margin(img, bits):  # mean logit in the direction of `bits`: > 0 where they are read
        with torch.no_grad():
            return float((dec(img) * (2 * bits - 1)).mean())

    forged = pgd(dec, x, 1 - own, 16 / 255, 10, towards=True)
    removed = pgd(dec, x, own, 16 / 255, 10, towards=False)
    assert margin(forged, 1 - own) > margin(x, 1 - own)
    assert margin(removed, own) < margin(x, own)
    for adv in (forged, removed):  # within the budget (plus the 8-bit rounding), and on 8-bit levels
        assert float((adv - x).abs().max()) <= 16.5 / 255 + 1e-6
        assert torch.allclose(adv * 255, (adv * 255).round(), atol=1e-3)


def test_pasted_pattern_lands_at_the_psnr_asked_for(sample_folder):
    x = _images(sample_folder, 16)
    pattern = estimate_pattern(x[:8])
    out = paste_pattern(x[8:], pattern, 35.0)
    mse = (out - x[8:]).pow(2).mean()
    assert abs(float(-10 * torch.log10(mse)) - 35.0) < 1.0  # clamping and 8-bit rounding move it a little


def test_run_writes_rows_summary_and_plot(tiny_stega_model, sample_folder, tmp_path):
    fp = bits_to_str(torch.tensor([1, 0, 1, 1, 0, 0, 1, 0]))
    res = run_adversary(model=tiny_stega_model, data=sample_folder, clean=sample_folder, outdir=tmp_path / "adv",
                        fingerprint=fp, limit=6, defence="agree:blur=1:resize=0.75",
                        adversary=["average:n=2,8:psnr=30", "invert:eps=4:steps=3", "remove:eps=4:steps=3:images=4"])
    out = tmp_path / "adv"
    for f in ("results.jsonl", "summary.csv", "summary.md", "adversary.png", "adversary.json"):
        assert (out / f).stat().st_size > 0, f
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    sets = {r["set"] for r in rows}
    assert sets == {"fingerprinted", "clean", "forged", "removed"}
    assert sum(r["spec"] == "average:n=8:psnr=30:sigma=1" for r in rows) == 6
    assert sum(r["set"] == "removed" for r in rows) == 4 and sum(r["set"] == "forged" for r in rows) == 3 * 6
    assert {"image", "attack", "strength", "n", "psnr", "bit_accuracy", "matches", "p_value", "detected"} <= set(rows[0])
    assert res["clean_false_positive_rate"] is not None and len(res["summary"]) == 6
    assert all(r["detected"] or not r["detected_defended"] for r in rows)  # a second check only takes away


@pytest.mark.parametrize("spec", ["agree", "agree:blur=0", "agree:sharpen=1", "vote:blur=1", "energy:min=0", "energy:max=1"])
def test_bad_defences_are_refused(spec):
    with pytest.raises(GanprintError, match="`defence`"):
        make_defence(spec, lambda x: x, 8, 1e-6)


@pytest.mark.parametrize("spec", ["average:n=0", "averag", "remove:eps=x", "invert:foo=1", "remove:eps", "edit:level=11",
                                  "query-remove:sigma=0.5", "query-remove:samples=1e9", "remove:steps=1e7",
                                  "invert:eps=1000"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(GanprintError, match="`adversary`"):
        parse_adversary([spec])


def test_spec_refuses_bad_values_before_any_work(tmp_path):
    base = {"model": "m", "data": "d", "clean": "c", "outdir": tmp_path / "o", "fingerprint": "0x5a"}
    assert AdversarySpec(**base, adversary="remove:eps=2").adversary == ("remove:eps=2",)  # one spec, as a string
    assert AdversarySpec.of(AdversarySpec(**base), fpr=1e-3).fpr == 1e-3
    for bad, field in [({"fpr": 0.0}, "`fpr`"), ({"limit": 0}, "`limit`"), ({"adversary": ["average:n=0"]},
                       "`adversary`"), ({"defence": "agree:blur=0"}, "`defence`"),
                       ({"defence": "energy:min=0.7"}, "`defence_reference`")]:
        with pytest.raises(GanprintError, match=field):
            AdversarySpec(**base, **bad)
    with pytest.raises(SpecError, match="`batch_size`"):
        AdversarySpec.of(**base, batch_size=8)
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_bad_spec_with_one_line(tiny_stega_model, sample_folder, tmp_path):
    cmd = [sys.executable, "-m", "ganprint", "adversary", "--model", str(tiny_stega_model), "--data",
           str(sample_folder), "--clean", str(sample_folder), "--fingerprint", "10110010", "--outdir",
           str(tmp_path / "o"), "--adversary", "average:psnr=-3"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--adversary" in lines[0], p.stderr


def test_energy_check_measures_the_pattern_strength(sample_folder):
    # on flat canvases (no high band of their own) the coefficient is the pasted strength, so a weak paste fails
    x = _images(sample_folder, 8)
    pattern = estimate_pattern(x)
    guard = make_defence("energy:min=0.7", lambda t: t, 8, 1e-6, pattern=pattern)
    flat = torch.full((2, 3, 32, 32), 0.5)
    c = guard.coefficients(torch.stack([flat[0] + pattern, flat[1] + 0.3 * pattern]))
    assert abs(float(c[0]) - 1) < 0.15 and abs(float(c[1]) - 0.3) < 0.1
    rows = [{"detected": True}, {"detected": True}]
    guard.apply(rows, torch.stack([flat[0] + pattern, flat[1] + 0.3 * pattern]), torch.zeros(8))
    assert [r["detected_defended"] for r in rows] == [True, False]
    with pytest.raises(GanprintError, match="`defence_reference`"):
        make_defence("energy:min=0.7", lambda t: t, 8, 1e-6)


def test_detect_says_what_its_p_values_cover(tiny_stega_model, sample_folder, tmp_path):
    # the note goes beside the decision (stderr, with the library's summary); no reference, no decision, no note
    from click.testing import CliRunner

    from ganprint.cli import main

    base = ["detect", "--model", str(tiny_stega_model), "--data", str(sample_folder), "--device", "cpu"]
    r = CliRunner().invoke(main, base + ["--outdir", str(tmp_path / "a"), "--fingerprint", "10110010", "--fpr", "0.01"])
    assert r.exit_code == 0, r.output
    assert "untampered image" in r.stderr and "docs/threat-model.md" in r.stderr
    r = CliRunner().invoke(main, base + ["--outdir", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "untampered" not in r.output


def test_attribute_prints_what_its_p_values_cover(sample_folder, tmp_path):
    # printed summary only: OUT.summary.json and the rows stay as they were (golden digests)
    from click.testing import CliRunner

    from ganprint.cli import main
    from ganprint.core.artifacts import save_export
    from ganprint.nets.scalable import ScalableDecoder, ScalableGenerator
    from ganprint.scalable.config import ScalableConfig

    torch.manual_seed(0)
    cfg = ScalableConfig(resolution=16, fingerprint_length=32, z_dim=8, w_dim=16, mapping_layers=2,
                         channel_base=128, channel_max=16, modulated_res=[4, 8, 16])
    g = save_export(tmp_path / "G.safetensors", ScalableGenerator(cfg), "scalable-G", cfg.to_dict())
    d = save_export(tmp_path / "D.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    reg, cli = tmp_path / "reg.sqlite", CliRunner()
    r = cli.invoke(main, ["issue", "--model", str(g), "--registry", str(reg), "--models-dir", str(tmp_path / "i")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "a.jsonl"
    r = cli.invoke(main, ["attribute", "--decoder", str(d), "--registry", str(reg), "--input", str(sample_folder),
                          "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    assert "untampered image" in printed["p_value_covers"]
    assert "p_value_covers" not in json.loads((tmp_path / "a.jsonl.summary.json").read_text())


@pytest.fixture(scope="module")
def tiny_diffusion(tmp_path_factory):
    """An untrained 32-px diffusion-unet export (two 32-channel levels), enough to run regeneration."""
    pytest.importorskip("diffusers")
    from ganprint.core.artifacts import save_export
    from ganprint.diffusion.config import NoiseConfig, UNetConfig
    from ganprint.diffusion.model import EXPORT_KIND, build_unet, export_config

    torch.manual_seed(0)
    cfg = UNetConfig(32, (32, 32), (False, False), 1, head_dim=32)
    path = tmp_path_factory.mktemp("diffusion") / "unet32.safetensors"
    save_export(path, build_unet(cfg), EXPORT_KIND, export_config(cfg, NoiseConfig()))
    return path


def test_query_removal_moves_the_bits_away_through_onnx_alone(tiny_stega_model, sample_folder):
    # the attack sees ONNX Runtime's logits only; the PyTorch decoder judges the result (the same graph)
    pytest.importorskip("onnxruntime")
    from ganprint.evaluation.blackbox import QueryBudget, onnx_session, query_remove

    dec, _, _, _ = load_decoder(tiny_stega_model)
    x = _images(sample_folder, 4)
    with torch.no_grad():
        own = decode_bits(dec(x))[0]
        before = float((dec(x) * (2 * own - 1)).mean())
    session = onnx_session(None, tiny_stega_model)
    adv = query_remove(session, x, own, QueryBudget(eps=16, steps=6, samples=8, sigma=4))
    with torch.no_grad():
        assert float((dec(adv) * (2 * own - 1)).mean()) < before
    assert float((adv - x).abs().max()) <= 16 / 255 + 1e-6
    assert torch.allclose(adv * 255, (adv * 255).round(), atol=1e-3)


def test_query_removal_refuses_without_onnx_runtime(tiny_stega_model, monkeypatch):
    from ganprint.evaluation.blackbox import onnx_session

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import then raises ImportError
    with pytest.raises(GanprintError, match=r"ONNX Runtime.*pip install -e .\.\[onnx\]. in the ganprint checkout"):
        onnx_session(None, tiny_stega_model)


def test_regeneration_keeps_the_image_at_small_t_and_replaces_it_at_large_t(tiny_diffusion, sample_folder):
    from ganprint.evaluation.blackbox import Regenerator
    from ganprint.evaluation.quality import psnr

    regen = Regenerator.load(tiny_diffusion, torch.device("cpu"))
    x = _images(sample_folder, 3)
    near, far = regen(x, 1, 1), regen(x, 900, 3)
    assert torch.equal(near, regen(x, 1, 1))  # seeded noise: a run repeats
    assert float(psnr(near, x).mean()) > 30 > float(psnr(far, x).mean())
    assert torch.allclose(far * 255, (far * 255).round(), atol=1e-3)
    with pytest.raises(GanprintError, match="t must be between"):
        regen(x, 1000, 2)


def test_run_reports_the_black_box_removals(tiny_stega_model, tiny_diffusion, sample_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    fp = bits_to_str(torch.tensor([1, 0, 1, 1, 0, 0, 1, 0]))
    base = {"model": tiny_stega_model, "data": sample_folder, "clean": sample_folder, "fingerprint": fp, "limit": 4}
    with pytest.raises(SpecError, match="`diffusion`"):
        AdversarySpec(**base, outdir=tmp_path / "x", adversary="regenerate:t=10")
    with pytest.raises(SpecError, match="`onnx`"):
        AdversarySpec(**base, outdir=tmp_path / "x", adversary="remove:eps=2", onnx=tiny_stega_model)
    res = run_adversary(**base, outdir=tmp_path / "adv", diffusion=tiny_diffusion,
                        adversary=["query-remove:eps=4:steps=2:samples=2:images=3", "regenerate:t=20,400:steps=2",
                                   "edit:level=1,10:images=2"])
    rows = [json.loads(line) for line in (tmp_path / "adv" / "results.jsonl").read_text().splitlines()]
    removed = [r for r in rows if r["set"] == "removed"]
    assert [r["attack"] for r in removed].count("query-remove") == 3
    assert [r["attack"] for r in removed].count("regenerate") == 2 * 4
    assert {r["strength"] for r in removed if r["attack"] == "regenerate"} == {20.0, 400.0}
    edits = [r for r in removed if r["attack"] == "edit"]
    assert [r["strength"] for r in edits] == [1.0, 1.0, 10.0, 10.0]
    assert edits[0]["psnr"] > edits[2]["psnr"]  # level 10 edits far more than level 1
    assert res["diffusion"] == str(tiny_diffusion) and (tmp_path / "adv" / "adversary.png").stat().st_size > 0


def test_plot_curves_split_by_every_parameter_but_the_strength():
    from ganprint.evaluation.adversary import _curves

    rows = [{"spec": f"average:n={n}:psnr={p}:sigma={s}", "mean_psnr": p} for n, s in ((10, 1), (1000, 1), (1000, 2))
            for p in (42, 35)]
    curves = _curves(rows, "psnr")
    assert [label for label, _ in curves] == ["n=10 sigma=1", "n=1000 sigma=1", "n=1000 sigma=2"]
    assert all([r["mean_psnr"] for r in line] == [35, 42] for _, line in curves)
    one = _curves([{"spec": "remove:eps=4:images=0:steps=20", "mean_psnr": 37.0}], "eps")
    assert [(label, len(line)) for label, line in one] == [("detected", 1)]
