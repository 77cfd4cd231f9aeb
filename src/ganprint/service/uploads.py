"""Uploaded images: bounded, sniffed before decoding, decoded and preprocessed exactly as the commands read files.

An upload is decoded from memory by `ganprint.core.images.read_image_bytes`, the reader of `ganprint attribute`
and `ganprint detect` without the file (the same decoders, EXIF and colour handling, pixel and byte limits),
after its format is sniffed and its size read from the header; then centre-cropped and resized by `preprocess`.
"""

from __future__ import annotations

import io
import os
import re
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganprint.core.images import BadImageError, preprocess, read_image_bytes

_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"BM", ".bmp"), (b"II*\x00", ".tif"),
          (b"MM\x00*", ".tif"))


class ApiError(Exception):
    """A request the service refuses: HTTP `status`, a message, and the uploaded file it concerns (if any)."""

    def __init__(self, status: int, message: str, file: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.file, self.headers = status, message, file, headers

    def to_json(self) -> dict:
        return {"error": self.message, **({"file": self.file} if self.file is not None else {})}


def display_name(filename: str | None, i: int) -> str:
    """The uploader's file name, only for answers: no folders, no control characters, at most 200 characters."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    name = re.sub(r"[\x00-\x1f\x7f]", "", name)[:200]
    return name or f"file-{i + 1}"


def sniff(head: bytes) -> str | None:
    """The extension of an image format recognised from its first bytes, else None."""
    for magic, ext in _MAGIC:
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return None


def read_uploads(files: list[tuple[str, BinaryIO]], resolutions: set[int], max_pixels: int,
                 max_request_pixels: int | None = None) -> dict[int, np.ndarray]:
    """(display name, file object) pairs -> per resolution R, uint8 [N, R, R, 3]; ApiError (400) on a bad file.

    Every file's format and size are checked from its header before any is decoded: an image above `max_pixels`
    gets 400, a request whose images hold more than `max_request_pixels` in all gets 413 (decoding costs CPU in
    proportion to the pixels: benchmarks/perf/RESULTS-service.md, "Limits").
    """
    checked, total = [], 0
    for name, fobj in files:
        fobj.seek(0)
        data = fobj.read()
        if not data:
            raise ApiError(400, f"{name} is an empty file", name)
        if sniff(data[:16]) is None:
            raise ApiError(400, f"{name} is not an image (PNG, JPEG, WebP, BMP or TIFF expected)", name)
        total += _check_pixels(data, name, max_pixels)
        checked.append((name, data))
    if max_request_pixels is not None and total > max_request_pixels:
        raise ApiError(413, f"the {len(files)} images of this request hold {total} pixels in all, above this "
                            f"server's limit of {max_request_pixels} per request (max_request_pixels in /v1/info); "
                            "send them in several requests")
    out: dict[int, list[np.ndarray]] = {r: [] for r in resolutions}
    for name, data in checked:
        try:
            img = read_image_bytes(data, name)
            for r in resolutions:
                out[r].append(preprocess(img, r))
        except BadImageError as e:
            raise ApiError(400, str(e), name) from None
        del img  # only the resized copies are kept: one full-size image in memory at a time
    return {r: np.stack(v) for r, v in out.items()}


def _check_pixels(data: bytes, name: str, max_pixels: int) -> int:
    # The header alone gives the size: a decompression bomb is refused before a pixel is decoded.
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        raise ApiError(400, f"{name} has too many pixels (possible decompression bomb)", name) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ApiError(400, f"{name} is not a readable image: {type(e).__name__}", name) from None
    if w * h > max_pixels:
        raise ApiError(400, f"{name} is {w}x{h} = {w * h} pixels, above this server's limit of {max_pixels} "
                               f"(max_pixels in /v1/info; possible decompression bomb)", name)
    return w * h
