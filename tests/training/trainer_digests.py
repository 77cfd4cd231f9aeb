"""Digests of what tiny runs of the four trainers export, straight and interrupted-then-resumed.

`python -m tests.training.trainer_digests OUT.json` writes them; `test_same_weights.py` compares them with the
digests stored in `trainer_digests.json` (recorded on the code before the training kit took the trainers' data
pipelines, GAN losses and clocks), so that a refactoring of the trainers that changes one weight bit fails.
Every exported `.safetensors` file of a run folder is digested, tensor by tensor (name, dtype, shape, bytes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from tests.artificial.test_train import DictDataset as Images  # seeded uint8 {"img", "index"} items


def _png_folder(root: Path, n: int, res: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def folder_digests(outdir: Path) -> dict[str, str]:
    """{file name: sha256 over its tensors} for every export of a run folder."""
    out = {}
    for path in sorted(outdir.glob("*.safetensors")):
        h = hashlib.sha256()
        for name, t in sorted(load_file(str(path)).items()):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.contiguous().numpy().tobytes())
        out[path.name] = h.hexdigest()
    return out


def _stega_config(**kw):
    from ganprint.artificial.config import TrainConfig

    return TrainConfig(resolution=16, fingerprint_length=8, batch_size=4, steps=6, lr=1e-3, init="he",
                       identity_warmup=1, decoder_polish=1, l2_schedule="psnr", l2_threshold=0.0, l2_await=0,
                       l2_weight=1.0, augment="noise", seed=5, **kw).validate()


_STEGA_OPTIONS = dict(device="cpu", checkpoint_every=0, log_every=1, progress=False)


def stega_folder(work: Path, workers: int = 0) -> dict[str, str]:
    """A stega run on a folder of PNGs, not cached: decoded per batch here or by `workers` processes."""
    from ganprint.artificial.train import train_stega

    cfg = dataclasses.replace(_stega_config(), data=str(_png_folder(work / "png16", 10, 16)), augment=None)
    train_stega(cfg, work / "stega-folder", cache_bytes=0, workers=workers, **_STEGA_OPTIONS)
    return folder_digests(work / "stega-folder")


def _stega(work: Path) -> dict[str, dict[str, str]]:
    from ganprint.artificial.train import train_stega

    cfg = _stega_config()
    train_stega(cfg, work / "stega", data=Images(n=10, r=16), **_STEGA_OPTIONS)
    stop_at_3 = lambda step, _: step == 3  # noqa: E731 - the callback stops the run after its third step
    train_stega(cfg, work / "stega-resumed", data=Images(n=10, r=16), callback=stop_at_3, **_STEGA_OPTIONS)
    train_stega(cfg, work / "stega-resumed", data=Images(n=10, r=16), **_STEGA_OPTIONS)
    return {"stega": folder_digests(work / "stega"), "stega-resumed": folder_digests(work / "stega-resumed"),
            "stega-folder": stega_folder(work)}


def _gan(work: Path) -> dict[str, dict[str, str]]:
    from ganprint.gan.config import GanTrainConfig
    from ganprint.gan.train import train_gan
    from ganprint.nets.stylegan2 import DiscriminatorConfig, GeneratorConfig

    cfg = GanTrainConfig(
        preset="test",
        G=GeneratorConfig(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16),
        D=DiscriminatorConfig(img_resolution=16, channel_base=128, channel_max=16),
        batch_size=4, total_kimg=0.024, kimg_per_tick=0.008, snapshot_kimg=0.012, r1_interval=2, pl_interval=2,
        style_mixing_prob=0.5, grid_seeds=4, mirror=True, ema_kimg=0.01, seed=3)
    train_gan(cfg, work / "gan", Images(n=10, r=16), device="cpu")
    train_gan(dataclasses.replace(cfg, total_kimg=0.012), work / "gan-resumed", Images(n=10, r=16), device="cpu")
    train_gan(cfg, work / "gan-resumed", Images(n=10, r=16), device="cpu")
    return {k: folder_digests(work / k) for k in ("gan", "gan-resumed")}


def _scalable(work: Path) -> dict[str, dict[str, str]]:
    from ganprint.scalable.config import ScalableTrainConfig, resolve_config
    from ganprint.scalable.train import train_scalable

    fields = {f.name for f in dataclasses.fields(ScalableTrainConfig)}
    k = "fingerprint_length" if "fingerprint_length" in fields else "fingerprint_bits"
    data = str(_png_folder(work / "png16s", 10, 16))

    def cfg(kimg, augment=None):
        return resolve_config("tiny", data=data, resolution=16, modulated_res="4-16", kimg=kimg, seed=3,
                              augment=augment, device="cpu", **{k: 12})

    train_scalable(cfg(0.024), work / "scalable")
    train_scalable(cfg(0.012), work / "scalable-resumed")
    train_scalable(cfg(0.024), work / "scalable-resumed")
    # The augmentation's strength follows the run's length: an augmented run is compared straight only.
    train_scalable(cfg(0.016, "noise"), work / "scalable-augmented")
    return {k: folder_digests(work / k) for k in ("scalable", "scalable-resumed", "scalable-augmented")}


def _diffusion(work: Path) -> dict[str, dict[str, str]]:
    from ganprint.diffusion.config import PRESETS
    from ganprint.diffusion.train import train_diffusion

    base = PRESETS["tiny-16"]

    def cfg(kimg):
        return dataclasses.replace(base, snapshot_kimg=0.024, kimg_per_tick=0.024, grid_seeds=0, total_kimg=kimg,
                                   mirror=True, seed=2).validate()

    train_diffusion(cfg(0.048), work / "diffusion", Images(n=12, r=16), device="cpu")
    train_diffusion(cfg(0.024), work / "diffusion-resumed", Images(n=12, r=16), device="cpu")
    train_diffusion(cfg(0.048), work / "diffusion-resumed", Images(n=12, r=16), device="cpu")
    return {k: folder_digests(work / k) for k in ("diffusion", "diffusion-resumed")}


TRAINERS = {"stega": _stega, "gan": _gan, "scalable": _scalable, "diffusion": _diffusion}


def digests(work: Path, trainers=tuple(TRAINERS)) -> dict[str, dict[str, str]]:
    torch.set_num_threads(1)
    out: dict[str, dict[str, str]] = {}
    for name in trainers:
        out.update(TRAINERS[name](work))
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        result = {"torch": torch.__version__, "digests": digests(Path(tmp), sys.argv[2:] or tuple(TRAINERS))}
    Path(sys.argv[1]).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
