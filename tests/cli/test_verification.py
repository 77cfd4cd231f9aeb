"""`ganprint check`: rows on stdout (JSON Lines with --json), exit 0 when every image is detected, 1 when one is not,
2 on any error; `-` reads standard input; with an ONNX graph it runs where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganprint.cli import main
from ganprint.core.images import read_image
from ganprint.verification.detector import Detector

ROOT = Path(__file__).resolve().parents[2]
FPR = "0.005"  # with 8 bits: detected only when all 8 match


@pytest.fixture(scope="module")
def two_images(sample_folder, reactive_stega_model) -> dict:
    """Two images the decoder reads different bits from: the first one "carries" the fingerprint (its own bits),
    the second one does not."""
    det = Detector.from_file(reactive_stega_model, precision="fp32")
    files = sorted(sample_folder.glob("*.png"))
    bits = [r["bits"] for r in det.detect([read_image(f) for f in files])]
    other = next(i for i, b in enumerate(bits) if b != bits[0])
    return {"marked": files[0], "clean": files[other], "fingerprint": bits[0]}


def _check(args: list, **kw):
    return CliRunner().invoke(main, ["check", *map(str, args)], **kw)


def test_json_rows_and_exit_statuses(two_images, reactive_stega_model):
    m, c, fp = two_images["marked"], two_images["clean"], two_images["fingerprint"]
    common = ["--model", reactive_stega_model, "--fingerprint", fp, "--fpr", FPR, "--precision", "fp32"]
    res = _check([m, *common, "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row == {"image": str(m), "bits": fp, "bit_accuracy": 1.0, "matches": 8, "p_value": 1 / 256,
                   "log10_p": pytest.approx(-2.40824, abs=1e-5), "detected": True}
    res = _check([c, *common, "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["detected"] is False
    res = _check([m, c, m, *common, "--json"])
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.exit_code == 1 and [r["image"] for r in rows] == [str(m), str(c), str(m)]
    assert [r["detected"] for r in rows] == [True, False, True]
    text = _check([m, c, *common])
    assert text.stdout.splitlines() == [f"{m}: detected, 8/8 bits match, p = 0.00391",
                                        f"{c}: not detected, {rows[1]['matches']}/8 bits match, "
                                        f"p = {rows[1]['p_value']:.3g}"]


def test_standard_input(two_images, reactive_stega_model):
    common = ["--model", reactive_stega_model, "--fingerprint", two_images["fingerprint"], "--fpr", FPR, "--json"]
    res = _check(["-", *common], input=two_images["marked"].read_bytes())
    assert res.exit_code == 0 and json.loads(res.stdout)["image"] == "-", res.output
    res = _check(["-", two_images["clean"], *common], input=two_images["marked"].read_bytes())
    assert res.exit_code == 1 and len(res.stdout.splitlines()) == 2
    res = _check(["-", "-", *common], input=b"")
    assert res.exit_code == 2 and "IMAGES names - (standard input) more than once" in res.output


def test_errors_exit_2_and_name_flags(tmp_path, two_images, reactive_stega_model):
    m, fp = two_images["marked"], two_images["fingerprint"]
    model = ["--model", reactive_stega_model]
    cases = [
        ([m, *model], "give --fingerprint (detection) or --registry (attribution)"),  # usage
        ([m, *model, "--fingerprint", fp, "--registry", tmp_path / "r.sqlite"], "either --fingerprint or --registry"),
        ([m, *model, "--fingerprint", "0x3"], "fewer than the model's 8"),
        ([m, *model, "--fingerprint", fp, "--fpr", "1e-9"], "--fpr 1e-09 is too small for 8 bits"),
        ([m, "--model", tmp_path / "none.safetensors", "--fingerprint", fp], "--model"),
        ([tmp_path / "missing.png", *model, "--fingerprint", fp, "--fpr", FPR], "missing.png"),
        ([m, *model, "--fingerprint", fp, "--fpr", "2"], "--fpr"),  # click's own type check
    ]
    for args, message in cases:
        res = _check(args)
        assert res.exit_code == 2 and message in res.output, (args, res.output)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    res = _check([m, tmp_path / "bad.png", *model, "--fingerprint", fp, "--fpr", FPR, "--json"])
    assert res.exit_code == 2 and "bad.png is not an image file" in res.output
    assert json.loads(res.stdout.splitlines()[0])["image"] == str(m)  # the rows before it were printed


def test_help_says_what_the_exit_statuses_mean():
    res = CliRunner().invoke(main, ["check", "--help"], terminal_width=120)
    assert res.exit_code == 0
    for line in ("0  every image is detected", "1  at least one image is not", "2  an error"):
        assert line in res.output


def test_an_onnx_graph_is_checked_where_torch_cannot_be_imported(tmp_path, two_images, reactive_onnx):
    block = tmp_path / "no-torch" / "torch"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text('raise ImportError("no torch on this machine (a test stand-in)")\n')
    env = {"PYTHONPATH": f"{block.parent}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "ganprint", "check", str(two_images["marked"]), str(two_images["clean"]),
            "--model", str(reactive_onnx), "--fingerprint", two_images["fingerprint"], "--fpr", FPR, "--json"]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert [json.loads(line)["detected"] for line in res.stdout.splitlines()] == [True, False]
    res = subprocess.run(argv[:5] + argv[6:], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_attribution_with_a_registry(tmp_path, sample_folder):
    """An image whose decoded bits were issued is attributed (exit 0, the holder named); one whose bits were not is
    `unknown` (exit 1)."""
    import torch

    from ganprint.core.artifacts import save_export
    from ganprint.nets.scalable import ScalableConfig, ScalableDecoder
    from ganprint.registry.store import Registry

    torch.manual_seed(5)
    cfg = ScalableConfig(resolution=16, fingerprint_length=24, z_dim=8, w_dim=16, mapping_layers=1,
                         channel_base=128, channel_max=16, modulated_res=[4, 8, 16])
    dec = save_export(tmp_path / "dec.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    files = sorted(sample_folder.glob("*.png"))
    bits = [r["bits"] for r in Detector.from_file(dec).detect([read_image(f) for f in files])]
    # an image 8-16 bits away from the first: far from both issued fingerprints (the first's bits and their inverse)
    other = next(i for i, b in enumerate(bits) if 8 <= sum(x != y for x, y in zip(b, bits[0])) <= 16)
    reg = Registry(tmp_path / "reg.sqlite")
    fp = reg.issue(bits[0], who="ann").fp_id
    reg.issue("".join("1" if x == "0" else "0" for x in bits[0]), who="bob")
    common = ["--model", dec, "--registry", tmp_path / "reg.sqlite", "--fpr", "0.01"]
    res = _check([files[0], *common, "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["image"] == str(files[0]) and row["attributed"] == fp and row["who"] == "ann" and row["matches"] == 24
    res = _check([files[0], files[other], *common])
    assert res.exit_code == 1
    assert res.stdout.splitlines()[0].startswith(f"{files[0]}: attributed to fingerprint {fp} (ann), 24/24 bits")
    assert f"{files[other]}: unknown (nearest fingerprint" in res.stdout


def test_photos_embedded_as_tiles_are_checked_as_tiles(tmp_path, trained_stega16):
    """Photos of mixed sizes fingerprinted by `embed --keep-size --tiles 2` with a trained model: `check --tiles 2`
    gives the rows `detect --tiles 2` wrote (the same bits, p-values and decisions), with PyTorch, with the ONNX graph
    and with ONNX Runtime on the safetensors export; they are detected and the clean photos are not."""
    from PIL import Image

    model, fp, fpr = trained_stega16["model"], "0xa5c3", "1e-3"  # 16 bits: detected with >= 15 matching
    src = tmp_path / "photos"
    src.mkdir()
    for i, p in enumerate(sorted((trained_stega16["root"] / "heldout").glob("*.png"))[:4]):
        Image.open(p).convert("RGB").resize([(64, 48), (40, 40), (50, 72), (32, 32)][i], Image.BICUBIC).save(
            src / f"p{i}.png")
    cpu = ["--device", "cpu", "--precision", "fp32"]
    emb = tmp_path / "emb" / "fingerprinted_images"
    res = CliRunner().invoke(main, ["embed", "--model", str(model), "--data", str(src), "--outdir",
                                    str(tmp_path / "emb"), "--identical", "--fingerprint", fp, "--keep-size",
                                    "--tiles", "2", *cpu])
    assert res.exit_code == 0, res.output
    marked = sorted(emb.glob("*.png"))
    assert [Image.open(f).size for f in marked] == [Image.open(f).size for f in sorted(src.glob("*.png"))]
    res = CliRunner().invoke(main, ["detect", "--model", str(model), "--data", str(emb), "--outdir",
                                    str(tmp_path / "det"), "--fingerprint", fp, "--fpr", fpr, "--tiles", "2", *cpu])
    assert res.exit_code == 0, res.output
    detections = (tmp_path / "det" / "detections.jsonl").read_text()
    want = {r.pop("name"): r for r in map(json.loads, detections.splitlines())}
    assert all(r["detected"] for r in want.values()) and len(want) == 4
    res = CliRunner().invoke(main, ["detect", "--model", str(model), "--data", str(emb), "--outdir",
                                    str(tmp_path / "det-onnx"), "--fingerprint", fp, "--fpr", fpr, "--tiles", "2",
                                    "--runtime", "onnx", *cpu])
    assert res.exit_code == 0, res.output  # detect reads tiles with ONNX Runtime too, the same rows
    assert (tmp_path / "det-onnx" / "detections.jsonl").read_text() == detections
    r = CliRunner().invoke(main, ["export", "--model", str(model), "--format", "onnx", str(tmp_path / "dec.onnx")])
    assert r.exit_code == 0, r.output
    common = ["--fingerprint", fp, "--fpr", fpr, "--tiles", "2", "--json"]
    for how in (["--model", model, "--precision", "fp32"], ["--model", tmp_path / "dec.onnx"],
                ["--model", model, "--runtime", "onnx"]):
        res = _check([*marked, *how, *common])
        assert res.exit_code == 0, (how, res.output)
        rows = [json.loads(line) for line in res.stdout.splitlines()]
        assert rows == [{"image": str(f), **want[f.name]} for f in marked], how
    res = _check([*marked, "--model", model, "--fingerprint", fp, "--fpr", fpr, "--json"])  # read without the tiles
    assert [json.loads(line)["bits"] for line in res.stdout.splitlines()] != [want[f.name]["bits"] for f in marked]
    res = _check([*sorted(src.glob("*.png")), "--model", tmp_path / "dec.onnx", *common])
    assert res.exit_code == 1 and not any(json.loads(line)["detected"] for line in res.stdout.splitlines())


def test_bad_tiles_are_refused_naming_the_flag(tmp_path, two_images, reactive_stega_model):
    from ganprint.core.artifacts import save_export
    from ganprint.nets.scalable import ScalableConfig, ScalableDecoder

    common = [two_images["marked"], "--model", reactive_stega_model, "--fingerprint", two_images["fingerprint"]]
    for bad in ("0", "9", "1.5", "two"):
        res = _check([*common, "--tiles", bad])
        assert res.exit_code == 2 and "--tiles" in res.output, (bad, res.output)
    cfg = ScalableConfig(resolution=16, fingerprint_length=24, z_dim=8, w_dim=16, mapping_layers=1,
                         channel_base=128, channel_max=16, modulated_res=[4, 8, 16])
    dec = save_export(tmp_path / "dec.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    res = _check([two_images["marked"], "--model", dec, "--fingerprint", "0x" + "0" * 6, "--tiles", "2"])
    assert res.exit_code == 2 and "--tiles reads stega decoders" in res.output, res.output
