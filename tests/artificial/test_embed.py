"""api.embed / api.detect and their CLI: outputs and formats, resume, naming, bad files, statistics."""

from __future__ import annotations

import hashlib
import json
import math
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

from ganprint.artificial import embed as api
from ganprint.cli import main
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.images import BadImageError, read_image, to_tensor01
from ganprint.core.stats import match_threshold

LINE = re.compile(r"^(\S.*) ([01]{8})$")
ROW_KEYS = {"name", "bits", "bit_accuracy", "matches", "p_value", "log10_p", "detected"}


def _digest(root):
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _lines(path):
    lines = path.read_text().splitlines()
    for line in lines:
        assert LINE.match(line), line
    return dict(line.rsplit(" ", 1) for line in lines)


def test_output_names_rule():
    assert api.output_names(["a.jpg", "b.tar.jpg", "sub/c.PNG"]) == ["a.png", "b.tar.png", "sub/c.png"]
    assert api.output_names(["a.jpg", "a.png", "b.png"]) == ["a.jpg.png", "a.png.png", "b.png"]
    assert api.output_names(["X.jpg", "x.PNG"]) == ["X.jpg.png", "x.PNG.png"]  # case-insensitive filesystems
    assert api.output_names(["X.png", "x.PNG"]) == ["X.png~0.png", "x.PNG~1.png"]  # still clashing: add the index
    tricky = api.output_names(["a.jpg", "a.jpg.png", "a.png"])
    assert len({n.lower() for n in tricky}) == 3 and all(n.endswith(".png") for n in tricky)
    assert api.output_names(["sub/a.jpg", "a.jpg"]) == ["sub/a.png", "a.png"]  # other folders never clash


def test_embed_per_image(tiny_stega_model, image_folder, tmp_path):
    before = _digest(image_folder)
    out = tmp_path / "out"
    s = api.embed(tiny_stega_model, image_folder, out, device="cpu", check=True, precision="fp32")
    assert _digest(image_folder) == before  # inputs untouched
    assert s["images"] == s["fingerprinted"] == s["new"] == 6 and s["resumed"] == 0 and s["skipped"] == []
    emb = _lines(out / "embedded_fingerprints.txt")
    names = ["img00.png", "img02.png", "img04.png", "sub/img01.png", "sub/img03.png", "sub/img05.png"]
    assert list(emb) == sorted(names)
    for i, name in enumerate(names):
        img = read_image(out / "fingerprinted_images" / name)
        assert img.shape == (32, 32, 3)
        assert emb[name] == "".join(str(int(b)) for b in api.per_image_bits(42, i, 8))  # pure function of (seed, i)
    assert len(set(emb.values())) > 1
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["config"]["identical"] is False and man["config"]["seed"] == 42
    assert man["config"]["model_sha256"] == hashlib.sha256(tiny_stega_model.read_bytes()).hexdigest()
    assert man["counts"]["fingerprinted"] == 6 and man["ganprint_version"]
    dec, _, _ = load_export(tiny_stega_model)
    with torch.no_grad():  # `check` reads the written PNGs back: the decoder's own reading of those files
        read = [(dec.dec(to_tensor01(read_image(out / "fingerprinted_images" / n))[None])[0] > 0).int() for n in names]
    assert s["check_bit_accuracy"] == pytest.approx(np.mean([
        sum(str(int(b)) == e for b, e in zip(r, emb[n])) / 8 for r, n in zip(read, names)]), abs=1e-6)
    assert not list(out.rglob("*.tmp"))

    # Detect with the embedded list: same preprocessing, schema, statistics.
    d = api.detect(tiny_stega_model, out / "fingerprinted_images", tmp_path / "det", embedded=out /
                   "embedded_fingerprints.txt", fpr=0.01, device="cpu", precision="fp32")
    rows = [json.loads(x) for x in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == sorted(names) and all(set(r) == ROW_KEYS for r in rows)
    model, _, _ = load_export(tiny_stega_model)
    x = torch.stack([to_tensor01(read_image(out / "fingerprinted_images" / r["name"])) for r in rows])
    with torch.no_grad():
        direct = (model.dec(x) > 0).int().tolist()
    thr = match_threshold(8, 0.01)
    for r, bits in zip(rows, direct):
        assert r["bits"] == "".join(map(str, bits))
        m = sum(a == b for a, b in zip(r["bits"], emb[r["name"]]))
        assert r["matches"] == m and r["bit_accuracy"] == m / 8 and r["detected"] == (m >= thr)
        assert r["p_value"] == pytest.approx(stats.binomtest(m, 8, 0.5, alternative="greater").pvalue, rel=1e-9)
        assert r["log10_p"] == pytest.approx(math.log10(r["p_value"]), abs=1e-9)
    assert d["mean_bit_accuracy"] == pytest.approx(np.mean([r["bit_accuracy"] for r in rows]))
    assert d["mean_bit_accuracy"] == pytest.approx(s["check_bit_accuracy"], abs=1e-6)
    assert _lines(tmp_path / "det" / "detected_fingerprints.txt") == {r["name"]: r["bits"] for r in rows}
    assert json.loads((tmp_path / "det" / "summary.json").read_text())["images"] == 6


def test_bf16_precision_stays_within_two_levels_of_fp32(tiny_stega_model, image_folder, tmp_path):
    runs = {p: api.embed(tiny_stega_model, image_folder, tmp_path / p, device="cpu", precision=p) for p in ("fp32", "bf16")}
    assert runs["bf16"]["precision"] == "bf16" and runs["fp32"]["precision"] == "fp32"
    assert json.loads((tmp_path / "bf16" / "manifest.json").read_text())["precision"] == "bf16"
    assert (tmp_path / "fp32" / "embedded_fingerprints.txt").read_text() == \
        (tmp_path / "bf16" / "embedded_fingerprints.txt").read_text()  # same bits; only the arithmetic differs
    for name in _lines(tmp_path / "fp32" / "embedded_fingerprints.txt"):
        a, b = (read_image(tmp_path / p / "fingerprinted_images" / name).astype(int) for p in ("fp32", "bf16"))
        assert np.abs(a - b).max() <= 2
    # Decoding: bf16 logits are close to fp32 ones, so every bit with a clear margin reads the same.
    model, _, _ = load_export(tiny_stega_model)
    x = torch.stack([to_tensor01(read_image(p)) for p in sorted((tmp_path / "fp32" / "fingerprinted_images").rglob("*.png"))])
    with torch.no_grad():
        ref = model.dec(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.dec(x).float()
    clear = ref.abs() > 0.05 * ref.abs().max()
    assert torch.equal((ref > 0)[clear], (low > 0)[clear])
    with pytest.raises(GanprintError, match="--precision"):
        api.detect(tiny_stega_model, image_folder, tmp_path / "d", device="cpu", precision="fp16")


def test_bf16_weights_compute_what_bf16_autocast_computes(tiny_stega_model):
    """embed/detect cast the weights to bf16 instead of running under autocast: the same outputs, bit for bit."""
    model, _, _ = load_export(tiny_stega_model)
    r, k = model.cfg.resolution, model.cfg.fingerprint_length
    torch.manual_seed(0)
    x, bits = torch.rand(4, 3, r, r), torch.randint(0, 2, (4, k)).float()
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_img, ref_logits = model.enc(bits, x), model.dec(x).float()
        dev = torch.device("cpu")
        enc, dec = api._prepare(model.enc, dev, "bf16"), api._prepare(model.dec, dev, "bf16")
        xb = api._to_float01(x.mul(255).round().to(torch.uint8), dev, torch.bfloat16)
        assert xb.dtype == torch.bfloat16
        got_img, got_logits = enc(bits.bfloat16(), x.bfloat16()), dec(x.bfloat16()).float()
    assert torch.equal(got_img, ref_img) and torch.equal(got_logits, ref_logits)


def test_embed_identical(tiny_stega_model, image_folder, tmp_path):
    s = api.embed(tiny_stega_model, image_folder, tmp_path / "a", identical=True, device="cpu")
    torch.manual_seed(42)  # the original: torch.manual_seed(seed); zeros(1, K).random_(0, 2)
    expected = "".join(str(int(b)) for b in torch.zeros(1, 8).random_(0, 2)[0])
    assert s["fingerprint"] == expected
    assert set(_lines(tmp_path / "a" / "embedded_fingerprints.txt").values()) == {expected}
    s2 = api.embed(tiny_stega_model, image_folder, tmp_path / "b", identical=True, fingerprint="0x5a", device="cpu")
    assert s2["fingerprint"] == "01011010"
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["config"]["fingerprint"] == "01011010"
    with pytest.raises(GanprintError, match="--identical"):
        api.embed(tiny_stega_model, image_folder, tmp_path / "c", fingerprint="0x5a", device="cpu")
    with pytest.raises(GanprintError, match="bits"):
        api.embed(tiny_stega_model, image_folder, tmp_path / "d", identical=True, fingerprint="0101", device="cpu")


def test_resume_skips_finished_work_and_refuses_other_configs(tiny_stega_model, image_folder, tmp_path):
    out = tmp_path / "out"
    api.embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    first = _digest(out / "fingerprinted_images")
    s = api.embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    assert s["new"] == 0 and s["resumed"] == 6
    assert _digest(out / "fingerprinted_images") == first  # nothing rewritten
    (out / "fingerprinted_images" / "img02.png").unlink()
    s = api.embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    assert s["new"] == 1 and s["resumed"] == 5 and s["fingerprinted"] == 6
    assert _digest(out / "fingerprinted_images")["img02.png"][0] == first["img02.png"][0]  # same pixels again
    with pytest.raises(GanprintError, match="seed"):
        api.embed(tiny_stega_model, image_folder, out, seed=1, device="cpu")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(GanprintError, match="new --outdir"):
        api.embed(tiny_stega_model, image_folder, foreign, device="cpu")
    with pytest.raises(GanprintError, match="inside --data"):
        api.embed(tiny_stega_model, image_folder, image_folder / "out", device="cpu")


def test_name_collisions_survive(tiny_stega_model, image_folder, tmp_path):
    (image_folder / "img00.jpg").write_bytes((image_folder / "sub" / "img01.jpg").read_bytes())
    out = tmp_path / "out"
    api.embed(tiny_stega_model, image_folder, out, device="cpu")
    emb = _lines(out / "embedded_fingerprints.txt")
    assert "img00.jpg.png" in emb and "img00.png.png" in emb and "img00.png" not in emb
    assert (out / "fingerprinted_images" / "img00.jpg.png").is_file()
    assert len(emb) == 7


def test_bad_files_stop_or_are_skipped(tiny_stega_model, image_folder, tmp_path):
    (image_folder / "sub" / "broken.png").write_text("not an image")
    with pytest.raises(BadImageError, match="broken.png.*--skip-bad"):
        api.embed(tiny_stega_model, image_folder, tmp_path / "strict", device="cpu")
    kept = _lines(tmp_path / "strict" / "embedded_fingerprints.txt")  # finished work is kept
    assert len(kept) == 6 and json.loads((tmp_path / "strict" / "manifest.json").read_text())["status"] == "failed"
    s = api.embed(tiny_stega_model, image_folder, tmp_path / "lenient", device="cpu", skip_bad=True)
    assert [x["file"] for x in s["skipped"]] == ["sub/broken.png"] and s["fingerprinted"] == 6
    man = json.loads((tmp_path / "lenient" / "manifest.json").read_text())
    assert man["skipped"][0]["file"] == "sub/broken.png" and "not an image" in man["skipped"][0]["error"]
    with pytest.raises(BadImageError, match="broken.png"):
        api.detect(tiny_stega_model, image_folder, tmp_path / "det", device="cpu")
    d = api.detect(tiny_stega_model, image_folder, tmp_path / "det", device="cpu", skip_bad=True)
    assert d["images"] == 6 and d["skipped"][0]["file"] == "sub/broken.png"


def test_detect_preprocesses_and_works_without_reference(tiny_stega_decoder, image_folder, tmp_path):
    d = api.detect(tiny_stega_decoder, image_folder, tmp_path / "det", device="cpu")  # mixed sizes, jpg and png
    assert d["images"] == 6 and d["with_reference"] == 0 and d["mean_bit_accuracy"] is None
    rows = [json.loads(x) for x in (tmp_path / "det" / "detections.jsonl").read_text().splitlines()]
    assert all(set(r) == {"name", "bits"} for r in rows) and rows[3]["name"] == "sub/img01.jpg"
    with pytest.raises(GanprintError, match="decoder-only"):
        api.embed(tiny_stega_decoder, image_folder, tmp_path / "e", device="cpu")


def test_clean_images_detected_at_most_at_nominal_rate(tiny_stega_model, sample_folder, tmp_path):
    # Random references for clean images: matches ~ Bin(8, 1/2), so detection at FPR 0.05 needs >= 7 matches
    # (P = 9/256). 24 images: expect ~0.8 detections; > 4 would have probability < 0.01.
    ref = tmp_path / "ref.txt"
    g = torch.Generator().manual_seed(7)
    ref.write_text("".join(f"{p.name} {''.join(str(int(b)) for b in torch.randint(0, 2, (8,), generator=g))}\n"
                           for p in sorted(sample_folder.glob("*.png"))))
    d = api.detect(tiny_stega_model, sample_folder, tmp_path / "det", embedded=ref, fpr=0.05, device="cpu")
    assert d["with_reference"] == 24 and d["match_threshold"] == 7
    assert d["detected"] <= 4


def test_argument_errors(tiny_stega_model, image_folder, tmp_path):
    with pytest.raises(GanprintError, match="--resolution 64 does not match the model's 32"):
        api.detect(tiny_stega_model, image_folder, tmp_path / "d", resolution=64, device="cpu")
    with pytest.raises(GanprintError, match="--celeba"):
        api.detect(tiny_stega_model, image_folder, tmp_path / "d", celeba=True, device="cpu")
    with pytest.raises(GanprintError, match="either"):
        api.detect(tiny_stega_model, image_folder, tmp_path / "d", fingerprint="0x5a", embedded="x", device="cpu")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png 0101\n")
    with pytest.raises(GanprintError, match="bad.txt:1"):
        api.detect(tiny_stega_model, image_folder, tmp_path / "d", embedded=bad, device="cpu")


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
    d1 = api.detect(tiny_stega_model, image_folder, tmp_path / "a", fingerprint=bits, device="cpu")
    d2 = api.detect(tiny_stega_model, image_folder, tmp_path / "b", fingerprint="0x5a", device="cpu")
    assert d1["mean_bit_accuracy"] == d2["mean_bit_accuracy"] and d1["with_reference"] == 6


def test_jobs_split_the_work_and_give_the_same_result(tiny_stega_model, sample_folder, tmp_path):
    one = api.embed(tiny_stega_model, sample_folder, tmp_path / "one", device="cpu", precision="fp32")
    two = api.embed(tiny_stega_model, sample_folder, tmp_path / "two", device="cpu", precision="fp32", jobs=2)
    assert one["fingerprinted"] == two["fingerprinted"] == 24 and two["new"] == 24
    assert (tmp_path / "one" / "embedded_fingerprints.txt").read_text() == \
        (tmp_path / "two" / "embedded_fingerprints.txt").read_text()
    for p in sorted((tmp_path / "one" / "fingerprinted_images").glob("*.png")):
        assert np.array_equal(read_image(p), read_image(tmp_path / "two" / "fingerprinted_images" / p.name)), p.name
    progress = sorted(p.name for p in (tmp_path / "two" / ".progress").glob("*.jsonl"))
    assert progress == ["embed-rank0.jsonl", "embed-rank1.jsonl"]  # each process did its share
    emb = tmp_path / "one" / "embedded_fingerprints.txt"
    d1 = api.detect(tiny_stega_model, tmp_path / "one" / "fingerprinted_images", tmp_path / "d1", embedded=emb,
                    device="cpu", precision="fp32")
    d2 = api.detect(tiny_stega_model, tmp_path / "one" / "fingerprinted_images", tmp_path / "d2", embedded=emb,
                    device="cpu", precision="fp32", jobs=2)
    assert d1["mean_bit_accuracy"] == d2["mean_bit_accuracy"] and d2["images"] == 24
    assert (tmp_path / "d1" / "detections.jsonl").read_text() == (tmp_path / "d2" / "detections.jsonl").read_text()


def test_jobs_report_a_bad_file_and_keep_finished_work(tiny_stega_model, sample_folder, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(sample_folder.glob("*.png"))[:8]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "zz-broken.png").write_text("not an image")
    with pytest.raises(BadImageError, match="zz-broken.png.*--skip-bad"):
        api.embed(tiny_stega_model, data, tmp_path / "out", device="cpu", jobs=2)
    s = api.embed(tiny_stega_model, data, tmp_path / "out", device="cpu", jobs=2, skip_bad=True)
    assert s["fingerprinted"] == 8 and s["resumed"] >= 1 and [x["file"] for x in s["skipped"]] == ["zz-broken.png"]


def test_jobs_resolution(monkeypatch):
    from ganprint.artificial.jobs import MIN_IMAGES_PER_JOB, resolve_jobs

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("ganprint.artificial.jobs.usable_cores", lambda: 4)
    assert resolve_jobs("auto", "cpu", 10 * MIN_IMAGES_PER_JOB) == 4
    assert resolve_jobs("auto", "cpu", 2 * MIN_IMAGES_PER_JOB) == 2
    assert resolve_jobs("auto", "cpu", 10) == 1  # too few images to pay for a process
    assert resolve_jobs("auto", "cpu", 2000, min_per_job=1000) == 2 and resolve_jobs("auto", "cpu", 1999, 1000) == 1
    assert resolve_jobs("3", "cpu", 10) == 3
    for bad in ("0", "many", -1):
        with pytest.raises(GanprintError, match="--jobs"):
            resolve_jobs(bad, "cpu", 10)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_jobs("auto", "cpu", 10_000) == 1  # torchrun's ranks already split the work
    with pytest.raises(GanprintError, match="torchrun"):
        resolve_jobs(2, "cpu", 10_000)


def test_detect_needs_more_images_per_process_than_embed(tiny_stega_model, sample_folder, tmp_path, monkeypatch):
    from ganprint.artificial import jobs as parallel

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    n = len(api.open_image_dataset(sample_folder, 32))
    monkeypatch.setattr(api, "MIN_IMAGES_PER_JOB", n // 2)
    monkeypatch.setattr(api, "MIN_IMAGES_PER_DETECT_JOB", n // 2 + 1)
    forked = []

    def fake_run_jobs(fn_name, kwargs, jobs):
        forked.append((fn_name, jobs))
        raise RuntimeError("forked")

    monkeypatch.setattr(parallel, "run_jobs", fake_run_jobs)
    with pytest.raises(RuntimeError, match="forked"):
        api.embed(tiny_stega_model, sample_folder, tmp_path / "e", device="cpu", jobs="auto")
    api.detect(tiny_stega_model, sample_folder, tmp_path / "d", device="cpu", jobs="auto")  # one process
    assert forked == [("embed", 2)]


def test_one_listing_walks_a_folder_once_and_forgets_it_after(image_folder):
    from ganprint.data import folders as data

    calls = []
    real = data._walk_images

    def counting(root):
        calls.append(root)
        return real(root)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "_walk_images", counting)
        with data.one_listing():
            a = data.list_images(image_folder)
            b = data.ImageFolderDataset(image_folder, 16).paths
        assert a == b and len(calls) == 1
        data.list_images(image_folder)  # outside the block: walked again, so new files are seen
        assert len(calls) == 2


def test_bits_to_strs_and_back():
    from ganprint.core.fingerprints import FingerprintError, bits_to_str, bits_to_strs, strs_to_bits

    bits = torch.randint(0, 2, (5, 13)).float()
    strs = bits_to_strs(bits)
    assert strs == [bits_to_str(b) for b in bits]
    assert torch.equal(strs_to_bits(strs, 13), bits)
    with pytest.raises(FingerprintError):
        strs_to_bits(strs, 12)
