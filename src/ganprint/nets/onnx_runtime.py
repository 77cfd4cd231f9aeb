"""An exported decoder graph under ONNX Runtime, with numpy alone: the verifier's runtime without PyTorch.

`ganprint.nets.onnx` writes the graphs (with torch); this module only reads them, so that a verifier who installed
onnxruntime, numpy and Pillow can check images without torch. The graph takes uint8 images [N, R, R, 3] and
returns the fingerprint logits [N, K]; a bit reads 1 where its logit is > 0, as with PyTorch.
"""

from __future__ import annotations

import os

import numpy as np

from ganprint.core.errors import GanprintError


class OnnxDecoder:
    """An exported decoder run by ONNX Runtime: `bits(uint8 [N, R, R, 3]) -> float32 0/1 [N, K]` (numpy)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise GanprintError("`runtime` onnx needs the onnx extra: pip install -e '.[onnx]' in the ganprint "
                                "checkout") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if not os.path.isfile(path):
            raise GanprintError(f"ONNX decoder {path} does not exist; write one with `ganprint export`")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own classes for a file it cannot parse
            raise GanprintError(f"{path} is not an ONNX graph ONNX Runtime can load: {e}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if "ganprint.kind" not in props:
            raise GanprintError(f"{path} is an ONNX file but not a ganprint decoder export")
        self.kind, self.resolution, self.k = props["ganprint.kind"], int(props["ganprint.resolution"]), \
            int(props["ganprint.bits"])

    def logits(self, imgs: np.ndarray) -> np.ndarray:
        imgs = np.ascontiguousarray(imgs, dtype=np.uint8)
        if imgs.ndim != 4 or imgs.shape[1:] != (self.resolution, self.resolution, 3):
            raise GanprintError(f"images must be uint8 [N, {self.resolution}, {self.resolution}, 3], "
                                f"got {imgs.shape}")
        return self.session.run(["logits"], {"images": imgs})[0]

    def bits(self, imgs: np.ndarray) -> np.ndarray:
        return (self.logits(imgs) > 0).astype(np.float32)
