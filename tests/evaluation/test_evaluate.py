"""`ganprint evaluate` end to end on a tiny untrained stega model, report files and JSONL schema; the
`metrics` commands; the report's summary maths."""

import dataclasses
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganprint.api import generate as generate_images
from ganprint.artificial.detect import detect
from ganprint.cli import main
from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import bits_to_hex, bits_to_str, parse_bits, random_bits
from ganprint.core.images import write_png
from ganprint.evaluation.evaluate import (
    EvalBatch,
    EvaluateSpec,
    GeneratorSource,
    Scoring,
    evaluate,
    evaluate_model_attacks,
    load_decoder,
    load_generator,
    run_evaluate,
)
from ganprint.evaluation.model_attacks import MODEL_ATTACK_SPECS, ModelAttackSpecError, parse_model_attacks
from ganprint.evaluation.report import summarize
from ganprint.nets.scalable import ScalableConfig, ScalableDecoder, ScalableGenerator, fold_fingerprint
from ganprint.nets.stega import StegaConfig, StegaModel
from ganprint.nets.stylegan2 import Generator, GeneratorConfig, generator_config_dict
from ganprint.perturb.attacks import parse_attacks
from ganprint.scalable.generate import FINGERPRINT_META

ROW_KEYS = {"image", "attack", "strength", "bit_accuracy", "matches", "p_value", "log10_p", "detected"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
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


def _run(model, data, outdir, **kw):
    return run_evaluate(EvaluateSpec(model=model, data=data, outdir=outdir, **kw))


def test_run_evaluate_writes_report_and_tidy_rows(setup, tmp_path):
    root, model = setup
    out = tmp_path / "out"
    res = _run(model, root / "fp", out, embedded=root / "embedded.txt",
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
    assert all(r["detected"] == (r["matches"] >= res["match_threshold"]) for r in rows)
    # The unattacked rows are the decoder's own reading: `detect` on the same images counts the same matches.
    detect(model, root / "fp", tmp_path / "det", embedded=root / "embedded.txt", device="cpu", precision="fp32",
           fpr=0.01)
    seen = [json.loads(x) for x in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    assert {r["image"]: r["matches"] for r in rows if r["set"] == "fingerprinted" and r["attack"] == "none"} == \
        {r["name"]: r["matches"] for r in seen}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    md = (out / "report.md").read_text()
    assert "bit_accuracy.png" in md and "AGF paper" in md
    assert len(res["summary"]) == n_settings


def test_evaluate_scores_matches_p_values_and_detections():
    ref = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 0])
    flips = [0, 2, 5]  # a decoder that gets 8, 6 and 3 of the 8 bits right
    logits = torch.stack([torch.where(torch.arange(8) < f, 1 - ref, ref) * 2 - 1 for f in flips])

    def decode(x):
        return logits[: len(x)]

    batch = [EvalBatch(torch.zeros(3, 3, 8, 8), ["a", "b", "c"], ref.expand(3, -1))]
    rows = evaluate(Scoring(decode, parse_attacks("none"), fpr=0.2), batch)  # P[X >= 6] = 37/256 <= 0.2 < P[X >= 5]
    assert [r["matches"] for r in rows] == [8, 6, 3]
    assert [r["detected"] for r in rows] == [True, True, False]
    assert [r["p_value"] for r in rows] == pytest.approx([1 / 256, 37 / 256, 219 / 256], rel=1e-12)


def test_evaluate_is_reproducible_and_source_agnostic(setup):
    root, model = setup

    m, _, _ = load_export(model)
    g = torch.Generator().manual_seed(0)
    batches = [EvalBatch(torch.rand(3, 3, 32, 32, generator=g), [f"g{i}" for i in range(3)],
                         random_bits(3, 8, seed=2))]
    chains = parse_attacks("noise:0.1 randcrop:0.7")
    a = evaluate(Scoring(m.dec, chains, fpr=1e-3, seed=4), batches)
    b = evaluate(Scoring(m.dec, chains, fpr=1e-3, seed=4), batches)
    assert a == b and len(a) == 6 and {r["set"] for r in a} == {"fingerprinted"}


def test_bad_inputs_are_clear_errors(setup, tmp_path):
    root, model = setup
    with pytest.raises(GanprintError, match="exactly one"):
        _run(model, root / "fp", tmp_path, device="cpu")
    with pytest.raises(GanprintError, match="unknown attack"):
        _run(model, root / "fp", tmp_path, fingerprint="01010101", attacks=["jpgg"], device="cpu")
    with pytest.raises(GanprintError, match="8"):
        _run(model, root / "fp", tmp_path, fingerprint="0101", device="cpu")
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
    r = runner.invoke(main, ["metrics", "threshold", "--fingerprint-length", "100", "--fpr", "1e-6", "--keys",
                             "1000000", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["threshold"] == 85
    r = runner.invoke(main, ["metrics", "threshold", "--fingerprint-length", "8", "--fpr", "1e-6"])
    assert r.exit_code == 0 and "no threshold" in r.output
    r = runner.invoke(main, ["metrics", "pvalue", "--fingerprint-length", "100", "--bit-accuracy", "0.93", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["p_value"] == pytest.approx(1.4e-20, rel=0.05)
    r = runner.invoke(main, ["metrics", "pvalue", "--fingerprint-length", "100"])
    assert r.exit_code == 1 and "exactly one of --matches or --bit-accuracy" in r.output
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


# ------------------------------------------------------------------------------------------------------------
# `evaluate` over a generator and seeds, with model-level attacks (tiny 16-px generators, untrained)

G_CFG = dict(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
S_CFG = dict(resolution=16, fingerprint_length=12, z_dim=8, w_dim=16, mapping_layers=2, channel_base=128,
             channel_max=16, modulated_res=[4, 8, 16])
FP8 = "01101001"


@pytest.fixture(scope="module")
def gens(tmp_path_factory):
    """A stega model + plain stylegan2-G, and a scalable-G, its decoder and an issued (folded) model, all 16 px."""

    root = tmp_path_factory.mktemp("evalgen")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    G = Generator(GeneratorConfig(**G_CFG))
    S = ScalableGenerator(ScalableConfig(**S_CFG))
    with torch.no_grad():  # non-zero noise strengths and biases so that seeds and fingerprints matter
        for net in (G, S):
            for n, p in net.named_parameters():
                if "noise_strength" in n or n.endswith("bias"):
                    p.add_(0.3 * torch.randn(p.shape, generator=g))
    scfg = ScalableConfig(**S_CFG).to_dict()
    fp12 = parse_bits("011010011100", 12)
    p = {"stega": save_export(root / "stega16.safetensors", StegaModel(StegaConfig(16, 8)), "stega",
                              asdict(StegaConfig(16, 8))),
         "G": save_export(root / "G.safetensors", G, "stylegan2-G", generator_config_dict(GeneratorConfig(**G_CFG))),
         "S": save_export(root / "S.safetensors", S, "scalable-G", scfg),
         "E": save_export(root / "E.safetensors", ScalableDecoder(ScalableConfig(**S_CFG)), "scalable-decoder", scfg),
         "I": save_export(root / "I.safetensors", fold_fingerprint(S, fp12), "scalable-G-issued", scfg,
                          {FINGERPRINT_META: bits_to_hex(fp12)}),
         "fp12": fp12, "root": root}
    return p


def _rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_generator_rows_per_attack_strength_seed_and_deterministic(gens, tmp_path):
    kw = dict(generator=gens["S"], seeds="3,0-2", attacks=["noise:0.05,0.1"],
              model_attacks=["prune:0.5", "weight_noise:0,0.01"], batch_size=3, device="cpu")
    res = _run(gens["E"], None, tmp_path / "a", **kw)
    rows = _rows(tmp_path / "a")
    assert len({r["matches"] for r in rows if r["spec"] == "none:0"}) > 1  # per-seed fingerprints: scores vary
    keys = [(r["attack"], r["strength"], r["image"]) for r in rows]
    seeds = [f"seed{s:06d}.png" for s in (3, 0, 1, 2)]
    settings = [("none", 0.0), ("noise", 0.05), ("noise", 0.1), ("model:prune", 0.5), ("model:weight_noise", 0.0),
                ("model:weight_noise", 0.01)]
    assert sorted(keys) == sorted((a, s, i) for a, s in settings for i in seeds)  # one row each, nothing else
    for r in rows:
        assert ROW_KEYS <= set(r) and r["set"] == "fingerprinted"
    assert {r["spec"] for r in rows if r["attack"] == "model:prune"} == {"model:prune:0.5"}
    assert res["images"] == 4 and res["model_attacks"] == ["model:prune:0.5", "model:weight_noise:0",
                                                           "model:weight_noise:0.01"]
    assert res["reference"] == "per-seed fingerprints of the scalable-G"
    assert [s["attack"] for s in res["summary"]] == [a for a, _ in settings]
    out = tmp_path / "a"
    assert (out / "model_attacks.png").is_file() and (out / "bit_accuracy.png").is_file()
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## Model-level attacks" in md and "model_attacks.png" in md and "generated by" in md
    assert html.count("<table>") == 2 and "model:prune" in html and html.count("data:image/png;base64,") == 2
    _run(gens["E"], None, tmp_path / "b", **{**kw, "batch_size": 4})
    # Images are pure functions of their seeds, model attacks of (seed, spec): a second run, other batch size.
    # Image attacks draw per batch, so only the deterministic settings are compared across batch sizes.
    again = _rows(tmp_path / "b")
    same = lambda rs: sorted((r["spec"], r["image"], r["matches"]) for r in rs if not r["attack"].startswith("noise"))
    assert same(again) == same(rows)
    _run(gens["E"], None, tmp_path / "c", **kw)
    assert (tmp_path / "c" / "results.jsonl").read_bytes() == (out / "results.jsonl").read_bytes()


@pytest.mark.parametrize("kind", ["G", "S", "S-fixed"])
def test_generator_source_gives_the_images_of_ganprint_generate(gens, tmp_path, kind):
    seeds = [5, 0, 2]
    fp = {"G": FP8, "S": None, "S-fixed": "0x9a7"}[kind]
    path = gens[kind[0]]
    generate_images(path, seeds, tmp_path / "png", batch_size=2, device="cpu",
                    fingerprint=fp if kind == "S-fixed" else None)
    G, gkind, ref, res = load_generator(path, fp, 8 if kind == "G" else 12)
    before = {n: t.clone() for n, t in G.state_dict().items()}
    batches = list(GeneratorSource(G, gkind, seeds, ref, batch_size=3))
    assert len(batches) == 1 and batches[0].names == [f"seed{s:06d}.png" for s in seeds] and res == 16
    want = np.stack([np.asarray(Image.open(tmp_path / "png" / f"seed{s:06d}.png")) for s in seeds])
    got = (batches[0].images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, want)
    if kind != "G":  # the reference is the fingerprint each image was made with, as listed by `ganprint generate`
        listed = dict(line.split() for line in (tmp_path / "png" / "fingerprints.txt").read_text().splitlines())
        assert [bits_to_str(b) for b in batches[0].ref_bits] == [listed[f"seed{s:06d}.png"] for s in seeds]
        assert len({bits_to_str(b) for b in batches[0].ref_bits}) == (3 if kind == "S" else 1)
    assert all(torch.equal(before[n], t) for n, t in G.state_dict().items())  # float64 copy, G untouched


def test_model_attacks_at_neutral_strength_give_the_bits_of_no_attack(gens):
    dec, _, k, _ = load_decoder(gens["E"])
    G, kind, ref, _ = load_generator(gens["S"], None, k)
    before = {n: t.clone() for n, t in G.state_dict().items()}
    src = GeneratorSource(G, kind, [0, 1, 2, 3], ref, batch_size=2)
    base = evaluate(Scoring(dec, parse_attacks("none"), fpr=1e-3), src)
    settings = parse_model_attacks("weight_noise:0 prune:0 prune:0.9 weight_noise:0.5")
    rows = evaluate_model_attacks(Scoring(dec, parse_attacks("jpeg:50"), fpr=1e-3, seed=7), src, settings)
    assert len(rows) == 4 * 4
    key = lambda r: (r["image"], r["matches"], r["detected"])
    for spec in ("model:weight_noise:0", "model:prune:0"):
        assert [key(r) for r in rows if r["spec"] == spec] == [key(r) for r in base]
    # ... where a real perturbation changes the images and the decoded bits (so the comparison above can fail)
    for spec in ("model:prune:0.9", "model:weight_noise:0.5"):
        assert [key(r) for r in rows if r["spec"] == spec] != [key(r) for r in base], spec
    x0 = next(iter(src)).images
    assert torch.equal(next(iter(src.with_generator(settings[0](G)))).images, x0)
    assert not torch.equal(next(iter(src.with_generator(settings[2](G)))).images, x0)
    assert not torch.equal(next(iter(src.with_generator(settings[3](G, seed=1)))).images, x0)
    assert all(torch.equal(before[n], t) for n, t in G.state_dict().items())  # attacks never touch the input


def test_parse_model_attacks():
    std = parse_model_attacks("standard")
    assert {s.attack for s in std} == {"quantize", "weight_noise", "prune"}
    assert len(std) == sum(len(MODEL_ATTACK_SPECS[a].sweep) for a in ("quantize", "weight_noise", "prune"))
    assert parse_model_attacks(["none"]) == []
    got = parse_model_attacks(["quantize:decimals=2,1", "prune:0.5 model:prune:0.5"])
    assert [s.spec for s in got] == ["model:quantize:2", "model:quantize:1", "model:prune:0.5"]
    assert parse_model_attacks([s.spec for s in got]) == got  # specs parse back
    for bad, msg in (("prunee", "unknown model attack"), ("prune:2", "outside"), ("quantize:1.5", "whole number"),
                     ("prune:std=0.1", "no parameter"), ("prune:x", "not a number"), ("", "empty")):
        with pytest.raises(ModelAttackSpecError, match=msg):
            parse_model_attacks(bad)


def test_generator_bad_flag_combinations(gens, setup, tmp_path):
    root, model32 = setup
    st, G = gens["stega"], gens["G"]
    cases = [
        (dict(data=root / "fp", generator=G, seeds="0-1", fingerprint=FP8), "exactly one of `data`"),
        (dict(data=None, fingerprint=FP8), "exactly one of `data`"),
        (dict(data=None, generator=G, fingerprint=FP8), "`generator` needs `seeds`"),
        (dict(data=None, generator=G, seeds="0-1", embedded=root / "embedded.txt"), "`embedded` apply to"),
        (dict(data=root / "fp", fingerprint=FP8, seeds="0-1"), "`seeds` goes with `generator`"),
        (dict(data=root / "fp", fingerprint=FP8, model_attacks=["prune"]), "needs `generator`"),
        (dict(data=root / "fp"), "exactly one of `fingerprint`"),
        (dict(data=None, generator=G, seeds="0-1"), "pass `fingerprint` BITS"),
        (dict(data=None, generator=G, seeds="0-1", fingerprint=FP8, model_attacks=["prunee"]), "unknown model"),
        (dict(data=None, generator=G, seeds="1-0", fingerprint=FP8), "`seeds`"),
        (dict(data=None, generator=gens["S"], seeds="0-1"), "12-bit"),
    ]
    for kw, msg in cases:
        data = kw.pop("data")
        with pytest.raises(GanprintError, match=msg):
            _run(st, data, tmp_path / "o", device="cpu", **kw)
    with pytest.raises(GanprintError, match="16-px"):
        _run(model32, None, tmp_path / "o", generator=G, seeds="0", fingerprint=FP8, device="cpu")
    with pytest.raises(GanprintError, match="drop `fingerprint`"):
        _run(gens["E"], None, tmp_path / "o", generator=gens["I"], seeds="0", fingerprint="0" * 12)
    with pytest.raises(GanprintError, match="`clean` needs one reference"):
        _run(gens["E"], None, tmp_path / "o", generator=gens["S"], seeds="0", clean=root / "clean")
    assert _run(st, root / "fp", tmp_path / "ok", fingerprint=FP8, attacks="none",
                        model_attacks=["none"])["model_attacks"] == []
    r = CliRunner().invoke(main, ["evaluate", "--model", str(st), "--data", str(root / "fp"), "--generator", str(G),
                                  "--seeds", "0", "--fingerprint", FP8, "--outdir", str(tmp_path / "cli")])
    assert r.exit_code == 1 and "exactly one of --data" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["evaluate", "--model", str(st), "--data", str(root / "fp"), "--seeds", "0",
                                  "--fingerprint", FP8, "--outdir", str(tmp_path / "cli")])
    assert r.exit_code == 1 and "--seeds goes with --generator; to evaluate a folder (--data) drop --seeds" in r.output


def test_evaluate_spec_is_one_frozen_value(setup, tmp_path):
    root, model = setup
    spec = EvaluateSpec(model=model, data=root / "fp", outdir=tmp_path / "o", fingerprint=FP8, attacks="none")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.fpr = 0.5
    with pytest.raises(GanprintError, match="no field `n_keys`"):
        EvaluateSpec.of(spec, n_keys=2)
    with pytest.raises(GanprintError, match="`keys`"):
        EvaluateSpec.of(spec, keys=0)
    assert EvaluateSpec.of(spec, keys=3).keys == 3 and spec.keys == 1


def test_cli_evaluate_issued_generator_with_model_attacks(gens, tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["evaluate", "--model", str(gens["E"]), "--generator", str(gens["I"]),
                                  "--seeds", "0-2", "--attacks", "jpeg:50", "--model-attacks", "quantize:2",
                                  "--model-attacks", "weight_noise:0.01", "--outdir", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "report:" in r.output and (out / "report.html").is_file() and (out / "model_attacks.png").is_file()
    res = json.loads((out / "eval.json").read_text())
    assert res["reference"] == f"issued:{bits_to_str(gens['fp12'])}" and res["fingerprint_length"] == 12
    assert {(r["attack"], r["strength"]) for r in _rows(out)} == {("none", 0), ("jpeg", 50), ("model:quantize", 2),
                                                                  ("model:weight_noise", 0.01)}
    assert "model:quantize" in (out / "report.html").read_text()
    r = CliRunner().invoke(main, ["metrics", "attacks"])
    assert r.exit_code == 0 and "model suite standard: quantize weight_noise prune" in r.output


def test_keep_size_attacks_each_image_at_its_own_size(tiny_stega_model, image_folder, tmp_path):
    """Images of mixed sizes, attacked as they are (a shrink keeps the smaller copy), read as `detect` reads them."""
    import json

    from ganprint.artificial.detect import detect
    from ganprint.evaluation.evaluate import EvaluateSpec, run_evaluate

    res = run_evaluate(EvaluateSpec(model=tiny_stega_model, data=image_folder, fingerprint="0x5a", keep_size=True,
                                    attacks="shrink:0.5 jpeg:75+sharpen:1", outdir=tmp_path / "ev"))
    assert res["keep_size"] and [r["n"] for r in res["summary"]] == [6, 6, 6]
    rows = [json.loads(x) for x in (tmp_path / "ev" / "results.jsonl").read_text().splitlines()]
    det = detect(tiny_stega_model, image_folder, tmp_path / "det", fingerprint="0x5a", device="cpu", fpr=0.01)
    stem = lambda name: name.rsplit("/", 1)[-1].rsplit(".", 1)[0]  # noqa: E731 - detect names files, evaluate paths
    seen = {stem(json.loads(x)["name"]): json.loads(x)["matches"]
            for x in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()}
    clean = {stem(r["image"]): r["matches"] for r in rows if r["spec"] == "none:0"}
    assert det["with_reference"] == 6 and set(clean) == set(seen)
    assert np.mean([abs(clean[k] - seen[k]) for k in seen]) <= 1  # torch's view vs Pillow's: the same bits, nearly
