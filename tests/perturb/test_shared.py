"""One library for training and evaluation: the same perturbation gives the same images in both."""

import subprocess
import sys

import pytest
import torch

from ganprint.perturb.attacks import ATTACKS, AttackSpecError, parse_attacks
from ganprint.perturb.augment import OPS, AugmentSpecError, build_augment
from ganprint.perturb.registry import PERTURBATIONS

DETERMINISTIC = ["jpeg", "webp", "blur", "crop", "cropnr", "resize", "rotate", "brightness", "contrast",
                 "saturation"]


def _x(n=4, r=32):
    base = torch.rand(n, 3, r // 4, r // 4, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(base, size=(r, r), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("name,strongest,attack", [("jpeg", 40.0, "jpeg"), ("jpegd", 40.0, "jpeg"),
                                                   ("blur", 1.5, "blur"), ("resize", 0.5, "resize")])
def test_training_at_full_strength_is_the_evaluation_attack(name, strongest, attack):
    x = _x()
    y = OPS[name](x, torch.ones(len(x)), strongest).clamp(0, 1)
    assert torch.allclose(y, ATTACKS[attack](x, strongest), atol=1e-6)


@pytest.mark.parametrize("name,attack", [("crop", "randcrop"), ("noise", "noise")])
def test_random_training_ops_draw_like_the_seeded_attack(name, attack):
    x = _x()
    for seed in (0, 1):
        y = OPS[name](x, torch.ones(len(x)), 0.3 if name == "noise" else 0.6, torch.Generator().manual_seed(seed))
        want = ATTACKS[attack](x, 0.3 if name == "noise" else 0.6, seed=seed)
        assert torch.equal(y.clamp(0, 1), want)
    assert not torch.equal(ATTACKS[attack](x, 0.6, seed=0), ATTACKS[attack](x, 0.6, seed=1))


@pytest.mark.parametrize("name", ["blur", "noise", "crop", "resize", "color"])
def test_training_at_zero_strength_is_the_identity(name):
    x = _x()
    y = OPS[name](x, torch.zeros(len(x)), OPS[name].default_max, torch.Generator().manual_seed(0))
    assert torch.allclose(y, x, atol=1e-6)


def test_training_jpeg_at_zero_strength_is_quality_100():
    x = _x()
    assert torch.allclose(OPS["jpeg"](x, torch.zeros(len(x)), 40.0), ATTACKS["jpeg"](x, 100), atol=1e-6)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_per_sample_strengths_match_one_attack_per_image(name):
    p = PERTURBATIONS[name]
    x = _x(3)
    s = [p.sweep[0], p.sweep[-1], p.sweep[len(p.sweep) // 2]]
    y = p.op(x, torch.tensor(s), None).clamp(0, 1)
    want = torch.cat([p(x[i:i + 1], v) for i, v in enumerate(s)])
    # a batch's blur kernel reaches 3 sigma of its largest sigma, so the others keep a little more of their tails
    assert torch.allclose(y, want, atol=2e-3 if name == "blur" else 1e-6)


def test_every_training_op_reads_a_registered_perturbation_and_its_bounds():
    for op in OPS.values():
        p = PERTURBATIONS[op.perturbation]
        lo, hi = p.bounds
        assert lo <= op.default_max <= hi
    # one table of bounds and parameter names: both faces accept and refuse the same strengths
    for bad_attack, bad_aug in [("crop:0.001", "crop:0.001"), ("jpeg:101", "jpeg:101"), ("blur:-1", "blur:-1")]:
        with pytest.raises(AttackSpecError, match="outside"):
            parse_attacks(bad_attack)
        with pytest.raises(AugmentSpecError, match="outside"):
            build_augment(bad_aug)
    assert build_augment("blur:k=5").ops == {"blur": pytest.approx(parse_attacks("blur:k=5")[0].strength)}
    assert "color" not in ATTACKS and set(ATTACKS) < set(PERTURBATIONS)  # training-only entries have no sweep


def test_importing_the_library_leaves_kornia_until_an_image_is_perturbed():
    code = ("import sys, ganprint.perturb.attacks, ganprint.perturb.augment, ganprint.evaluation.evaluate; "
            "sys.exit(3 if 'kornia' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
