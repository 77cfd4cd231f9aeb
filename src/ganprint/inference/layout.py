"""Where and how a network runs: the device (a torchrun rank's own), the precision, and the memory layout of its
weights and inputs."""

from __future__ import annotations

import torch

from ganprint.core import dist
from ganprint.core.errors import GanprintError
from ganprint.core.runtime import resolve_device, resolve_precision


def open_device(device: str, precision: str = "fp32") -> tuple[torch.device, str]:
    """The device `device` asks for (this rank's, initialising torch.distributed under torchrun) and the precision
    ("fp32" or "bf16") that `precision` resolves to on it."""
    dev = resolve_device(device)
    try:
        prec = resolve_precision(precision, dev)
    except ValueError as e:
        raise GanprintError(str(e)) from None
    dist.init(dev)
    return dist.local_device(dev), prec


def net_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def prepare(net: torch.nn.Module, dev: torch.device, precision: str, prefer_cl: bool = False) -> torch.nn.Module:
    """`net` with its weights in the precision it runs in, in the fastest layout.

    bf16 weights rather than bf16 autocast: the outputs are the same bit for bit (autocast casts the same weights
    and inputs to bf16 at every call), without the cast at every call."""
    return net.to(dtype=net_dtype(precision), memory_format=memory_format(dev, prefer_cl))


def memory_format(dev: torch.device, prefer_cl: bool = False) -> torch.memory_format:
    """channels_last on GPU, with several CPU threads, and for the networks that are faster in it on one thread
    (`prefer_cl`: the decoder, the fused InferenceEncoder); else the plain layout, in which the plain StegaEncoder
    (the fp32 path) runs faster on one thread."""
    if dev.type != "cpu" or prefer_cl or torch.get_num_threads() > 1:
        return torch.channels_last
    return torch.contiguous_format


def to_float01(img_u8: torch.Tensor, dev: torch.device, dtype: torch.dtype = torch.float32,
               prefer_cl: bool = False) -> torch.Tensor:
    """uint8 [N, 3, R, R] -> [N, 3, R, R] in [0, 1] on `dev` as `dtype` (divided in fp32, then rounded, as autocast
    would), in the layout the networks run fastest on."""
    return img_u8.to(dev).float().div_(255.0).to(dtype).contiguous(memory_format=memory_format(dev, prefer_cl))
