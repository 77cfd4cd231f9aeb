"""CUDA checks (marked `gpu`, skipped without a device): the GPU paths give the CPU's answers.

Run with `pytest -m gpu tests/test_gpu.py`; `benchmarks/gpu_scalable.sh` runs them first, so that a broken CUDA path
fails in seconds instead of after minutes of training.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganprint import api
from ganprint.artificial.train import train_stega
from ganprint.cli import main
from ganprint.core.artifacts import load_export
from ganprint.core.files import read_jsonl
from ganprint.core.images import read_image
from ganprint.nets.scalable import ScalableGenerator, fold_fingerprint, seeded_inputs
from ganprint.api import generate
from tests.artificial.test_train import DictDataset, tiny_cfg
from tests.scalable.test_scalable import _cfg, _export, _packed_data, _perturbed, _train_args

# GANPRINT_GPU_TEST_DEVICE=cpu runs these tests' logic on the CPU (to check the tests themselves without a GPU).
DEV = os.environ.get("GANPRINT_GPU_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEV == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def no_tf32():
    """TF32 convolutions round to 10 mantissa bits; these comparisons are about code paths, not precision."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _img(p):
    return np.asarray(Image.open(p), dtype=int)


def test_stega_trains_embeds_and_detects_on_cuda(tmp_path, image_folder):
    final = train_stega(tiny_cfg(resolution=32, steps=20), tmp_path / "run", data=DictDataset(r=32), device=DEV,
                        checkpoint_every=0, log_every=10, progress=False)
    rows = read_jsonl(tmp_path / "run" / "stats.jsonl")
    assert [r["step"] for r in rows] == [10, 20] and all(np.isfinite(r["loss"]) for r in rows)
    model, _, _ = load_export(final, kind="stega")  # the export loads on CPU
    assert next(model.parameters()).device.type == "cpu"

    runs = {"ref": "cpu", "dev": DEV}
    s = {k: api.embed(final, image_folder, tmp_path / k, device=d, precision="fp32") for k, d in runs.items()}
    assert s["dev"]["fingerprinted"] == s["ref"]["fingerprinted"] == 6
    emb = (tmp_path / "ref" / "embedded_fingerprints.txt").read_text()
    assert (tmp_path / "dev" / "embedded_fingerprints.txt").read_text() == emb
    for name in [ln.split()[0] for ln in emb.splitlines()]:
        a, b = (read_image(tmp_path / k / "fingerprinted_images" / name).astype(int) for k in runs)
        assert np.abs(a - b).max() <= 1, name  # one 8-bit level: rounding of nearly equal floats
    auto = api.embed(final, image_folder, tmp_path / "auto", device=DEV)  # the device's default precision
    assert auto["fingerprinted"] == 6

    det = {k: api.detect(final, tmp_path / "ref" / "fingerprinted_images", tmp_path / f"det-{k}", device=d,
                         precision="fp32", embedded=tmp_path / "ref" / "embedded_fingerprints.txt")
           for k, d in runs.items()}
    assert det["dev"]["mean_bit_accuracy"] == pytest.approx(det["ref"]["mean_bit_accuracy"], abs=1 / 48 + 1e-9)


def test_scalable_generator_on_cuda_matches_cpu_and_folds():
    G = _perturbed(ScalableGenerator(_cfg())).eval()
    z, c, noise = seeded_inputs(G, [0, 1, 2])
    zd, cd, nd = z.to(DEV), c.to(DEV), [n.to(DEV) for n in noise]
    with torch.no_grad():
        want = G(z, c, noise=noise)
        Gc = G.to(DEV)
        got = Gc(zd, cd, noise=nd)
        assert torch.allclose(got.cpu(), want, atol=1e-4, rtol=0)
        unfused = Gc(zd, cd, noise=nd, fused=False)
        assert torch.allclose(unfused, got, atol=1e-4, rtol=0)  # training uses the other path
        folded = fold_fingerprint(Gc, cd[0])
        same_c = Gc(zd, cd[0:1].repeat(3, 1), noise=nd)
        assert torch.allclose(folded(zd, noise=nd), same_c, atol=1e-4, rtol=0)


def test_train_scalable_on_cuda_and_generate_like_cpu(tmp_path):
    data = _packed_data(tmp_path)
    args = [a if a != "cpu" else DEV for a in _train_args(data, tmp_path / "run", 0.008)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [a if a != "0.008" else "0.016" for a in args])  # resume on the GPU
    assert r.exit_code == 0, r.output
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 4
    metric = read_jsonl(tmp_path / "run" / "metric-bit-accuracy.jsonl")
    assert metric[-1]["kimg"] == 0.016 and 0 <= metric[-1]["bit_accuracy"] <= 1

    g_path, _ = _export(tmp_path)
    a = generate(g_path, [5, 6, 7], tmp_path / "gen-cpu", device="cpu")
    b = generate(g_path, [5, 6, 7], tmp_path / "gen-dev", device=DEV)
    for pa, pb in zip(a, b):
        assert np.abs(_img(pa) - _img(pb)).max() <= 1
    assert (tmp_path / "gen-cpu" / "fingerprints.txt").read_text() == \
        (tmp_path / "gen-dev" / "fingerprints.txt").read_text()
