"""Shared pytest fixtures: tiny image folders and a tiny exported stega model (CPU, offline, fast)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# Tests run on shared CPUs: one thread each unless the caller says otherwise.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    """The runs of the docs (mark `docs`) take minutes of CPU each: they run when tests/test_docs.py is named on
    the command line or `-m` names them (`make test` runs them after the rest), not in a plain `pytest`."""
    if any("test_docs.py" in str(arg) for arg in config.args) or "docs" in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("docs") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("docs") is None]


def make_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour image uint8 [H, W, 3] (smooth so that JPEG keeps it recognisable)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((h, w, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(0.02, 0.2, 3)
        out[..., c] = 127.5 + 100 * np.sin(a * x + p * 10) * np.cos(b * y) + rng.normal(0, 8, (h, w))
    return np.clip(out, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, n: int = 6, seed: int = 0, sizes=((40, 48), (64, 32), (32, 32))) -> list[Path]:
    """Write `n` small images of mixed sizes and formats (png, jpg; some in a subfolder) under `root`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        ext = ".jpg" if i % 3 == 1 else ".png"
        sub = root / "sub" if i % 2 else root
        sub.mkdir(exist_ok=True)
        p = sub / f"img{i:02d}{ext}"
        Image.fromarray(make_image(rng, h, w)).save(p, quality=95) if ext == ".jpg" else \
            Image.fromarray(make_image(rng, h, w)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A folder of 6 small mixed-size png/jpg images (3 of them in `sub/`)."""
    root = tmp_path / "images"
    write_image_folder(root)
    return root


@pytest.fixture(scope="session")
def sample_folder(tmp_path_factory) -> Path:
    """24 sample crops of 32x32 px (`ganprint.data.samples.write_samples`, seed 0), shared by the session."""
    from ganprint.data.samples import write_samples

    root = tmp_path_factory.mktemp("samples")
    write_samples(root, resolution=32, count=24, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_stega_model(tmp_path_factory) -> Path:
    """An untrained StegaModel(StegaConfig(32, 8)) (seed 0) exported as kind 'stega'."""
    from ganprint.core.artifacts import save_export
    from ganprint.nets.stega import StegaConfig, StegaModel, stega_config_dict

    torch.manual_seed(0)
    model = StegaModel(StegaConfig(32, 8))
    path = tmp_path_factory.mktemp("model") / "stega32.safetensors"
    save_export(path, model, "stega", stega_config_dict(model.cfg))
    return path


@pytest.fixture(scope="session")
def tiny_stega_decoder(tmp_path_factory, tiny_stega_model) -> Path:
    """The decoder half of `tiny_stega_model`, exported as kind 'stega-decoder'."""
    from ganprint.core.artifacts import load_export, save_export
    from ganprint.nets.stega import StegaDecoderOnly, stega_config_dict

    model, _, _ = load_export(tiny_stega_model, kind="stega")
    dec = StegaDecoderOnly(model.cfg)
    dec.dec.load_state_dict(model.dec.state_dict())
    path = tmp_path_factory.mktemp("model") / "stega32-decoder.safetensors"
    save_export(path, dec, "stega-decoder", stega_config_dict(model.cfg))
    return path


# `trained_stega16`: a stega model trained here (16 px, 16 bits), shared by the tests that need one that works.
TRAINED_R, TRAINED_K = 16, 16
TRAINED_TARGET = 0.99  # held-out bit accuracy at which training stops
TRAINED_MAX_STEPS = 600  # the seed below gets there in a few hundred steps; a broken trainer never does
TRAINED_N_HELDOUT = 24


def _heldout_accuracy(model, x: torch.Tensor) -> float:
    """Bit accuracy of `model` on images x [N, 3, R, R] in [0, 1], read back after rounding to 8 bits."""
    bits = torch.randint(0, 2, (len(x), TRAINED_K), generator=torch.Generator().manual_seed(1)).float()
    with torch.no_grad():
        fp = (model.enc(bits, x) * 255).round() / 255
        return float(((model.dec(fp) > 0).float() == bits).float().mean())


@pytest.fixture(scope="session")
def trained_stega16(tmp_path_factory) -> dict:
    """A stega model trained on sample crops of the training photos until it reads its bits back from 8-bit images
    of the held-out photos (other scenes) at >= TRAINED_TARGET: {"root" (train/ and heldout/ photos), "model" (the
    export), "curve" ([(step, held-out accuracy)])}. Trained once per session."""
    import ganprint
    from ganprint.artificial.config import TrainConfig
    from ganprint.data.folders import open_image_dataset
    from ganprint.data.samples import write_samples

    root = tmp_path_factory.mktemp("stega-trained")
    write_samples(root / "train", resolution=TRAINED_R, count=256, seed=0, photos="train")
    write_samples(root / "heldout", resolution=TRAINED_R, count=TRAINED_N_HELDOUT, seed=1, photos="heldout")
    ds = open_image_dataset(root / "heldout", TRAINED_R)
    x = torch.stack([ds[i]["img"] for i in range(len(ds))]).float() / 255  # [N, 3, R, R]
    curve: list[tuple[int, float]] = []

    def stop_when_learned(step: int, model) -> bool:
        curve.append((step, _heldout_accuracy(model, x)))
        return curve[-1][1] >= TRAINED_TARGET

    cfg = TrainConfig(data=str(root / "train"), resolution=TRAINED_R, fingerprint_length=TRAINED_K, batch_size=32,
                      steps=TRAINED_MAX_STEPS, lr=5e-4, lr_warmup=50, init="he", l2_schedule="psnr", l2_await=0,
                      l2_weight=1.0, target_psnr=28.0, seed=0, device="cpu")
    model = ganprint.train(cfg, root / "run", log_every=25, snapshot_every=0, checkpoint_every=0, progress=False,
                           callback=stop_when_learned)
    return {"root": root, "model": Path(model), "curve": curve}


@pytest.fixture(scope="session")
def reactive_stega_model(tmp_path_factory, tiny_stega_model) -> Path:
    """`tiny_stega_model` with its decoder's biases zeroed: untrained, it reads different bits from different images
    (the untrained decoder with its biases reads the same 8 bits from every image), so that a check can be both
    positive and negative without training a model."""
    from ganprint.core.artifacts import load_export, save_export

    model, config, _ = load_export(tiny_stega_model, kind="stega")
    with torch.no_grad():
        for name, p in model.dec.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return save_export(tmp_path_factory.mktemp("model") / "reactive32.safetensors", model, "stega", config)


@pytest.fixture(scope="session")
def reactive_onnx(tmp_path_factory, reactive_stega_model) -> Path:
    """`reactive_stega_model`'s decoder as an ONNX graph (`ganprint export --format onnx`); skips without the onnx
    extra."""
    for extra in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(extra, reason="the onnx extra: pip install 'ganprint[onnx]'")
    from ganprint.nets.onnx import export_onnx

    out = tmp_path_factory.mktemp("model") / "reactive32.onnx"
    export_onnx(reactive_stega_model, out)
    return out


def missing_component(reason: str) -> None:
    """Skip a test whose real component (PostgreSQL, chromium) is not installed; in CI, where `make test`
    installs it, its absence is a failure rather than a silent skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: make test runs tools/system-deps.sh)")
    pytest.skip(reason)
