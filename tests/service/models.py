"""Small models for the service tests and benchmarks, made in seconds on a CPU.

A real scalable decoder takes hours to train (benchmarks/RESULTS-scalable.md). The service only passes images
to whichever decoder it is given, so these tests use a stand-in: a random shared generator, an issued model
#1 (to alice) and #2 (to bob), and a random decoder whose output layer is *fitted* (a logistic regression on
its own last features) to read #1's fingerprint from #1's generated images and the complement of it from a
fixed set of clean photos. #1's images are then attributed to #1 and those photos to nobody, through exactly
the code paths a trained decoder would take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganprint.core.artifacts import save_export
from ganprint.core.images import read_image
from ganprint.data.samples import write_samples
from ganprint.nets.scalable import ScalableConfig, ScalableDecoder, ScalableGenerator
from ganprint.scalable.generate import generate
from ganprint.scalable.issue import issue_model


def make_models(root: Path, resolution: int = 16, bits: int = 32, images: int = 12, photos: int = 24,
                registry: str | None = None) -> dict:
    """Write G, an issued pair, #1's images, clean photos and a fitted decoder under `root`; returns their paths."""
    torch.manual_seed(0)
    levels = [r for r in (4, 8, 16, 32, 64, 128) if r <= resolution]
    cfg = ScalableConfig(resolution=resolution, fingerprint_bits=bits, z_dim=8, w_dim=32, mapping_layers=2,
                         channel_base=512, channel_max=32, modulated_res=levels)
    root.mkdir(parents=True, exist_ok=True)
    g_path = save_export(root / "G.safetensors", ScalableGenerator(cfg), "scalable-G", cfg.to_dict())
    reg = registry or str(root / "registry.sqlite")
    first = issue_model(g_path, reg, root / "issued", who="alice")
    second = issue_model(g_path, reg, root / "issued", who="bob")
    gen = generate(first["issued_path"], list(range(images)), root / "alice-images", device="cpu")
    clean = write_samples(root / "photos", resolution=resolution, count=photos, seed=1)
    pos = np.stack([read_image(p) for p in gen])
    neg = np.stack([read_image(p) for p in clean])
    dec_path = root / "scalable-decoder.safetensors"
    save_export(dec_path, _fit(cfg, pos, neg, torch.as_tensor(_bits(first["bits_hex"], bits))),
                "scalable-decoder", cfg.to_dict())
    return {"G": g_path, "decoder": dec_path, "registry": reg, "issued": [first, second],
            "alice_images": gen, "photos": clean, "root": root}


def _bits(hex_text: str, k: int) -> np.ndarray:
    from ganprint.core.fingerprints import parse_bits

    return parse_bits(hex_text, k).numpy()


def _fit(cfg: ScalableConfig, pos: np.ndarray, neg: np.ndarray, f: torch.Tensor) -> ScalableDecoder:
    """A random decoder whose output layer is a logistic regression on its own last features (pos vs neg),
    scaled by +-1 per bit: logits = (2f - 1) * score, so pos images read f and neg images read 1 - f."""
    from sklearn.linear_model import LogisticRegression

    dec = ScalableDecoder(cfg).eval()
    x = torch.from_numpy(np.concatenate([pos, neg])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    feats = []
    hook = dec.net.epilogue.fc.register_forward_hook(lambda m, i, o: feats.append(o))
    with torch.no_grad():
        dec(x)
    hook.remove()
    h = feats[0].numpy()  # [N, C]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    clf = LogisticRegression(C=100.0, max_iter=5000).fit(h, y)
    w = torch.from_numpy(clf.coef_[0]).float()  # [C]
    b = float(clf.intercept_[0])
    out = dec.net.epilogue.out
    sign = 2 * f - 1  # [K]
    with torch.no_grad():
        scale = 10.0  # sharp logits; the sign is what decode_bits reads
        out.weight[cfg.z_dim:] = scale * sign[:, None] * w[None] / out.weight_gain
        out.bias[cfg.z_dim:] = scale * sign * b / out.bias_gain
    return dec
