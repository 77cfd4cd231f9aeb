"""One adapter for every decoder export: uint8 images in, fingerprint bits out, with PyTorch or ONNX Runtime.

`Decoder` reads a `stega` / `stega-decoder` export (artificial fingerprints, `[0, 1]` input) or a
`scalable-decoder` export (`[-1, 1]` input, the logits are its second output) and hides those differences:
callers hand it uint8 images in the `layout` they hold them in (`nchw` tensors from the data loaders, `nhwc` arrays
from image files and uploads) and get float 0/1 bits [N, K] on the CPU. With `runtime` onnx it exports the
decoder to ONNX once, keeps the ONNX Runtime session, and runs the same graph a verifier without PyTorch would
(the same bits; tested). `precision` bf16 runs the PyTorch network with bf16 weights and inputs.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

import numpy as np
import torch

from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.stats import decode_bits
from ganprint.inference.fullsize import tiled_logits
from ganprint.inference.layout import net_dtype, prepare, to_float01
from ganprint.nets.onnx import DECODER_KINDS, OnnxDecoder, onnx_runtime_for
from ganprint.nets.scalable import fingerprint_length_of
from ganprint.perturb.scale_search import ScaleSearch, min_confidence_for

STEGA_KINDS = ("stega", "stega-decoder")
RUNTIMES = ("torch", "onnx")
PRECISIONS = ("fp32", "bf16")
LAYOUTS = ("nchw", "nhwc")


@dataclasses.dataclass(frozen=True)
class DecoderOptions:
    """How a `Decoder` runs. `precision` is resolved already (fp32 or bf16; see `core.runtime.resolve_precision`)
    and applies to the PyTorch runtime: the ONNX graph computes in fp32. `threads`: ONNX Runtime's intra-op threads
    (default: torch's). `scales`: scale-search candidates (`perturb.scale_search`), stega decoders with PyTorch.
    `tiles` n > 1: the images are n R x n R views read as n x n tiles, their logits averaged
    (`inference.fullsize`, or `nets.onnx_runtime` with ONNX Runtime); stega decoders."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    runtime: str = "torch"
    layout: str = "nhwc"
    threads: int | None = None
    scales: tuple[float, ...] | None = None
    tiles: int = 1
    angles: tuple[float, ...] = ()  # the rotations the scale search also undoes ("wide")

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise GanprintError(f"`runtime` must be torch or onnx, got {self.runtime!r}")
        if self.precision not in PRECISIONS:
            raise GanprintError(f"`precision` must be fp32 or bf16 here, got {self.precision!r}")
        if self.layout not in LAYOUTS:
            raise GanprintError(f"the image layout must be nchw or nhwc, got {self.layout!r}")
        if self.runtime == "onnx" and self.scales is not None:
            raise GanprintError("`scale_search` runs with `runtime` torch only")


class Decoder:
    """A decoder export ready to read images: `bits(images) -> float 0/1 [N, K]` (CPU), `k`, `resolution`, `kind`.

    `loaded` is (module, config, kind) when the caller has loaded the export already (on `options.device`).
    """

    def __init__(self, path: str | os.PathLike, options: DecoderOptions | None = None,
                 kinds: tuple[str, ...] = DECODER_KINDS, loaded: tuple[Any, dict, str] | None = None):
        self.path, self.options = path, options or DecoderOptions()
        opts = self.options
        if loaded is None:
            module, config, meta = load_export(path, kind=kinds, device=opts.device)
            loaded = (module, config, meta["ganprint.kind"])
        module, self.config, self.kind = loaded
        self.scalable = self.kind == "scalable-decoder"
        if self.scalable and (opts.scales is not None or opts.tiles != 1):
            what = "`scale_search`" if opts.scales is not None else "`tiles`"
            raise GanprintError(f"{what} reads stega decoders; {path} is a scalable-decoder")
        self.k = fingerprint_length_of(self.config)
        self.resolution = int(self.config["resolution"])
        self.dtype = net_dtype(opts.precision)
        self.session: OnnxDecoder | None = None
        self.net: torch.nn.Module | None = None
        self.search: ScaleSearch | None = None
        if opts.runtime == "onnx":
            self.session = _onnx_session(path, opts.threads, opts.tiles)
        elif self.scalable:
            # weights keep their layout: the input is a channels-last view of the NHWC images already
            self.net = module.to(dtype=self.dtype)
        else:
            self.net = prepare(module.dec, opts.device, opts.precision, prefer_cl=True)
            if opts.scales is not None:
                # The candidates are unzoomed in fp32 and rounded to the network's dtype after, as under autocast;
                # unzoom keeps the input's layout (full_like), so they need no other conversion.
                self.search = ScaleSearch(lambda t: tiled_logits(self.net, t.to(self.dtype), opts.tiles).float(),
                                          opts.scales, min_confidence_for(opts.tiles), angles=opts.angles)

    def bits(self, images: np.ndarray | torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """uint8 images in `layout` -> float 0/1 bits [N, K] on the CPU, `batch_size` images at a time (default:
        all at once). Without scale search; `decode` gives the chosen scales too."""
        n = len(images)
        step = batch_size or max(n, 1)
        out = [self.decode(images[s:s + step])[0] for s in range(0, n, step)]
        return torch.cat(out) if out else torch.zeros(0, self.k)

    @torch.inference_mode()
    def decode(self, images: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, list[float] | None]:
        """uint8 images in `layout` -> (float 0/1 bits [N, K] on the CPU, the scale chosen per image or None; with
        rotations searched, the (scale, angle) chosen per image)."""
        if self.session is not None:
            return torch.from_numpy(self.session.bits(self._nhwc_array(images))), None  # [N, K]
        x = torch.as_tensor(np.asarray(images) if isinstance(images, np.ndarray) else images).to(self.options.device)
        if self.options.layout == "nhwc":
            x = x.permute(0, 3, 1, 2)  # a channels-last view [N, 3, R, R]
        if self.scalable:
            _, logits = self.net((x.float() / 127.5 - 1.0).to(self.dtype))
            return decode_bits(logits.float()).cpu(), None
        dev = self.options.device
        if self.search is not None:
            logits = self.search(to_float01(x, dev, prefer_cl=True))  # from [N, 3, R, R] fp32
            if self.search.angles:  # the chosen candidates as (scale, angle) pairs
                return decode_bits(logits).cpu(), list(zip(self.search.last_scales.tolist(),
                                                           self.search.last_angles.tolist()))
            return decode_bits(logits).cpu(), self.search.last_scales.tolist()
        logits = tiled_logits(self.net, to_float01(x, dev, self.dtype, prefer_cl=True), self.options.tiles)
        return decode_bits(logits.float()).cpu(), None

    def _nhwc_array(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(images, torch.Tensor):
            images = (images.permute(0, 2, 3, 1) if self.options.layout == "nchw" else images).numpy()
        elif self.options.layout == "nchw":
            images = images.transpose(0, 2, 3, 1)
        return images


def _onnx_session(path: str | os.PathLike, threads: int | None, tiles: int) -> OnnxDecoder:
    """The export's decoder as ONNX under ONNX Runtime. The graph goes to a temporary folder that is removed at
    once: the session holds it in memory."""
    with tempfile.TemporaryDirectory(prefix="ganprint-onnx-") as tmp:
        return onnx_runtime_for(path, tmp, threads=threads or torch.get_num_threads(), tiles=tiles)
