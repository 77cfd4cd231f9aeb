"""Attacks as data: every image attack, the spec parser, and the model-level attacks."""

import pytest
import torch
import torch.nn as nn

from ganprint.core.errors import GanprintError
from ganprint.evaluation.model_attacks import finetune, prune_weights, quantize_weights, weight_noise
from ganprint.evaluation.quality import psnr
from ganprint.perturb.attacks import ATTACKS, SUITES, AttackSpecError, combined_chain, parse_attacks


def _imgs(n=3, r=32, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    # smooth-ish content so that codecs at high quality are near-lossless
    base = torch.rand(n, 3, r // 8, r // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(r, r), mode="bilinear", align_corners=False).to(dtype)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attack_contract(name, dtype):
    att = ATTACKS[name]
    x = _imgs(dtype=dtype)
    before = x.clone()
    for s in att.sweep:
        y = att(x, s, seed=1)
        shape = x.shape if name != "shrink" else (*x.shape[:2], *(max(1, round(n * s)) for n in x.shape[2:]))
        assert y.shape == shape and y.dtype == dtype and y.device == x.device
        assert float(y.min()) >= 0 and float(y.max()) <= 1
        assert torch.equal(x, before), "input was modified"
        assert y.data_ptr() != x.data_ptr()
    strongest = att(x, att.sweep[-1], seed=1)
    if name != "none" and strongest.shape == x.shape:
        assert not torch.allclose(strongest, x, atol=1e-3), "the strongest default strength changed nothing"
    if att.neutral is not None:
        assert torch.equal(att(x, att.neutral, seed=1), x)


def test_codecs_near_identity_at_quality_100_and_degrade():
    x = _imgs()
    for name in ("jpeg", "webp"):
        assert psnr(ATTACKS[name](x, 100), x).min() > 33
        assert psnr(ATTACKS[name](x, 10), x).mean() < psnr(ATTACKS[name](x, 90), x).mean()


def test_seeded_attacks_are_reproducible():
    x = _imgs()
    for name in ("noise", "randcrop", "combined"):
        a = ATTACKS[name](x, ATTACKS[name].sweep[-1], seed=5)
        assert torch.equal(a, ATTACKS[name](x, ATTACKS[name].sweep[-1], seed=5))
        assert not torch.equal(a, ATTACKS[name](x, ATTACKS[name].sweep[-1], seed=6))


def test_noise_std_and_cropnr_border():
    x = torch.full((2, 3, 64, 64), 0.5)
    y = ATTACKS["noise"](x, 0.05, seed=0)
    assert (y - x).std().item() == pytest.approx(0.05, rel=0.05)
    z = ATTACKS["cropnr"](_imgs(r=64), 0.5)
    assert torch.equal(z[..., :16, :], torch.full_like(z[..., :16, :], 0.5))
    assert torch.equal(z[..., 16:48, 16:48], _imgs(r=64)[..., 16:48, 16:48])


def test_parse_specs():
    c = parse_attacks("jpeg:50")
    assert [x.spec for x in c] == ["jpeg:50"] and c[0].name == "jpeg" and c[0].strength == 50
    assert [x.strength for x in parse_attacks("jpeg:q=30,50,70")] == [30, 50, 70]
    assert parse_attacks("blur:sigma=1")[0].steps == (("blur", 1.0),)
    assert parse_attacks("blur:k=5")[0].strength == pytest.approx(1.1)  # OpenCV's rule for k=5
    ch = parse_attacks("jpeg:50+noise:0.05")
    assert len(ch) == 1 and ch[0].name == "jpeg+noise" and ch[0].spec == "jpeg:50+noise:0.05"
    sweep = parse_attacks("jpeg:50+noise:0.01,0.05")
    assert [x.strength for x in sweep] == [0.01, 0.05] and sweep[0].vary == 1
    assert len(parse_attacks("jpeg")) == len(ATTACKS["jpeg"].sweep)
    assert {x.name for x in parse_attacks("standard")} == set(SUITES["standard"])
    assert len(parse_attacks(["jpeg:50", "jpeg:50 noise:0.1"])) == 2  # duplicates dropped, spaces split
    for c in parse_attacks("all"):
        assert parse_attacks(c.spec)[0] == c  # canonical spec round-trips


def test_chain_applies_in_order():
    x = _imgs()
    ch = parse_attacks("brightness:0.5+contrast:2")[0]
    ref = ATTACKS["contrast"](ATTACKS["brightness"](x, 0.5), 2.0)
    assert torch.allclose(ch(x, seed=0), ref)
    assert [n for n, _ in combined_chain(5)] == ["crop", "blur", "jpeg", "noise"]


@pytest.mark.parametrize("bad,words", [
    ("jpg:50", "unknown attack 'jpg'"),
    ("jpeg:abc", "not a number"),
    ("jpeg:q=", "not a number"),
    ("jpeg:sigma=3", "no parameter 'sigma'"),
    ("jpeg:0", "outside"),
    ("crop:1.5", "outside"),
    ("noise:-1", "outside"),
    ("  ", "empty"),
])
def test_parse_bad_specs(bad, words):
    with pytest.raises(AttackSpecError, match=words) as e:
        parse_attacks(bad)
    assert isinstance(e.value, GanprintError)


def test_attack_rejects_wrong_input():
    with pytest.raises(ValueError):
        ATTACKS["jpeg"](torch.rand(3, 32, 32), 50)


# --- model-level attacks --------------------------------------------------------------------------


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_quantize_weights():
    m = _net()
    before = _state(m)
    q = quantize_weights(m, decimals=1)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # input untouched
    w = q[0].weight
    assert torch.allclose(w, torch.round(w * 10) / 10)
    assert torch.equal(quantize_weights(m, decimals=6)[0].weight, torch.round(m[0].weight, decimals=6))
    b = quantize_weights(m, bits=3)[3].weight
    assert len(torch.unique(b)) <= 7
    assert torch.equal(q[1].running_var, m[1].running_var)  # buffers untouched
    with pytest.raises(ValueError):
        quantize_weights(m)


def test_weight_noise_and_prune():
    m = _net()
    before = _state(m)
    n = weight_noise(m, 0.1, seed=3)
    assert (n[0].weight - m[0].weight).std().item() == pytest.approx(0.1, rel=0.3)
    assert torch.equal(n[0].weight, weight_noise(m, 0.1, seed=3)[0].weight)
    assert torch.equal(weight_noise(m, 0.0)[0].weight, m[0].weight)
    p = prune_weights(m, 0.5)
    assert (p[0].weight == 0).float().mean().item() == pytest.approx(0.5)
    assert torch.equal(p[0].bias, m[0].bias)
    g = prune_weights(m, 0.25, scope="global")
    total = sum((g[i].weight == 0).sum().item() for i in (0, 3))
    assert total == round(0.25 * (8 * 16 + 16 * 4))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_finetune_runs_caller_step_on_a_copy():
    m = _net()
    before = _state(m)
    x, y = torch.randn(32, 8), torch.randn(32, 4)

    def step(model, opt, i):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    out, losses = finetune(m, step, 20, make_optimizer=lambda mm: torch.optim.Adam(mm.parameters(), lr=1e-2))
    assert len(losses) == 20 and losses[-1] < losses[0]
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not torch.equal(out[0].weight, m[0].weight) and not out.training


def test_shrink_keeps_the_smaller_copy_and_sharpen_adds_detail():
    from ganprint.perturb import ops

    x = _imgs()
    y = ATTACKS["shrink"](x, 0.5)
    assert y.shape[-2:] == tuple(max(1, round(n * 0.5)) for n in x.shape[-2:])
    with pytest.raises(ValueError, match="one scale per batch"):
        ops.shrink(x, torch.tensor([0.5, 0.25, 0.5, 0.5][:len(x)]))
    sharp = ATTACKS["sharpen"](x, 2.0)
    detail = lambda t: float((t - ops.gaussian_blur(t, 1.0)).abs().mean())  # noqa: E731
    assert detail(sharp) > 1.5 * detail(x)


def test_the_wild_suite_holds_the_social_network_and_screenshot_chains():
    specs = [c.spec for c in parse_attacks("wild")]
    assert "crop:0.9+shrink:0.5+jpeg:75" in specs and "shrink:0.7+sharpen:1+jpeg:80" in specs
    assert {"jpeg:90", "jpeg:75", "jpeg:50", "shrink:0.25", "crop:0.5", "rotate:5", "saturation:1.5"} <= set(specs)
