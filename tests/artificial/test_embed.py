"""embed: outputs and formats, resume (also after torn records and kills), naming, bad files, full disks."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from ganprint.artificial.detect import detect
from ganprint.artificial.embed import embed, output_names, per_image_bits
from ganprint.artificial.records import read_fingerprint_txt
from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.images import BadImageError, read_image, to_tensor01
from ganprint.core.stats import match_threshold
from ganprint.inference.layout import prepare, to_float01
from tests.artificial.common import LINE, ROW_KEYS, digest, fingerprint_lines


def test_output_names_rule():
    assert output_names(["a.jpg", "b.tar.jpg", "sub/c.PNG"]) == ["a.png", "b.tar.png", "sub/c.png"]
    assert output_names(["a.jpg", "a.png", "b.png"]) == ["a.jpg.png", "a.png.png", "b.png"]
    assert output_names(["X.jpg", "x.PNG"]) == ["X.jpg.png", "x.PNG.png"]  # case-insensitive filesystems
    assert output_names(["X.png", "x.PNG"]) == ["X.png~0.png", "x.PNG~1.png"]  # still clashing: add the index
    tricky = output_names(["a.jpg", "a.jpg.png", "a.png"])
    assert len({n.lower() for n in tricky}) == 3 and all(n.endswith(".png") for n in tricky)
    assert output_names(["sub/a.jpg", "a.jpg"]) == ["sub/a.png", "a.png"]  # other folders never clash


def test_embed_per_image(tiny_stega_model, image_folder, tmp_path):
    before = digest(image_folder)
    out = tmp_path / "out"
    s = embed(tiny_stega_model, image_folder, out, device="cpu", check=True, precision="fp32")
    assert digest(image_folder) == before  # inputs untouched
    assert s["images"] == s["fingerprinted"] == s["new"] == 6 and s["resumed"] == 0 and s["skipped"] == []
    emb = fingerprint_lines(out / "embedded_fingerprints.txt")
    names = ["img00.png", "img02.png", "img04.png", "sub/img01.png", "sub/img03.png", "sub/img05.png"]
    assert list(emb) == sorted(names)
    for i, name in enumerate(names):
        img = read_image(out / "fingerprinted_images" / name)
        assert img.shape == (32, 32, 3)
        assert emb[name] == "".join(str(int(b)) for b in per_image_bits(42, i, 8))  # pure function of (seed, i)
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
    d = detect(tiny_stega_model, out / "fingerprinted_images", tmp_path / "det", embedded=out /
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
    assert fingerprint_lines(tmp_path / "det" / "detected_fingerprints.txt") == {r["name"]: r["bits"] for r in rows}
    assert json.loads((tmp_path / "det" / "summary.json").read_text())["images"] == 6


def test_bf16_precision_stays_within_two_levels_of_fp32(tiny_stega_model, image_folder, tmp_path):
    runs = {p: embed(tiny_stega_model, image_folder, tmp_path / p, device="cpu", precision=p) for p in ("fp32", "bf16")}
    assert runs["bf16"]["precision"] == "bf16" and runs["fp32"]["precision"] == "fp32"
    assert json.loads((tmp_path / "bf16" / "manifest.json").read_text())["precision"] == "bf16"
    assert (tmp_path / "fp32" / "embedded_fingerprints.txt").read_text() == \
        (tmp_path / "bf16" / "embedded_fingerprints.txt").read_text()  # same bits; only the arithmetic differs
    for name in fingerprint_lines(tmp_path / "fp32" / "embedded_fingerprints.txt"):
        a, b = (read_image(tmp_path / p / "fingerprinted_images" / name).astype(int) for p in ("fp32", "bf16"))
        assert np.abs(a - b).max() <= 2
    # Decoding: bf16 logits are close to fp32 ones, so every bit with a clear margin reads the same.
    model, _, _ = load_export(tiny_stega_model)
    written = sorted((tmp_path / "fp32" / "fingerprinted_images").rglob("*.png"))
    x = torch.stack([to_tensor01(read_image(p)) for p in written])
    with torch.no_grad():
        ref = model.dec(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.dec(x).float()
    clear = ref.abs() > 0.05 * ref.abs().max()
    assert torch.equal((ref > 0)[clear], (low > 0)[clear])
    with pytest.raises(GanprintError, match="`precision`"):
        detect(tiny_stega_model, image_folder, tmp_path / "d", device="cpu", precision="fp16")


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
        enc, dec = prepare(model.enc, dev, "bf16"), prepare(model.dec, dev, "bf16")
        xb = to_float01(x.mul(255).round().to(torch.uint8), dev, torch.bfloat16)
        assert xb.dtype == torch.bfloat16
        got_img, got_logits = enc(bits.bfloat16(), x.bfloat16()), dec(x.bfloat16()).float()
    assert torch.equal(got_img, ref_img) and torch.equal(got_logits, ref_logits)


def test_embed_identical(tiny_stega_model, image_folder, tmp_path):
    s = embed(tiny_stega_model, image_folder, tmp_path / "a", identical=True, device="cpu")
    torch.manual_seed(42)  # the original: torch.manual_seed(seed); zeros(1, K).random_(0, 2)
    expected = "".join(str(int(b)) for b in torch.zeros(1, 8).random_(0, 2)[0])
    assert s["fingerprint"] == expected
    assert set(fingerprint_lines(tmp_path / "a" / "embedded_fingerprints.txt").values()) == {expected}
    s2 = embed(tiny_stega_model, image_folder, tmp_path / "b", identical=True, fingerprint="0x5a", device="cpu")
    assert s2["fingerprint"] == "01011010"
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["config"]["fingerprint"] == "01011010"
    with pytest.raises(GanprintError, match="add `identical`"):
        embed(tiny_stega_model, image_folder, tmp_path / "c", fingerprint="0x5a", device="cpu")
    with pytest.raises(GanprintError, match="bits"):
        embed(tiny_stega_model, image_folder, tmp_path / "d", identical=True, fingerprint="0101", device="cpu")


def test_resume_skips_finished_work_and_refuses_other_configs(tiny_stega_model, image_folder, tmp_path):
    out = tmp_path / "out"
    embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    first = digest(out / "fingerprinted_images")
    s = embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    assert s["new"] == 0 and s["resumed"] == 6
    assert digest(out / "fingerprinted_images") == first  # nothing rewritten
    (out / "fingerprinted_images" / "img02.png").unlink()
    s = embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    assert s["new"] == 1 and s["resumed"] == 5 and s["fingerprinted"] == 6
    assert digest(out / "fingerprinted_images")["img02.png"][0] == first["img02.png"][0]  # same pixels again
    with pytest.raises(GanprintError, match="seed"):
        embed(tiny_stega_model, image_folder, out, seed=1, device="cpu")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    with pytest.raises(GanprintError, match="new `outdir`"):
        embed(tiny_stega_model, image_folder, foreign, device="cpu")
    with pytest.raises(GanprintError, match="inside `data`"):
        embed(tiny_stega_model, image_folder, image_folder / "out", device="cpu")


def test_resuming_with_another_precision_is_refused_and_never_mixes_outputs(tiny_stega_model, image_folder,
                                                                             tmp_path):
    """The resume identity holds every setting that changes an output byte: the resolved precision (and the device
    type), not only the model, data and seeds. A half-finished fp32 run is not finished in bf16."""
    out = tmp_path / "out"
    embed(tiny_stega_model, image_folder, out, device="cpu", precision="fp32")
    (out / "fingerprinted_images" / "img02.png").unlink()  # as if the run had been stopped before this image
    before = digest(out)
    with pytest.raises(GanprintError) as e:
        embed(tiny_stega_model, image_folder, out, device="cpu", precision="bf16")
    msg = str(e.value)
    assert "`precision`: 'fp32' -> 'bf16'" in msg and f"`outdir` {out}" in msg and "\n" not in msg
    assert digest(out) == before  # nothing written: no bf16 image beside the fp32 ones
    identity = json.loads((out / ".ganprint.json").read_text())["identity"]
    assert identity["precision"] == "fp32" and identity["device"] == "cpu"  # resolved, never "auto"
    s = embed(tiny_stega_model, image_folder, out, device="cpu", precision="fp32")  # the same flags resume
    assert s["new"] == 1 and s["resumed"] == 5
    assert json.loads((out / "manifest.json").read_text())["precision"] == "fp32"


def test_name_collisions_survive(tiny_stega_model, image_folder, tmp_path):
    (image_folder / "img00.jpg").write_bytes((image_folder / "sub" / "img01.jpg").read_bytes())
    out = tmp_path / "out"
    embed(tiny_stega_model, image_folder, out, device="cpu")
    emb = fingerprint_lines(out / "embedded_fingerprints.txt")
    assert "img00.jpg.png" in emb and "img00.png.png" in emb and "img00.png" not in emb
    assert (out / "fingerprinted_images" / "img00.jpg.png").is_file()
    assert len(emb) == 7


def test_bad_files_stop_or_are_skipped(tiny_stega_model, image_folder, tmp_path):
    (image_folder / "sub" / "broken.png").write_text("not an image")
    with pytest.raises(BadImageError, match="broken.png.*`skip_bad`"):
        embed(tiny_stega_model, image_folder, tmp_path / "strict", device="cpu")
    kept = fingerprint_lines(tmp_path / "strict" / "embedded_fingerprints.txt")  # finished work is kept
    assert len(kept) == 6 and json.loads((tmp_path / "strict" / "manifest.json").read_text())["status"] == "failed"
    s = embed(tiny_stega_model, image_folder, tmp_path / "lenient", device="cpu", skip_bad=True)
    assert [x["file"] for x in s["skipped"]] == ["sub/broken.png"] and s["fingerprinted"] == 6
    man = json.loads((tmp_path / "lenient" / "manifest.json").read_text())
    assert man["skipped"][0]["file"] == "sub/broken.png" and "not an image" in man["skipped"][0]["error"]
    with pytest.raises(BadImageError, match="broken.png"):
        detect(tiny_stega_model, image_folder, tmp_path / "det", device="cpu")
    d = detect(tiny_stega_model, image_folder, tmp_path / "det", device="cpu", skip_bad=True)
    assert d["images"] == 6 and d["skipped"][0]["file"] == "sub/broken.png"


def test_torn_resume_record_loses_nothing(tiny_stega_model, sample_folder, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    embed(tiny_stega_model, sample_folder, ref, device="cpu", precision="fp32", batch_size=4)
    embed(tiny_stega_model, sample_folder, out, device="cpu", precision="fp32", batch_size=4)
    # What a kill or a full disk leaves: the listing not yet written, the last record torn.
    (out / "embedded_fingerprints.txt").unlink()
    prog = out / ".progress" / "embed-rank0.jsonl"
    rows = prog.read_bytes().splitlines(keepends=True)
    prog.write_bytes(b"".join(rows)[:-40])
    s = embed(tiny_stega_model, sample_folder, out, device="cpu", precision="fp32", batch_size=4)
    assert (s["new"], s["resumed"], s["fingerprinted"], s["status"]) == (1, 23, 24, "complete")  # only the torn one
    assert (out / "embedded_fingerprints.txt").read_bytes() == (ref / "embedded_fingerprints.txt").read_bytes()
    # The re-run's records follow the cut, so a later run still reads every one of them.
    assert len(prog.read_bytes().splitlines()) == 24
    (out / "embedded_fingerprints.txt").unlink()
    s = embed(tiny_stega_model, sample_folder, out, device="cpu", precision="fp32", batch_size=4)
    assert (s["new"], s["resumed"], s["fingerprinted"]) == (0, 24, 24)
    digest_out, digest_ref = digest(out / "fingerprinted_images"), digest(ref / "fingerprinted_images")
    assert {k: v[0] for k, v in digest_out.items()} == {k: v[0] for k, v in digest_ref.items()}


def test_records_of_other_lengths_or_garbage_are_ignored(tiny_stega_model, image_folder, tmp_path):
    out = tmp_path / "out"
    embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    (out / "embedded_fingerprints.txt").unlink()
    prog = out / ".progress" / "embed-rank0.jsonl"
    good = prog.read_text().splitlines()
    bad = json.loads(good[0])
    prog.write_text("\n".join([json.dumps({**bad, "bits": "0101"}), "[1]", '{"name": 3}'] + good[1:]) + "\n")
    s = embed(tiny_stega_model, image_folder, out, device="cpu", batch_size=4)
    assert (s["new"], s["resumed"], s["fingerprinted"]) == (1, 5, 6)


def test_names_with_newlines_round_trip(tiny_stega_model, image_folder, tmp_path):
    src = (image_folder / "img00.png").read_bytes()
    odd = ["new\nline.png", "tab\there.png", '"quoted".png', "cr\r.png", "sp ace.png", "uni\u2028.png"]
    for name in odd:
        (image_folder / name).write_bytes(src)
    out = tmp_path / "out"
    s = embed(tiny_stega_model, image_folder, out, device="cpu")
    assert s["fingerprinted"] == 12
    text = (out / "embedded_fingerprints.txt").read_text()
    lines = text.split("\n")[:-1]
    assert len(lines) == 12
    assert any(line.startswith('"new\\nline.png" ') for line in lines)  # quoted as a JSON string
    assert any(line.startswith("sp ace.png ") for line in lines)  # printable names are written as they are
    assert any(line.startswith('"quoted".png ') for line in lines)
    plain = [line for line in lines if line.startswith(("img", "sub/"))]  # ordinary names: the original's format
    assert len(plain) == 6 and all(LINE.match(line) for line in plain)
    emb = read_fingerprint_txt(out / "embedded_fingerprints.txt", 8)
    assert set(odd) <= set(emb) and all((out / "fingerprinted_images" / n).is_file() for n in odd)
    d = detect(tiny_stega_model, out / "fingerprinted_images", tmp_path / "det", device="cpu", fpr=0.01,
               embedded=out / "embedded_fingerprints.txt")
    assert d["images"] == d["with_reference"] == 12
    assert set(odd) <= set(read_fingerprint_txt(tmp_path / "det" / "detected_fingerprints.txt", 8))


def test_stale_temporaries_of_killed_writers_are_removed(tiny_stega_model, image_folder, tmp_path):
    out = tmp_path / "out"
    embed(tiny_stega_model, image_folder, out, device="cpu")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a pid that no process has any more
    stale = [out / "fingerprinted_images" / f".img00.png.{dead}.1234.tmp", out / f".manifest.json.{dead}.x1_y.tmp"]
    live = out / "fingerprinted_images" / f".img02.png.{os.getpid()}.1.tmp"  # a writer still at work: kept
    for p in stale + [live]:
        p.write_bytes(b"")
    embed(tiny_stega_model, image_folder, out, device="cpu")
    assert not any(p.exists() for p in stale) and live.exists()


@pytest.mark.parametrize("command", [embed, detect])
def test_outdir_is_checked_before_any_work(tiny_stega_model, image_folder, tmp_path, command):
    (tmp_path / "file").write_text("x")
    (image_folder / "broken.png").write_text("not an image")  # would stop the run if any image were read
    for outdir, message in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "out", "cannot be created"),
                            ("/proc/ganprint-out", "not writable")):
        with pytest.raises(GanprintError, match=f"(--outdir|`outdir`) .*{message}"):  # embed's / detect's words
            command(tiny_stega_model, image_folder, outdir, device="cpu")


def _limited(limit: int, argv: list[str], cwd) -> subprocess.CompletedProcess:
    """Run the CLI with files limited to `limit` bytes: writes beyond it fail as on a full disk (EFBIG)."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "from ganprint.cli import main; sys.argv[0] = 'ganprint'; main()")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


SRC = Path(__file__).resolve().parents[2] / "src"


# The 24 sample PNGs take 856-993 bytes and a record about 65: at 1000 bytes the PNGs fit and the single process's
# records fill up after about 15 images; at 900 most PNGs do not fit.
@pytest.mark.parametrize("jobs,limit,where", [("1", 1000, ".progress/embed-rank0.jsonl"),
                                              ("2", 900, "fingerprinted_images/")])
def test_full_disk_gives_one_line_and_keeps_finished_work(tiny_stega_model, sample_folder, tmp_path, jobs, limit,
                                                          where):
    out = tmp_path / "out"
    argv = ["embed", "--model", str(tiny_stega_model), "--data", str(sample_folder), "--outdir", str(out),
            "--device", "cpu", "--batch-size", "2", "--jobs", jobs]
    res = _limited(limit, argv, tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and f"cannot write {out}/{where}" in errors[0] and "re-run" in errors[0], res.stderr
    kept = sum(len(p.read_bytes().splitlines()) for p in (out / ".progress").glob("*.jsonl"))
    s = embed(tiny_stega_model, sample_folder, out, device="cpu", batch_size=2)
    assert s["fingerprinted"] == 24 and s["status"] == "complete"
    if jobs == "1":
        assert kept >= 10 and s["resumed"] >= kept - 1  # finished work is kept (a torn last record is redone)


def test_special_files_are_refused_by_name_or_skipped(tiny_stega_model, image_folder, tmp_path):
    os.mkfifo(image_folder / "pipe.png")
    (image_folder / "zero.png").symlink_to("/dev/zero")
    argv = [sys.executable, "-m", "ganprint", "embed", "--model", str(tiny_stega_model), "--data", str(image_folder),
            "--outdir", str(tmp_path / "out"), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "pipe.png is not a regular file but a named pipe" in res.stderr
    res = subprocess.run(argv + ["--skip-bad"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["file"] for s in man["skipped"]] == ["pipe.png", "zero.png"] and man["counts"]["fingerprinted"] == 6


def test_embed_takes_a_spec_or_the_commands_keyword_names(tiny_stega_model, image_folder, tmp_path):
    from ganprint.artificial.embed import EmbedSpec
    from ganprint.core.specs import SpecError

    spec = EmbedSpec(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "a", device="cpu", seed=4,
                     precision="fp32", workers=0)
    a = embed(spec)
    b = embed(tiny_stega_model, image_folder, tmp_path / "b", device="cpu", seed=4, precision="fp32", workers=0)
    assert {k: v for k, v in a.items() if k != "outdir"} == {k: v for k, v in b.items() if k != "outdir"}
    pixels = [{n: d[0] for n, d in digest(tmp_path / x / "fingerprinted_images").items()} for x in "ab"]
    assert pixels[0] == pixels[1]
    with pytest.raises(SpecError, match="no field `num_workers`"):  # the old name: the flag is --workers
        embed(tiny_stega_model, image_folder, tmp_path / "c", num_workers=0)
    with pytest.raises(GanprintError, match="`batch_size` must be"):
        EmbedSpec(model=tiny_stega_model, data=image_folder, outdir=tmp_path / "c", batch_size=0)
    with pytest.raises(SpecError, match="not two"):
        embed(spec, spec=spec)


def test_the_cli_builds_the_spec_and_keeps_the_old_workers_flag(tiny_stega_model, image_folder, tmp_path):
    from click.testing import CliRunner

    from ganprint.cli import main

    common = ["embed", "--model", str(tiny_stega_model), "--data", str(image_folder), "--device", "cpu", "--jobs", "1"]
    old = CliRunner().invoke(main, [*common, "--outdir", str(tmp_path / "a"), "--num-workers", "0"])
    assert old.exit_code == 0, old.output
    assert "--num-workers is the old name of --workers" in old.output
    bad = CliRunner().invoke(main, [*common, "--outdir", str(tmp_path / "b"), "--fingerprint", "0x5a"])
    # The spec's error, with the command's flags in place of its field names.
    assert bad.exit_code == 1 and "--fingerprint sets the one fingerprint of --identical; add --identical" in bad.output


def test_keep_size_settings_are_checked_and_resume(tiny_stega_model, image_folder, tmp_path):
    """`keep_size` and `strength`: bad values named before any work; a re-run resumes; a packed set is refused."""
    from ganprint.data.packed import write_packed

    for bad in (float("nan"), float("inf"), -0.5, 11):
        with pytest.raises(GanprintError, match="`strength`"):
            embed(tiny_stega_model, image_folder, tmp_path / "x", strength=bad)
    with pytest.raises(GanprintError, match="`celeba` .*`keep_size`"):
        embed(tiny_stega_model, image_folder, tmp_path / "x", keep_size=True, celeba=True)
    assert not (tmp_path / "x").exists()
    first = embed(tiny_stega_model, image_folder, tmp_path / "out", keep_size=True, strength=0.5, device="cpu")
    again = embed(tiny_stega_model, image_folder, tmp_path / "out", keep_size=True, strength=0.5, device="cpu")
    assert first["new"] == first["images"] and again["new"] == 0 and again["resumed"] == first["images"]
    out = tmp_path / "out" / "fingerprinted_images"
    for src in [p for p in image_folder.rglob("*") if p.is_file() and not p.name.startswith(".")]:
        rel = src.relative_to(image_folder).with_suffix(".png")
        assert read_image(out / rel).shape == read_image(src).shape  # each image at its own size
    zero = embed(tiny_stega_model, image_folder, tmp_path / "zero", keep_size=True, strength=0.0, device="cpu")
    assert zero["mean_psnr"] is None  # every image left exactly as it was
    rng = np.random.default_rng(0)
    write_packed(tmp_path / "packed", (rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)), 3, 32,
                 source="test", names=["a", "b", "c"], shuffle=False, seed=None)
    with pytest.raises(GanprintError, match="packed data set .*original images"):
        embed(tiny_stega_model, tmp_path / "packed", tmp_path / "p", keep_size=True)


def test_target_psnr_sets_each_images_strength(tiny_stega_model, image_folder, tmp_path):
    """`target_psnr`: every image lands at the PSNR asked for, at its own size; it needs `keep_size`, not `strength`."""
    from ganprint.core.images import psnr_u8

    with pytest.raises(GanprintError, match="`target_psnr` .*add `keep_size`"):
        embed(tiny_stega_model, image_folder, tmp_path / "x", target_psnr=38.0)
    with pytest.raises(GanprintError, match="`target_psnr` .*drop `strength`"):
        embed(tiny_stega_model, image_folder, tmp_path / "x", keep_size=True, target_psnr=38.0, strength=0.5)
    with pytest.raises(GanprintError, match="`target_psnr`"):
        embed(tiny_stega_model, image_folder, tmp_path / "x", keep_size=True, target_psnr=-3.0)
    assert not (tmp_path / "x").exists()
    res = embed(tiny_stega_model, image_folder, tmp_path / "out", keep_size=True, target_psnr=36.0, device="cpu")
    assert res["target_psnr"] == 36.0 and res["mean_psnr"] == pytest.approx(36.0, abs=0.1)
    out = tmp_path / "out" / "fingerprinted_images"
    for src in [p for p in image_folder.rglob("*") if p.is_file() and not p.name.startswith(".")]:
        got = psnr_u8(read_image(src), read_image(out / src.relative_to(image_folder).with_suffix(".png")))
        assert got == pytest.approx(36.0, abs=0.25)  # each image, not only the mean


def test_output_format_same_keeps_each_photos_format_and_colour_mode(tiny_stega_model, tmp_path):
    """`output_format` same: JPEG stays JPEG, WebP WebP, PNG PNG, greyscale greyscale, other formats become PNG;
    detect reads them all; without `keep_size` it is refused by name."""
    from PIL import Image

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    rgb.save(src / "a.jpg", quality=90)
    rgb.save(src / "b.webp", quality=90)
    rgb.save(src / "c.png")
    rgb.save(src / "d.bmp")
    rgb.convert("L").save(src / "e.png")
    rgb.convert("L").save(src / "f.jpg")
    with pytest.raises(GanprintError, match="`output_format` same .*add `keep_size`"):
        embed(tiny_stega_model, src, tmp_path / "x", output_format="same")
    with pytest.raises(GanprintError, match="`output_format` must be one of png, same"):
        embed(tiny_stega_model, src, tmp_path / "x", keep_size=True, output_format="tiff")
    res = embed(tiny_stega_model, src, tmp_path / "out", keep_size=True, output_format="same", identical=True,
                fingerprint="0x5a", device="cpu", check=True)
    assert res["images"] == 6 and res["status"] == "complete"
    out = tmp_path / "out" / "fingerprinted_images"
    want = {"a.jpg": ("JPEG", "RGB"), "b.webp": ("WEBP", "RGB"), "c.png": ("PNG", "RGB"), "d.png": ("PNG", "RGB"),
            "e.png": ("PNG", "L"), "f.jpg": ("JPEG", "L")}
    for name, (fmt, mode) in want.items():
        with Image.open(out / name) as im:
            assert (im.format, im.mode, im.size) == (fmt, mode, (64, 48)), name
    listed = sorted(line.split()[0] for line in (tmp_path / "out" / "embedded_fingerprints.txt").read_text().splitlines())
    assert listed == sorted(want)
    again = embed(tiny_stega_model, src, tmp_path / "out", keep_size=True, output_format="same", identical=True,
                  fingerprint="0x5a", device="cpu", check=True)
    assert again["new"] == 0 and again["resumed"] == 6
    det = detect(tiny_stega_model, out, tmp_path / "det", embedded=tmp_path / "out" / "embedded_fingerprints.txt",
                 device="cpu", fpr=0.01)
    assert det["with_reference"] == 6
