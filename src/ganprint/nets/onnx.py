"""Decoders as ONNX graphs, for verifiers who run ONNX Runtime instead of PyTorch.

The exported graph takes what the commands feed their decoders after preprocessing, uint8 images
[N, R, R, 3] (any N), and returns the fingerprint logits [N, K]; the scaling to the network's input range
([0, 1] for StegaStamp decoders, [-1, 1] for scalable decoders) is part of the graph, so a verifier only has
to read, centre-crop and resize the image. A bit reads 1 where its logit is > 0, as with PyTorch.
The graph's metadata carries the ganprint kind and config (JSON), so a file explains itself.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from ganprint.core.artifacts import load_export
from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_path
from ganprint.core.paths import check_new_file, check_overlap
from ganprint.nets.onnx_runtime import OnnxDecoder
from ganprint.nets.scalable import fingerprint_length_of

log = logging.getLogger(__name__)

__all__ = ["DECODER_KINDS", "OnnxDecoder", "export_onnx", "onnx_runtime_for"]  # OnnxDecoder: nets.onnx_runtime

DECODER_KINDS = ("stega", "stega-decoder", "scalable-decoder")
OPSET = 18  # the exporter's own opset: asking for 17 runs a version converter that fails on Pad


class _Uint8Decoder(nn.Module):
    """uint8 [N, R, R, 3] -> logits [N, K], with the decoder's own input scaling."""

    def __init__(self, net: nn.Module, scalable: bool):
        super().__init__()
        self.net, self.scalable = net, scalable

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.permute(0, 3, 1, 2).float()
        if self.scalable:
            return self.net(x / 127.5 - 1.0)[1]
        return self.net(x / 255.0)


def export_onnx(model_path: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Write the decoder of a stega / stega-decoder / scalable-decoder export as ONNX; returns what was written.
    An existing `out` is replaced only with `overwrite`, and never when it is the model."""
    check_overlap([("`model_path`", model_path, "model")], [("`out`", out, "file")])
    check_new_file(out, "`out`", overwrite)
    try:
        import onnx
    except ImportError:
        raise GanprintError("ONNX export needs the onnx extra: pip install -e '.[onnx]' in the ganprint "
                            "checkout") from None
    module, cfg, meta = load_export(model_path, kind=DECODER_KINDS)
    kind = meta["ganprint.kind"]
    scalable = kind == "scalable-decoder"
    net = module if scalable else module.dec
    r = int(cfg["resolution"])
    k = fingerprint_length_of(cfg)
    wrapper = _Uint8Decoder(net, scalable).eval()
    example = torch.zeros(2, r, r, 3, dtype=torch.uint8)
    out = Path(out)
    with atomic_path(out) as tmp:
        torch.onnx.export(wrapper, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"img": {0: torch.export.Dim("n")}}, opset_version=OPSET,
                          dynamo=True, verbose=False)
        graph = onnx.load(str(tmp))
        for key, value in {"ganprint.kind": kind, "ganprint.config": json.dumps(cfg, sort_keys=True),
                           "ganprint.resolution": str(r), "ganprint.bits": str(k),
                           "ganprint.source": Path(model_path).name}.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(tmp))
    log.info("wrote %s (%s, %d px, %d bits)", out, kind, r, k)
    return {"out": str(out), "kind": kind, "resolution": r, "bits": k}


def onnx_runtime_for(model_path: str | os.PathLike, workdir: str | os.PathLike, threads: int | None = None,
                     tiles: int = 1) -> OnnxDecoder:
    """Export `model_path`'s decoder into `workdir` and load it with ONNX Runtime (what the decoders' ONNX runtime
    does; `ganprint.inference.decoders`); `tiles` as in `OnnxDecoder`."""
    out = Path(workdir) / (Path(model_path).stem + ".onnx")
    export_onnx(model_path, out)
    return OnnxDecoder(out, threads, tiles)
