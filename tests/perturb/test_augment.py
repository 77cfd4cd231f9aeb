"""Immunization augmentations: shape, range, gradient, ramp, specs."""

import pytest
import torch
from kornia.enhance import jpeg_codec_differentiable

from ganprint.core.errors import GanprintError
from ganprint.perturb.augment import DEFAULT_SPEC, OPS, AugmentSpecError, build_augment, wrap_pm1
from ganprint.perturb.ops import codec

DEFAULT_OPS = DEFAULT_SPEC.split(",")


def _x(n=12, r=32):
    return torch.rand(n, 3, r, r, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("spec", ["default", *DEFAULT_OPS, "jpegd"])
def test_shape_range_gradient(spec):
    aug = build_augment(spec)
    x = _x().requires_grad_(True)
    before = x.detach().clone()
    y = aug(x, 1.0, generator=torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    assert not torch.allclose(y, x), f"{spec} at full strength changed nothing"
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.equal(x.detach(), before)


def test_jpeg_is_straight_through():
    aug = build_augment("jpeg")
    x = _x(4).requires_grad_(True)
    y = None
    for seed in range(20):  # find a draw where every sample got the codec (pick != identity)
        y = aug(x, 1.0, generator=torch.Generator().manual_seed(seed))
        if (y - x).abs().flatten(1).amax(1).gt(0).all():
            break
    w = torch.randn_like(y)
    (y * w).sum().backward()
    inside = ((y > 0) & (y < 1)).detach()  # the final clamp zeroes the gradient where it saturates
    assert torch.allclose(x.grad[inside], w[inside])


def test_jpegd_forward_is_the_real_codec_and_backward_the_surrogate():
    x = _x(3).requires_grad_(True)
    u = torch.tensor([1.0, 0.5, 0.0])  # qualities 40, 70, 100
    y = OPS["jpegd"](x, u, 40.0)
    real = torch.cat([codec(x[i:i + 1].detach(), "JPEG", q) for i, q in enumerate((40, 70, 100))])
    assert torch.allclose(y, real, atol=1e-6)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    (jpeg_codec_differentiable(x2, torch.tensor([40.0, 70.0, 100.0])) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)
    assert not torch.allclose(x.grad, w, atol=1e-2)  # not the identity gradient of "jpeg"
    with pytest.raises(AugmentSpecError, match="divisible by 16"):
        OPS["jpegd"](_x(1, 24), torch.ones(1), 40.0)


def test_ramp_progress_zero_is_identity_and_strength_grows():
    aug = build_augment("default")
    x = _x()
    assert torch.equal(aug(x, 0.0), x)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    d_mid = (aug(x, 0.1, generator=g()) - x).abs().mean()
    d_full = (aug(x, 1.0, generator=g()) - x).abs().mean()
    assert 0 < d_mid < d_full
    assert aug.ramp(0.25) == pytest.approx(0.5) and aug.ramp(0.9) == 1.0


def test_reproducible_with_generator():
    aug = build_augment("default")
    x = _x()
    a = aug(x, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, aug(x, 1.0, generator=torch.Generator().manual_seed(7)))


def test_specs():
    assert build_augment("jpeg:30,noise:0.1").ops == {"jpeg": 30.0, "noise": 0.1}
    assert build_augment("jpegd").ops == {"jpegd": 40.0}
    assert set(build_augment("default").ops) == set(DEFAULT_OPS)
    x = _x()
    assert torch.equal(build_augment("none")(x, 1.0), x)
    for bad in ("jpgg", "jpeg:abc", "crop:2", "jpeg:0", "jpegd:101"):
        with pytest.raises(AugmentSpecError) as e:
            build_augment(bad)
        assert isinstance(e.value, GanprintError)


def test_pm1_wrapper():
    aug = wrap_pm1(build_augment("noise"))
    x = _x() * 2 - 1
    y = aug(x, 1.0, generator=torch.Generator().manual_seed(0))
    assert y.min() >= -1 and y.max() <= 1 and not torch.equal(x, y)
    assert torch.allclose(aug(x, 0.0), x, atol=1e-6)


def test_skew_moves_strength_towards_the_maximum():
    x = torch.full((512, 3, 8, 8), 0.5)
    def mean_noise(skew):  # noise is the only op, so the residual's std is the drawn strength
        aug = build_augment("noise:0.1", skew=skew)
        y = aug(x, 1.0, generator=torch.Generator().manual_seed(0))
        return (y - x).flatten(1).std(dim=1)  # [N] per-sample strength (0 for the identity picks)
    uniform, skewed = mean_noise(1.0), mean_noise(3.0)
    picked_u, picked_s = uniform[uniform > 0], skewed[skewed > 0]
    # E[u] = 1/2 for skew 1 and skew / (skew + 1) = 3/4 for skew 3 (times the maximum 0.1).
    assert picked_u.mean() == pytest.approx(0.05, abs=0.006)
    assert picked_s.mean() == pytest.approx(0.075, abs=0.006)
    with pytest.raises(AugmentSpecError):
        build_augment("noise", skew=0)
