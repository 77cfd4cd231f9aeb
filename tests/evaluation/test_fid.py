"""FID/KID math against independent scipy/sklearn computations; the FID Inception with random weights
saved in pytorch-fid's key layout (nothing is downloaded)."""

import numpy as np
import pytest
import torch
from scipy import linalg
from sklearn.metrics.pairwise import polynomial_kernel

from ganprint.core.errors import GanprintError
from ganprint.core.images import write_png
from ganprint.evaluation import fid as fidmod
from ganprint.evaluation.fid import (
    INCEPTION_SHA256,
    FidSpec,
    InceptionWeightsError,
    compute_fid_kid,
    dataset_features,
    feature_stats,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    load_inception,
)
from ganprint.nets.inception import FIDInceptionV3


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 2, 16), rng.uniform(0.5, 2, 16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))  # diagonal covariances
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    # general covariances vs an eigenvalue computation: Tr((S1 S2)^(1/2)) = sum sqrt(eig(S1 S2))
    m1, m2 = rng.normal(size=(16, 16)), rng.normal(size=(16, 16))
    s1, s2 = m1 @ m1.T + np.eye(16), m2 @ m2.T + np.eye(16)
    tr = np.sum(np.sqrt(linalg.eigvals(s1 @ s2).real))
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-7)
    # and vs pytorch-fid's formula (scipy.linalg.sqrtm of the product)
    pf = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(pf, rel=1e-7)


def test_fid_from_features_self_and_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 8))
    assert abs(fid_from_features(x, x)) < 1e-8
    y = rng.normal(size=(2000, 8)) + 1.0  # shift of 1 in each of 8 dims: FID -> 8
    assert fid_from_features(x, y) == pytest.approx(8.0, abs=0.4)
    mu, cov = feature_stats(x)
    assert mu.shape == (8,) and cov.shape == (8, 8)
    # fewer samples than dimensions: the rank-N shortcut equals the full computation
    a, b = rng.normal(size=(5, 30)), rng.normal(size=(7, 30)) * 2
    assert fid_from_features(a, b) == pytest.approx(frechet_distance(*feature_stats(a), *feature_stats(b)), rel=1e-8)


def test_kid_matches_direct_sklearn_computation():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 10)), rng.normal(size=(60, 10)) + 0.5
    kxx = polynomial_kernel(x, degree=3, gamma=1 / 10, coef0=1)
    kyy = polynomial_kernel(y, degree=3, gamma=1 / 10, coef0=1)
    kxy = polynomial_kernel(x, y, degree=3, gamma=1 / 10, coef0=1)
    m = 60
    ref = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    mean, std = kid_from_features(x, y, num_subsets=3, subset_size=60)  # full sets: every subset is a permutation
    assert mean == pytest.approx(ref, rel=1e-9) and std == pytest.approx(0, abs=1e-12)
    same, _ = kid_from_features(rng.normal(size=(500, 10)), rng.normal(size=(500, 10)), 20, 200)
    assert abs(same) < 0.01 < kid_from_features(x, y, 5, 50)[0]


# --- the network -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    torch.manual_seed(0)
    m = FIDInceptionV3().eval()
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(m.state_dict(), path)
    return m, path


def test_key_layout_is_pytorch_fid():
    sd = FIDInceptionV3().state_dict()
    assert len(sd) == 566  # pytorch-fid's file holds 566 tensors: 94 conv+BN blocks (6 each) and fc
    assert sd["fc.weight"].shape == (1008, 2048)
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert sd["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)


def test_load_random_weights_shapes_and_equal_outputs(random_weights):
    ref, path = random_weights
    model, digest = load_inception(path, allow_unverified=True)
    assert digest != INCEPTION_SHA256
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = model(x)
        assert f.shape == (2, 2048) and torch.isfinite(f).all()
        assert torch.equal(f, ref(x))


def test_wrong_digest_refused_and_missing_file_explained(random_weights, tmp_path, monkeypatch):
    _, path = random_weights
    with pytest.raises(InceptionWeightsError, match="SHA-256"):
        load_inception(path)
    monkeypatch.delenv(fidmod.ENV_WEIGHTS, raising=False)
    with pytest.raises(InceptionWeightsError, match="GANPRINT_INCEPTION") as e:
        load_inception(None)
    assert "pt_inception-2015-12-05-6726825d.pth" in str(e.value) and isinstance(e.value, GanprintError)
    with pytest.raises(InceptionWeightsError, match="does not exist"):
        load_inception(tmp_path / "nope.pth")
    monkeypatch.setenv(fidmod.ENV_WEIGHTS, str(path))
    assert load_inception(None, allow_unverified=True)[1] != INCEPTION_SHA256
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(InceptionWeightsError, match="not a pytorch-fid"):
        load_inception(bad, allow_unverified=True)


def _folder(d, n, seed):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_png(d / f"{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return d


def test_dataset_features_cached_and_invalidated(random_weights, tmp_path, monkeypatch):
    ref, _ = random_weights
    data = _folder(tmp_path / "a", 3, 0)
    cache = tmp_path / "cache"
    f1 = dataset_features(data, 16, ref, "digest", cache)
    assert f1.shape == (3, 2048) and len(list(cache.glob("*.npz"))) == 1
    calls = []
    monkeypatch.setattr(fidmod, "extract_features", lambda *a, **k: calls.append(1) or np.zeros((3, 2048)))
    assert np.array_equal(dataset_features(data, 16, ref, "digest", cache), f1) and not calls  # cache hit
    dataset_features(data, 16, ref, "other-weights", cache)  # other weights: recomputed
    _folder(data, 4, 1)  # the listing changed
    dataset_features(data, 16, ref, "digest", cache)
    assert len(calls) == 2


def test_compute_fid_kid_end_to_end(random_weights, tmp_path):
    _, path = random_weights
    a, b = _folder(tmp_path / "a", 4, 0), _folder(tmp_path / "b", 4, 1)
    out = compute_fid_kid(data_a=a, data_b=b, resolution=16, inception=path, allow_unverified=True,
                          cache_dir=tmp_path / "c", device="cpu", kid_subsets=3)
    assert np.isfinite(out["fid"]) and out["fid"] > 0 and np.isfinite(out["kid"])
    assert out["weights_verified"] is False and out["n_a"] == 4
    with pytest.raises(InceptionWeightsError):
        compute_fid_kid(FidSpec(a, b, 16, inception=path, cache_dir=tmp_path / "c"))
