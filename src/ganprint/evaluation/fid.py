"""FID and KID in the standard FID Inception-v3 feature space, with cached data-set statistics.

The weights are never downloaded: give the file as `inception` or in the environment variable
GANPRINT_INCEPTION. The expected file is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`; it is checked
by SHA-256 (`INCEPTION_SHA256`) before use. Features of a data set are cached in `cache_dir`
(GANPRINT_CACHE/fid or ~/.cache/ganprint/fid) under a key made of the file listing (relative path, size,
mtime), the resolution and the weights digest, so an edited data set or other weights never reuse stale stats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from torch.utils.data import DataLoader

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_path, atomic_write_json, sha256_file
from ganprint.core.paths import check_new_file, check_overlap
from ganprint.core.progress import progress_bar
from ganprint.core.runtime import resolve_device
from ganprint.core.specs import Spec
from ganprint.data.folders import collate, list_images, open_image_dataset
from ganprint.nets.inception import FIDInceptionV3

log = logging.getLogger(__name__)

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILENAME
# Full SHA-256 of that file (95,628,359 bytes; torch.hub's check_hash only verifies the 8-digit prefix in the
# name). Taken from several independent public records of the file; the prefix agrees with the file name.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
ENV_WEIGHTS = "GANPRINT_INCEPTION"
FEATURE_DIM = 2048
_CACHE_VERSION = 1


class InceptionWeightsError(GanprintError):
    """The FID Inception weights are missing, unreadable or not the expected file."""


def _missing_message(where: str) -> str:
    return (f"FID/KID need the FID Inception-v3 weights ({where}). Nothing is downloaded at run time: on a machine "
            f"with internet, fetch {INCEPTION_URL} (95.6 MB, SHA-256 {INCEPTION_SHA256}), copy it to this machine, "
            f"e.g. to ~/.cache/ganprint/{INCEPTION_FILENAME}, and pass `inception` PATH or set {ENV_WEIGHTS}=PATH.")


def resolve_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The Inception weights file from `path`, else $GANPRINT_INCEPTION; raises InceptionWeightsError if absent."""
    if path is None:
        env = os.environ.get(ENV_WEIGHTS)
        if not env:
            raise InceptionWeightsError(_missing_message(f"no `inception` given and {ENV_WEIGHTS} is not set"))
        path, where = env, f"{ENV_WEIGHTS}={env}"
    else:
        where = f"`inception` {path}"
    p = Path(path).expanduser()
    if not p.is_file():
        raise InceptionWeightsError(_missing_message(f"{where} does not exist"))
    return p


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   allow_unverified: bool = False) -> tuple[torch.nn.Module, str]:
    """Load the FID Inception-v3 from a pytorch-fid-layout state_dict file; returns (model in eval mode, sha256).

    A file whose SHA-256 differs from INCEPTION_SHA256 is refused unless `allow_unverified` (for tests with
    random weights; the features are then not comparable with published FIDs, and a warning says so).
    """
    p = resolve_weights_path(path)
    digest = sha256_file(p)
    if digest != INCEPTION_SHA256:
        if not allow_unverified:
            raise InceptionWeightsError(
                f"{p} has SHA-256 {digest[:16]}..., not the FID Inception weights ({INCEPTION_SHA256[:16]}...); "
                f"FIDs computed with it would not be comparable. Get {INCEPTION_URL} (see docs/evaluation.md)")
        log.warning("using UNVERIFIED Inception weights %s (sha256 %s): FID/KID values are not standard", p,
                    digest[:16])
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user problem
        raise InceptionWeightsError(f"cannot read Inception weights {p}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = FIDInceptionV3()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise InceptionWeightsError(f"{p} is not a pytorch-fid Inception-v3 state_dict: {str(e)[:300]}") from None
    return model.to(device).eval(), digest


# --- the math -------------------------------------------------------------------------------------------


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of features [N, D] in float64 (covariance with N - 1, as pytorch-fid)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2, as sum(sqrt(eig(S1^(1/2) S2 S1^(1/2)))): the same value as
    pytorch-fid's scipy.linalg.sqrtm(S1 @ S2) trace, computed with two symmetric eigendecompositions (faster at
    D = 2048, and stable when the covariances are singular, e.g. with fewer images than dimensions)."""
    r = _sqrtm_psd(sigma1)
    m = r @ sigma2 @ r
    w = linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the Fréchet distance of two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError("the two sets of statistics have different dimensions")
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2))


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets [N1, D] and [N2, D] (exact; uses a rank-N shortcut when N < D)."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    (mu1, s1), (mu2, s2) = feature_stats(f1), feature_stats(f2)
    if min(len(f1), len(f2)) >= f1.shape[1]:
        return frechet_distance(mu1, s1, mu2, s2)
    # S = A^T A / (n - 1) with A the centred features [n, D]: the non-zero eigenvalues of S S' are those of the
    # small symmetric A S' A^T / (n - 1) [n, n], so Tr((S S')^(1/2)) needs no D x D decomposition.
    f, s_other = (f1, s2) if len(f1) <= len(f2) else (f2, s1)
    a = f - f.mean(axis=0)  # [n, D]
    m = a @ s_other @ a.T / (len(f) - 1)  # [n, n]
    tr = float(np.sqrt(np.clip(linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr)


def kid_from_features(f1: np.ndarray, f2: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3, averaged over
    `num_subsets` random subsets of min(subset_size, N1, N2) rows of each set (as torch-fidelity / StyleGAN2-ADA)."""
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    d = f1.shape[1]
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 features in each set")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(num_subsets):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


# --- features of images and data sets -------------------------------------------------------------------


@torch.no_grad()
def extract_features(model: torch.nn.Module, batches: Iterable[torch.Tensor], device: str | torch.device = "cpu",
                     total: int | None = None, desc: str = "inception") -> np.ndarray:
    """Features [N, 2048] (float32) of image batches; each batch uint8 [B, 3, H, W] or float in [0, 1]."""
    out = []
    with progress_bar(total, desc) as bar:
        for b in batches:
            if b.numel() == 0:
                continue
            x = b.to(device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            out.append(model(x).cpu().numpy().astype(np.float32))
            bar.update(b.shape[0])
    if not out:
        raise GanprintError("no images to compute Inception features of")
    return np.concatenate(out)


def _listing_key(path: Path, resolution: int, digest: str) -> str:
    path = Path(path)
    if path.is_dir() and (path / "dataset.json").is_file():
        files = sorted(p for p in path.iterdir() if p.is_file())
        root = path
    else:
        files = list_images(path)
        root = path if path.is_dir() else path.parent
    h = hashlib.sha256()
    h.update(json.dumps({"v": _CACHE_VERSION, "res": int(resolution), "weights": digest,
                         "root": str(path.resolve())}).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """$GANPRINT_CACHE/fid, else ~/.cache/ganprint/fid."""
    base = os.environ.get("GANPRINT_CACHE")
    return Path(base) / "fid" if base else Path.home() / ".cache" / "ganprint" / "fid"


def dataset_features(path: str | os.PathLike, resolution: int, model: torch.nn.Module, weights_digest: str,
                     cache_dir: str | os.PathLike | None = None, batch_size: int = 50,
                     device: str | torch.device = "cpu", use_cache: bool = True) -> np.ndarray:
    """Inception features [N, 2048] of every image of a data set at `resolution`, cached (see module docstring)."""
    path = Path(path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _listing_key(path, resolution, weights_digest)
    cfile = cache / f"features-{key[:24]}.npz"
    if use_cache and cfile.is_file():
        try:
            with np.load(cfile) as z:
                log.info("fid: cached features of %s (%s)", path, cfile)
                return z["features"]
        except (OSError, ValueError, KeyError) as e:
            log.warning("fid: ignoring unreadable cache %s (%s)", cfile, e)
    ds = open_image_dataset(path, resolution, skip_bad=True)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate)
    feats = extract_features(model, (b["img"] for b in loader), device, total=len(ds), desc=f"inception {path.name}")
    if use_cache:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(cfile) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, features=feats, mu=feats.mean(0, dtype=np.float64))
    return feats


@dataclass(frozen=True)
class FidSpec(Spec):
    """What one `ganprint metrics fid` is asked to do: FID (and, with `kid`, KID over `kid_subsets` subsets of
    `kid_subset_size` images) between the data sets `data_a` and `data_b` at `resolution`, with the `inception`
    weights (default: $GANPRINT_INCEPTION; `allow_unverified` accepts another file), features cached in
    `cache_dir`; the JSON also goes to the file `out` (an existing one only with `overwrite`)."""

    data_a: str | os.PathLike
    data_b: str | os.PathLike
    resolution: int
    inception: str | os.PathLike | None = None
    kid: bool = True
    cache_dir: str | os.PathLike | None = None
    batch_size: int = 50
    device: str = "auto"
    allow_unverified: bool = False
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    out: str | os.PathLike | None = None
    overwrite: bool = False

    def check(self) -> None:
        bounds.RESOLUTION.check(self.resolution, "`resolution`")
        bounds.BATCH.check(self.batch_size, "`batch_size`")


def compute_fid_kid(spec: FidSpec | None = None, **kwargs) -> dict:
    """FID (and KID) of a `FidSpec`, given as one or as its fields; returns a dict of results, also written as
    JSON to `out` when given. Neither `out` nor a given `cache_dir` may be, hold or lie inside an input."""
    spec = FidSpec.of(spec, **kwargs)
    inputs = [("`data_a`", spec.data_a, "data"), ("`data_b`", spec.data_b, "data"),
              ("`inception`", spec.inception, "weights")]
    check_overlap(inputs, [("`out`", spec.out, "file"), ("`cache_dir`", spec.cache_dir)])
    if spec.out is not None:
        check_new_file(spec.out, "`out`", spec.overwrite)
    dev = resolve_device(spec.device)
    model, digest = load_inception(spec.inception, dev, allow_unverified=spec.allow_unverified)
    fa, fb = (dataset_features(d, spec.resolution, model, digest, spec.cache_dir, spec.batch_size, dev)
              for d in (spec.data_a, spec.data_b))
    if min(len(fa), len(fb)) < 2:
        raise GanprintError("FID needs at least 2 images in each data set")
    res = {"data_a": str(spec.data_a), "data_b": str(spec.data_b), "n_a": int(len(fa)), "n_b": int(len(fb)),
           "resolution": int(spec.resolution), "fid": fid_from_features(fa, fb), "weights_sha256": digest,
           "weights_verified": digest == INCEPTION_SHA256}
    if min(len(fa), len(fb)) < FEATURE_DIM:
        log.warning("fid: fewer images (%d) than feature dimensions (%d): FID is biased upwards; prefer KID",
                    min(len(fa), len(fb)), FEATURE_DIM)
    if spec.kid:
        res["kid"], res["kid_std"] = kid_from_features(fa, fb, spec.kid_subsets, spec.kid_subset_size)
    if spec.out is not None:
        atomic_write_json(spec.out, res)
    return res
