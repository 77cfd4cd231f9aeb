"""An exported decoder graph under ONNX Runtime, with numpy alone: the verifier's runtime without PyTorch.

`ganprint.nets.onnx` writes the graphs (with torch); this module only reads them, so that a verifier who installed
onnxruntime, numpy and Pillow can check images without torch. The graph takes uint8 images [N, R, R, 3] and
returns the fingerprint logits [N, K]; a bit reads 1 where its logit is > 0, as with PyTorch.

With `tiles` n > 1 the images are n R x n R views of photos fingerprinted as n x n tiles (`embed`'s `tiles`): each is
cut into its tiles here, in numpy, and the tiles' logits are averaged, as `ganprint.inference.fullsize.tiled_logits`
does with PyTorch.
"""

from __future__ import annotations

import os

import numpy as np

from ganprint.core import bounds
from ganprint.core.errors import GanprintError


def split_tiles(imgs: np.ndarray, tiles: int) -> np.ndarray:
    """[N, nR, nR, C] -> [N * n^2, R, R, C]: the tiles of each image row by row (n = `tiles`), in the order of
    `ganprint.inference.fullsize.split_tiles`."""
    if tiles == 1:
        return imgs
    n_img, h, w, c = imgs.shape
    r = h // tiles
    if h != w or r * tiles != h:
        raise GanprintError(f"a {w}x{h} view does not split into {tiles} x {tiles} square tiles")
    return imgs.reshape(n_img, tiles, r, tiles, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(n_img * tiles * tiles,
                                                                                          r, r, c)


class OnnxDecoder:
    """An exported decoder run by ONNX Runtime: `bits(uint8 [N, nR, nR, 3]) -> float32 0/1 [N, K]` (numpy), with
    n = `tiles` (1: the images are R x R)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, tiles: int = 1):
        self.tiles = int(bounds.TILES.check(tiles, "`tiles`"))
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
        """uint8 [N, nR, nR, 3] -> float32 logits [N, K]: with `tiles` n > 1, the mean over each image's tiles."""
        imgs = np.ascontiguousarray(imgs, dtype=np.uint8)
        side = self.resolution * self.tiles
        if imgs.ndim != 4 or imgs.shape[1:] != (side, side, 3):
            raise GanprintError(f"images must be uint8 [N, {side}, {side}, 3], got {imgs.shape}")
        if self.tiles == 1:
            return self.session.run(["logits"], {"images": imgs})[0]
        out = self.session.run(["logits"], {"images": np.ascontiguousarray(split_tiles(imgs, self.tiles))})[0]
        return out.reshape(len(imgs), self.tiles * self.tiles, -1).mean(axis=1, dtype=np.float32)

    def bits(self, imgs: np.ndarray) -> np.ndarray:
        return (self.logits(imgs) > 0).astype(np.float32)
