"""Helpers of the registry tests."""

from __future__ import annotations

from pathlib import Path

from ganprint.core.artifacts import save_export
from ganprint.nets.scalable import ScalableConfig, ScalableGenerator


def tiny_generator(folder: Path) -> Path:
    """A tiny shared scalable-G export (16-bit fingerprints, 8 px) in `folder`, to issue models from."""
    cfg = ScalableConfig(resolution=8, fingerprint_length=16, z_dim=4, w_dim=8, mapping_layers=1, channel_base=32,
                         channel_max=8, modulated_res=[4, 8])
    path = folder / "G.safetensors"
    save_export(path, ScalableGenerator(cfg), "scalable-G", cfg.to_dict())
    return path
