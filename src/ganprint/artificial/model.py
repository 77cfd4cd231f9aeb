"""The stega export as embed and detect open it: its kind, resolution and CelebA crop checked against the run's
settings, on the run's device and precision (`ganprint.inference.layout`)."""

from __future__ import annotations

import torch

from ganprint.core import bounds
from ganprint.core.artifacts import load_export, read_metadata
from ganprint.core.errors import GanprintError
from ganprint.inference.layout import open_device


def setup(model, resolution, celeba, device, need_encoder, batch_size, precision="fp32"
          ) -> tuple[torch.nn.Module, dict, int, torch.device, str]:
    """Check the batch size, load the model, pick the device (initialising torch.distributed under torchrun), the
    resolution and the precision ("fp32" or "bf16", resolved for that device)."""
    bounds.BATCH.check(batch_size, "`batch_size`")
    if resolution is not None:
        bounds.RESOLUTION.check(resolution, "`resolution`")
    dev, prec = open_device(device, precision)
    kinds = ("stega",) if need_encoder else ("stega", "stega-decoder")
    if need_encoder and read_metadata(model)["ganprint.kind"] == "stega-decoder":
        raise GanprintError(f"{model} is a decoder-only export; embedding needs the full 'stega' model")
    module, config, _meta = load_export(model, kind=kinds, device=dev)
    r = int(config["resolution"])
    if resolution is not None and int(resolution) != r:
        raise GanprintError(f"`resolution` {resolution} does not match the model's {r}; omit `resolution` or "
                            f"pass {r}")
    if celeba and r != 128:
        raise GanprintError(f"`celeba` needs a 128-px model, but {model} is {r}-px; drop `celeba`")
    return module, config, r, dev, prec
