"""Atomic writes: results appear whole, with the mode any file written under the umask gets."""

from __future__ import annotations

import os
import stat

import torch

from ganprint.core.artifacts import save_export, save_training_state
from ganprint.core.files import atomic_write_bytes, atomic_write_json


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        import ganprint.core.files as files

        expected = 0o666 & ~files._UMASK
        paths = [
            save_export(tmp_path / "m.safetensors", torch.nn.Linear(2, 2), "stega", {}),
            save_training_state(tmp_path / "run", 1, {"step": 1}),
            atomic_write_bytes(tmp_path / "b.png", b"x"),
        ]
        atomic_write_json(tmp_path / "c.json", {"a": 1})
        paths.append(tmp_path / "c.json")
        for p in paths:
            assert _mode(p) == expected, (p, oct(_mode(p)))
            assert _mode(p) & stat.S_IRGRP  # a colleague can read a shared model
    finally:
        os.umask(old)
    assert not list(tmp_path.rglob("*.tmp"))
