"""detect: preprocessing, statistics, references, argument errors, output checks, the CLI."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner

from ganprint.artificial.detect import detect
from ganprint.artificial.embed import embed
from ganprint.cli import main
from ganprint.core.errors import GanprintError


def test_detect_preprocesses_and_works_without_reference(tiny_stega_decoder, image_folder, tmp_path):
    d = detect(tiny_stega_decoder, image_folder, tmp_path / "det", device="cpu")  # mixed sizes, jpg and png
    assert d["images"] == 6 and d["with_reference"] == 0 and d["mean_bit_accuracy"] is None
    rows = [json.loads(x) for x in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    assert all(set(r) == {"name", "bits"} for r in rows) and rows[3]["name"] == "sub/img01.jpg"
    with pytest.raises(GanprintError, match="decoder-only"):
        embed(tiny_stega_decoder, image_folder, tmp_path / "e", device="cpu")


def test_clean_images_detected_at_most_at_nominal_rate(tiny_stega_model, sample_folder, tmp_path):
    # Random references for clean images: matches ~ Bin(8, 1/2), so detection at FPR 0.05 needs >= 7 matches
    # (P = 9/256). 24 images: expect ~0.8 detections; > 4 would have probability < 0.01.
    ref = tmp_path / "ref.txt"
    g = torch.Generator().manual_seed(7)
    ref.write_text("".join(f"{p.name} {''.join(str(int(b)) for b in torch.randint(0, 2, (8,), generator=g))}\n"
                           for p in sorted(sample_folder.glob("*.png"))))
    d = detect(tiny_stega_model, sample_folder, tmp_path / "det", embedded=ref, fpr=0.05, device="cpu")
    assert d["with_reference"] == 24 and d["match_threshold"] == 7
    assert d["detected"] <= 4


def test_argument_errors(tiny_stega_model, image_folder, tmp_path):
    with pytest.raises(GanprintError, match="`resolution` 64 does not match the model's 32"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", resolution=64, device="cpu")
    with pytest.raises(GanprintError, match="`celeba`"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", celeba=True, device="cpu")
    with pytest.raises(GanprintError, match="either"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", fingerprint="0x5a", embedded="x", device="cpu")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png 0101\n")
    with pytest.raises(GanprintError, match="bad.txt:1"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", embedded=bad, device="cpu")


def test_cli_embed_then_detect(tiny_stega_model, image_folder, tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["embed", "--model", str(tiny_stega_model), "--data", str(image_folder), "--outdir",
                          str(tmp_path / "e"), "--identical", "--fingerprint", "10101010", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["detect", "--model", str(tiny_stega_model), "--data", str(tmp_path / "e" /
                          "fingerprinted_images"), "--outdir", str(tmp_path / "d"), "--fingerprint", "10101010",
                          "--fpr", "0.01", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "d" / "summary.json").read_text())["with_reference"] == 6
    res = r.invoke(main, ["detect", "--model", str(tiny_stega_model), "--data", str(image_folder), "--outdir",
                          str(tmp_path / "d2"), "--resolution", "64"])
    assert res.exit_code == 1 and "Traceback" not in res.output and "--resolution 64" in res.output
    for cmd in ("embed", "detect"):
        res = r.invoke(main, [cmd, "--help"])
        assert res.exit_code == 0 and "Examples:" in res.output


def test_fingerprint_accepts_tensor_and_hex(tiny_stega_model, image_folder, tmp_path):
    bits = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0.0])
    d1 = detect(tiny_stega_model, image_folder, tmp_path / "a", fingerprint=bits, fpr=0.01, device="cpu")
    d2 = detect(tiny_stega_model, image_folder, tmp_path / "b", fingerprint="0x5a", fpr=0.01,
                device="cpu")
    assert d1["mean_bit_accuracy"] == d2["mean_bit_accuracy"] and d1["with_reference"] == 6


def test_fpr_that_no_image_could_reach_is_refused(tiny_stega_model, image_folder, tmp_path):
    with pytest.raises(GanprintError, match=r"`fpr` 1e-06 is too small for 8 bits.*smallest usable `fpr` is 0.0039"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", fingerprint="0x5a", device="cpu")
    assert not (tmp_path / "d" / "summary.json").exists()
    d = detect(tiny_stega_model, image_folder, tmp_path / "d", fingerprint="0x5a", fpr=2 ** -8, device="cpu")
    assert d["match_threshold"] == 8
    d = detect(tiny_stega_model, image_folder, tmp_path / "n", device="cpu")  # no reference: no decision to make
    assert d["with_reference"] == 0


def test_cli_refuses_broken_inputs_in_one_line(tiny_stega_model, image_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    from ganprint.core.artifacts import read_metadata

    tensors = load_file(str(tiny_stega_model))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    nan = tmp_path / "nan.safetensors"
    save_file({**tensors, name: torch.full_like(tensors[name], float("nan"))}, str(nan),
              metadata=read_metadata(tiny_stega_model))
    r = CliRunner()
    base = ["--data", str(image_folder), "--device", "cpu"]
    cases = [
        (["embed", "--model", str(nan), "--outdir", str(tmp_path / "e")], "nan.safetensors holds weights that are NaN"),
        (["detect", "--model", str(tiny_stega_model), "--outdir", str(tmp_path / "d"), "--fingerprint", "0x15a"],
         "more than the 8 bits the model reads"),
        (["detect", "--model", str(tiny_stega_model), "--outdir", str(tmp_path / "d"), "--fingerprint", "0x5a",
          "--fpr", "1e-300"], "too small for 8 bits"),
    ]
    for argv, message in cases:
        res = r.invoke(main, argv[:1] + base + argv[1:])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_embedded_list_that_is_a_fifo_is_refused(tiny_stega_model, image_folder, tmp_path):
    os.mkfifo(tmp_path / "list.txt")
    with pytest.raises(GanprintError, match="list.txt is not a regular file"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", embedded=tmp_path / "list.txt", fpr=0.01, device="cpu")


def test_a_spec_and_keyword_arguments_are_the_same_call(tiny_stega_model, image_folder, tmp_path):
    from ganprint.artificial.detect import DetectSpec

    spec = DetectSpec(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "a", fingerprint="0x5a", fpr=0.01,
                      device="cpu")
    d1 = detect(spec)
    d2 = detect(tiny_stega_model, image_folder, tmp_path / "b", fingerprint="0x5a", fpr=0.01, device="cpu")
    d3 = detect(spec=spec, outdir=tmp_path / "c")
    rows = {n: (tmp_path / n / "detections.jsonl").read_text() for n in "abc"}
    assert rows["a"] == rows["b"] == rows["c"] and d1["detected"] == d2["detected"] == d3["detected"]


def test_the_spec_refuses_bad_values_by_field_name(tiny_stega_model, image_folder, tmp_path):
    from ganprint.artificial.detect import DetectSpec
    from ganprint.core.specs import SpecError

    base = dict(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "d")
    cases = [({"fpr": 0.0}, "`fpr` must be in"), ({"runtime": "tf"}, "`runtime` must be torch or onnx"),
             ({"batch_size": 0}, "`batch_size`"), ({"workers": -1}, "`workers`"),
             ({"precision": "fp16"}, "`precision`"), ({"fingerprint": "0x5a", "embedded": "e.txt"}, "either"),
             ({"runtime": "onnx", "scale_search": "auto"}, "`scale_search` runs with `runtime` torch only")]
    for extra, message in cases:
        with pytest.raises(GanprintError, match=message):
            DetectSpec(**base, **extra)
    with pytest.raises(SpecError, match="`outdir`"):
        DetectSpec(model=tiny_stega_model, data=image_folder)
    with pytest.raises(SpecError, match="no field `num_workers`"):
        detect(**base, num_workers=0)
    assert not (tmp_path / "d" / "summary.json").exists()


def test_the_cli_names_flags_and_takes_the_old_workers_flag(tiny_stega_model, image_folder, tmp_path):
    r = CliRunner()
    base = ["detect", "--model", str(tiny_stega_model), "--data", str(image_folder), "--device", "cpu"]
    res = r.invoke(main, [*base, "--outdir", str(tmp_path / "d"), "--num-workers", "0"])
    assert res.exit_code == 0 and "--num-workers is the old name of --workers" in res.output, res.output
    res = r.invoke(main, [*base, "--outdir", str(tmp_path / "e"), "--fingerprint", "0x5a", "--fpr", "1e-300"])
    assert res.exit_code == 1 and "--fpr 1e-300 is too small" in res.output and "`" not in res.output, res.output
    res = r.invoke(main, [*base, "--outdir", str(tmp_path / "d"), "--fingerprint", "0x5a", "--fpr", "0.01"])
    assert res.exit_code == 1 and "--fpr: 1e-06 -> 0.01" in res.output and "`fpr`" not in res.output, res.output


def test_an_embedded_list_that_names_none_of_the_images_is_refused(tiny_stega_model, image_folder, tmp_path):
    # the README once detected generated seedNNNNNN.png images against the training set's list: no row matched,
    # no decision was made, and the command still exited 0
    ref = tmp_path / "embedded_fingerprints.txt"
    ref.write_text("".join(f"train{i:04d}.png 01011010\n" for i in range(3)))
    with pytest.raises(GanprintError, match="`embedded` .* names none of the 6 images of `data`.*`fingerprint`"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", embedded=ref, fpr=0.01, device="cpu")
    assert not (tmp_path / "d" / "summary.json").exists()
    names = sorted(p.relative_to(image_folder).as_posix() for p in image_folder.rglob("*.png"))
    ref.write_text(f"{names[0]} 01011010\n")  # one name matches: a decision for that image, the others none
    assert detect(tiny_stega_model, image_folder, tmp_path / "e", embedded=ref, fpr=0.01,
                  device="cpu")["with_reference"] == 1
