"""Scalable fingerprinting model, folding, generation API, training loop and CLI end to end (all tiny)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from ganprint.cli import main
from ganprint.core.artifacts import load_export, save_export
from ganprint.core.errors import GanprintError
from ganprint.nets.scalable import (
    ScalableConfig,
    ScalableDecoder,
    ScalableGenerator,
    build_discriminator,
    fold_fingerprint,
    parse_res_range,
    seeded_inputs,
)
from ganprint.api import generate
from ganprint.scalable.issue import issue_model

CFG = dict(resolution=16, fingerprint_length=12, z_dim=8, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)


def _cfg(**kw) -> ScalableConfig:
    return ScalableConfig(**{**CFG, "modulated_res": [4, 8, 16], **kw})


def _perturbed(G: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-trivial weights everywhere (noise strengths and biases start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in G.named_parameters():
            if "noise_strength" in n or n.endswith("bias"):
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return G


def test_shapes_and_gradients():
    cfg = _cfg()
    G, E, D = ScalableGenerator(cfg), ScalableDecoder(cfg), build_discriminator(cfg)
    z, c = torch.randn(4, 8), torch.randint(0, 2, (4, 12)).float()
    img = G(z, c)
    assert img.shape == (4, 3, 16, 16)
    z_hat, logits = E(img)
    assert z_hat.shape == (4, 8) and logits.shape == (4, 12)
    assert D(img).shape == (4, 1)
    loss = D(img).mean() + z_hat.square().mean() + logits.mean()
    loss.backward()
    for name, p in list(G.named_parameters()) + list(E.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # The fingerprint reaches the image; the latent too.
    c2 = 1 - c
    assert (G(z, c, noise_mode="const") - G(z, c2, noise_mode="const")).abs().max() > 1e-4
    assert (G(z, c, noise_mode="const") - G(-z, c, noise_mode="const")).abs().max() > 1e-4
    # Fused (grouped conv) and unfused modulation agree.
    assert torch.allclose(G(z, c, noise_mode="const", fused=True), G(z, c, noise_mode="const", fused=False),
                          atol=1e-5)


def test_modulated_res_selects_layers():
    assert parse_res_range("4-128", 32) == [4, 8, 16, 32]
    assert parse_res_range("8-16", 32) == [8, 16]
    for bad in ("4to8", "3-8", "64-128", "16-8"):
        with pytest.raises(GanprintError, match="`modulated_res`"):
            parse_res_range(bad, 32)
    G = ScalableGenerator(_cfg(modulated_res=[8]))
    mods = {b.resolution: b.conv1.modulated for b in G.synthesis.blocks}
    assert mods == {4: False, 8: True, 16: False}


@pytest.mark.parametrize("mod", [[4, 8, 16], [8]])
def test_folded_equals_modulated(mod):
    G = _perturbed(ScalableGenerator(_cfg(modulated_res=mod))).double().eval()
    z, c, noise = seeded_inputs(G, [0, 1, 2])
    z, noise = z.double(), [n.double() for n in noise]
    fp = c[0]
    Gi = fold_fingerprint(G, fp)
    want = G(z, fp[None].repeat(3, 1).double(), noise=noise)
    got = Gi(z, noise=noise)
    assert torch.allclose(got, want, atol=1e-10, rtol=0)
    assert not any(k.startswith("mapping") or ".affine." in k for k in Gi.state_dict())
    with pytest.raises(GanprintError, match="built in"):
        Gi(z, c.double())


def _export(tmp_path, cfg=None):
    cfg = cfg or _cfg()
    torch.manual_seed(0)
    G = _perturbed(ScalableGenerator(cfg))
    path = save_export(tmp_path / "G.safetensors", G, "scalable-G", cfg.to_dict())
    dec = save_export(tmp_path / "E.safetensors", ScalableDecoder(cfg), "scalable-decoder", cfg.to_dict())
    return path, dec


def _lines(d):
    return (d / "fingerprints.txt").read_text().splitlines()


def test_generate_identical_and_batch_independent(tmp_path):
    g_path, _ = _export(tmp_path)
    a = generate(g_path, [5, 6, 7], tmp_path / "a", batch_size=1, device="cpu")
    b = generate(g_path, [5, 6, 7], tmp_path / "b", batch_size=3, grid=True, device="cpu")
    assert [p.name for p in a] == ["seed000005.png", "seed000006.png", "seed000007.png"]
    for pa, pb in zip(a, b):
        assert np.array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(pb)))
    assert (tmp_path / "b" / "grid.png").exists()
    fps = [ln.split() for ln in _lines(tmp_path / "a")]
    assert [f[0] for f in fps] == [p.name for p in a] and len({f[1] for f in fps}) == 3
    rows = [json.loads(x) for x in (tmp_path / "a" / "fingerprints.jsonl").read_text().splitlines()]
    assert rows[0]["seed"] == 5 and rows[0]["fingerprint"] == fps[0][1]

    same_c = generate(g_path, [5, 6, 7], tmp_path / "c", identical_fingerprint=True, device="cpu")
    assert {ln.split()[1] for ln in _lines(tmp_path / "c")} == {fps[0][1]}
    img0 = np.asarray(Image.open(a[0]))
    assert np.array_equal(np.asarray(Image.open(same_c[0])), img0)  # the first seed is unchanged
    same_z = generate(g_path, [5, 6, 7], tmp_path / "z", identical_latent=True, device="cpu")
    assert [ln.split()[1] for ln in _lines(tmp_path / "z")] == [f[1] for f in fps]  # c still per seed
    assert np.array_equal(np.asarray(Image.open(same_z[0])), img0)
    assert not np.array_equal(np.asarray(Image.open(same_z[1])), np.asarray(Image.open(a[1])))

    fixed = "0x" + "a5f"
    generate(g_path, [1, 2], tmp_path / "f", fingerprint=fixed, device="cpu")
    assert {ln.split()[1] for ln in _lines(tmp_path / "f")} == {"101001011111"}
    with pytest.raises(GanprintError, match="fingerprint has 8 bits"):
        generate(g_path, [1], tmp_path / "bad", fingerprint="01010101", device="cpu")


def test_issue_and_issued_model_matches_shared(tmp_path):
    g_path, _ = _export(tmp_path)
    row = issue_model(g_path, tmp_path / "reg.sqlite", tmp_path / "issued", who="carol")
    assert row["fp_id"] == 1 and row["who"] == "carol"
    Gi, cfg, meta = load_export(row["issued_path"], kind="scalable-G-issued")
    assert meta["ganprint.fingerprint"] == row["bits_hex"]
    issued = generate(row["issued_path"], [3, 4], tmp_path / "i", device="cpu")
    shared = generate(g_path, [3, 4], tmp_path / "s", fingerprint=row["bits_hex"], device="cpu")
    for pi, ps in zip(issued, shared):
        diff = np.abs(np.asarray(Image.open(pi), dtype=int) - np.asarray(Image.open(ps), dtype=int))
        assert diff.max() <= 1  # float64 networks; a pixel may only differ by rounding at .5
    assert _lines(tmp_path / "i") == _lines(tmp_path / "s")
    with pytest.raises(GanprintError, match="drop `fingerprint`"):
        generate(row["issued_path"], [1], tmp_path / "x", fingerprint=row["bits_hex"], device="cpu")
    row2 = issue_model(g_path, tmp_path / "reg.sqlite", tmp_path / "issued")
    assert row2["fp_id"] == 2 and row2["min_distance"] >= 3  # default K // 4 for 12 bits
    with pytest.raises(GanprintError, match="already issued"):
        issue_model(g_path, tmp_path / "reg.sqlite", tmp_path / "issued", fingerprint=row["bits_hex"])


def _packed_data(tmp_path, n=24, r=16):
    from ganprint.data.packed import write_packed

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (r, r, 3), dtype=np.uint8) for _ in range(n)]
    return write_packed(tmp_path / "data", iter(imgs), n, r, source="test", names=[str(i) for i in range(n)],
                        shuffle=False, seed=None)


def _train_args(data, out, kimg):
    return ["train-scalable", "--data", str(data), "--outdir", str(out), "--resolution", "16", "--fingerprint-length",
            "12", "--modulated-res", "4-16", "--preset", "tiny", "--kimg", str(kimg), "--seed", "3", "--device", "cpu"]


def test_train_resume_is_deterministic(tmp_path):
    data = _packed_data(tmp_path)
    r = CliRunner().invoke(main, _train_args(data, tmp_path / "one", 0.008))
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, _train_args(data, tmp_path / "two", 0.004))
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, _train_args(data, tmp_path / "two", 0.008))  # resume: re-run, longer
    assert r.exit_code == 0, r.output
    a = load_file(str(tmp_path / "one" / "scalable-G.safetensors"))
    b = load_file(str(tmp_path / "two" / "scalable-G.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "two" / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 2
    out = tmp_path / "one"
    for name in ("snapshots/reals.png", "snapshots/fakes-arbitrary-00000002.png",
                 "snapshots/fakes-fingerprints-same-00000002.png", "snapshots/fakes-latents-same-00000002.png",
                 "scalable-decoder.safetensors", "metric-bit-accuracy.jsonl", "config.json", "log.txt",
                 "training-state-00000002.pt"):
        assert (out / name).exists(), name
    metric = [json.loads(x) for x in (out / "metric-bit-accuracy.jsonl").read_text().splitlines()]
    assert 0 <= metric[-1]["bit_accuracy"] <= 1 and metric[-1]["kimg"] == 0.008


def test_train_with_augment_resumes_exactly_and_logs_the_perturbed_read(tmp_path):
    data = _packed_data(tmp_path)
    aug = ["--augment", "jpegd,blur,noise,crop", "--augment-skew", "2"]
    cli = CliRunner()
    assert cli.invoke(main, _train_args(data, tmp_path / "one", 0.008) + aug).exit_code == 0
    assert cli.invoke(main, _train_args(data, tmp_path / "two", 0.004) + aug).exit_code == 0
    r = cli.invoke(main, _train_args(data, tmp_path / "two", 0.008) + aug)  # resume
    assert r.exit_code == 0, r.output
    a = load_file(str(tmp_path / "one" / "scalable-decoder.safetensors"))
    b = load_file(str(tmp_path / "two" / "scalable-decoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = tmp_path / "plain"
    assert cli.invoke(main, _train_args(data, plain, 0.008)).exit_code == 0
    c = load_file(str(plain / "scalable-decoder.safetensors"))
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the perturbed read changed training
    rows = [json.loads(x) for x in (tmp_path / "one" / "stats.jsonl").read_text().splitlines()]
    assert all(0 <= row["bit_acc_train_augmented"] <= 1 for row in rows)
    opts = json.loads((tmp_path / "one" / "config.json").read_text())
    assert opts["augment"] == "jpegd,blur,noise,crop" and opts["augment_skew"] == 2.0
    r = cli.invoke(main, _train_args(data, tmp_path / "bad", 0.008) + ["--augment", "jpgg"])
    assert r.exit_code == 1 and "jpgg" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad").exists()


def test_quantize_read_matches_saved_images_and_changes_training(tmp_path):
    from ganprint.nets.stylegan2 import quantize_uint8_st, to_uint8

    x = (torch.linspace(-1.3, 1.3, 2 * 3 * 5 * 7).reshape(2, 3, 5, 7)).requires_grad_(True)
    q = quantize_uint8_st(x)
    saved = torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2).float() / 127.5 - 1  # as decode_images reads a file
    assert torch.equal(q.detach(), saved)
    q.sum().backward()
    assert torch.equal(x.grad, (x.abs() <= 1).float())  # rounding straight-through; clipped pixels get none
    data = _packed_data(tmp_path)
    cli = CliRunner()
    r = cli.invoke(main, _train_args(data, tmp_path / "q", 0.008) + ["--quantize-read"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "q" / "config.json").read_text())["quantize_read"] is True
    assert cli.invoke(main, _train_args(data, tmp_path / "plain", 0.008)).exit_code == 0
    a = load_file(str(tmp_path / "q" / "scalable-decoder.safetensors"))
    b = load_file(str(tmp_path / "plain" / "scalable-decoder.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_cli_end_to_end(tmp_path):
    data = _packed_data(tmp_path)
    run = tmp_path / "run"
    cli = CliRunner()
    assert cli.invoke(main, _train_args(data, run, 0.008)).exit_code == 0
    r = cli.invoke(main, ["issue", "--model", str(run / "scalable-G.safetensors"), "--registry",
                          str(tmp_path / "reg.sqlite"), "--models-dir", str(tmp_path / "issued"), "--who", "dave"])
    assert r.exit_code == 0, r.output
    issued = json.loads(r.output.strip().splitlines()[-1])
    assert issued["fp_id"] == 1
    from ganprint.api import generate as gen

    gen(issued["issued_path"], [0, 1, 2], tmp_path / "imgs", device="cpu")
    out = tmp_path / "attr.jsonl"
    r = cli.invoke(main, ["attribute", "--decoder", str(run / "scalable-decoder.safetensors"), "--registry",
                          str(tmp_path / "reg.sqlite"), "--input", str(tmp_path / "imgs"), "--out", str(out), "--fpr", "0.01"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["file"] for x in rows] == ["seed000000.png", "seed000001.png", "seed000002.png"]
    summary = json.loads((tmp_path / "attr.jsonl.summary.json").read_text())
    # The rows hold the decoder's reading of the saved images against the issued bits, and the decision on it.
    from ganprint.core.fingerprints import parse_bits
    from ganprint.scalable.attribute import decode_images

    read = decode_images(load_export(run / "scalable-decoder.safetensors")[0],
                         np.stack([np.asarray(Image.open(tmp_path / "imgs" / x["file"])) for x in rows]))
    ham = (read != parse_bits(issued["bits_hex"], 12)).sum(1).tolist()
    assert [x["hamming"] for x in rows] == ham and all(x["nearest_fp_id"] == 1 for x in rows)
    assert [x["attributed"] for x in rows] == [1 if 12 - h >= summary["min_matches"] else "unknown" for h in ham]
    assert summary["images"] == 3 and summary["attributed"] == sum(x["attributed"] == 1 for x in rows)
    r = cli.invoke(main, ["issue", "--model", str(run / "scalable-decoder.safetensors"), "--registry",
                          str(tmp_path / "reg.sqlite"), "--models-dir", str(tmp_path / "issued")])
    assert r.exit_code == 1 and "scalable-G" in r.output and "Traceback" not in r.output


def test_adversarial_gate_holds_back_D_until_the_fingerprint_is_learned(tmp_path, monkeypatch):
    from ganprint.core.artifacts import latest_training_state, load_training_state
    from ganprint.scalable import config as scalable_config

    tiny = scalable_config.PRESETS["tiny"]
    # The small preset's schedule on the tiny model: a gate that cannot open within this run.
    monkeypatch.setitem(scalable_config.PRESETS, "tiny", dataclasses.replace(
        tiny, gate_adversarial=True, consistency_gate_acc=1.01, consistency_gate_kimg=1e9))
    data = _packed_data(tmp_path)
    states = []
    for run, kimg in (("a", 0.004), ("b", 0.008)):
        r = CliRunner().invoke(main, _train_args(data, tmp_path / run, kimg))
        assert r.exit_code == 0, r.output
        states.append(load_training_state(latest_training_state(tmp_path / run)))
        rows = [json.loads(x) for x in (tmp_path / run / "stats.jsonl").read_text().splitlines()]
        assert all(row["w_adv"] == 0 and "loss/D" not in row and "loss/G_adv" not in row for row in rows)
    (a, b) = states
    assert b["step"] == 2 * a["step"]
    assert all(torch.equal(a["D"][k], b["D"][k]) for k in a["D"])  # D untouched while the gate is closed
    assert any(not torch.equal(a["G"][k], b["G"][k]) for k in a["G"])  # G still learns the bits

    # Once open (gate at accuracy 0: from the first step), D trains and the adversarial weight ramps in.
    monkeypatch.setitem(scalable_config.PRESETS, "tiny", dataclasses.replace(tiny, gate_adversarial=True))
    r = CliRunner().invoke(main, _train_args(data, tmp_path / "c", 0.016))
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "c" / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["w_adv"] > 0 and "loss/D" in rows[-1]
