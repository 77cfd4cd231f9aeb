"""Image I/O at the boundary: read any common image file as uint8 RGB, preprocess, write PNG.

This is the only module that imports PIL. Conventions (CONTRIBUTING.md): files become uint8 arrays
[H, W, 3]; the networks see float tensors [3, H, W] in [0, 1] (`to_tensor01` / `from_tensor01`).

Policies, chosen once here:
- Transparency (LA, RGBA, PA, P with a transparent colour) is **composited on white**. Dropping alpha
  would expose whatever colour the encoder stored under transparent pixels (often black or garbage);
  white is what most viewers and browsers show.
- 16-bit data (I;16*, I) is scaled to 8 bits by value / 257 (65535 -> 255), rounded; "I" is treated
  as 16-bit data because that is what Pillow returns for 16-bit files. Float ("F") images are refused.
- EXIF orientation is honoured (`ImageOps.exif_transpose`).
- Size limit: files with more than `MAX_IMAGE_PIXELS` pixels (default 2**26 ~ 8192 x 8192; override
  with the environment variable GANPRINT_MAX_IMAGE_PIXELS) raise `BadImageError` *before* any pixel
  is decoded, so a decompression bomb neither hangs nor eats memory. Truncated files are errors
  (Pillow's LOAD_TRUNCATED_IMAGES is left False).
- Which files are read: regular files only (a symlink counts when its target is one), of at most
  `MAX_IMAGE_BYTES` (GANPRINT_MAX_IMAGE_BYTES): FIFOs, devices and sockets are refused before a byte is
  read (`open_image_file`), so a pipe never hangs and a link to /dev/zero never fills the memory.
- Resizing uses PIL's antialiased bicubic filter.
- Speed: plain 8-bit RGB PNGs (no transparency, text or EXIF chunks, which Pillow would act on) are decoded, and
  all PNGs encoded, with imagecodecs (libpng) where it is installed, which is faster for small images. The pixels
  are the same; anything else, and any file libpng rejects, goes through Pillow, whose errors name the problem.
"""

from __future__ import annotations

import io
import logging
import math
import os
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # optional speed-up (a dependency of the package; without it Pillow does all the work)
    import imagecodecs as _codecs
except ImportError:  # pragma: no cover - exercised by monkeypatching _codecs in the tests
    _codecs = None

from ganprint.core.errors import GanprintError
from ganprint.core.files import atomic_write_bytes

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_IMAGE_PIXELS = int(os.environ.get("GANPRINT_MAX_IMAGE_PIXELS", 2**26))
# Bytes read from one image file at most: 8192 x 8192 pixels of 16-bit RGBA uncompressed, plus headers.
MAX_IMAGE_BYTES = int(os.environ.get("GANPRINT_MAX_IMAGE_BYTES", 2**29 + 2**20))
RESAMPLE = Image.Resampling.BICUBIC
CELEBA_CROP = 148  # the original's CelebA preprocessing option: CenterCrop(148) -> Resize(128)
CELEBA_RESOLUTION = 128

# Explicit policy for Pillow's own guard too: it errors at 2x this value, which our header check precedes.
Image.MAX_IMAGE_PIXELS = max(MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS or 0)

_TRANSPARENT_MODES = ("LA", "La", "RGBA", "RGBa", "PA")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class BadImageError(GanprintError):
    """An input file that cannot be read as an image (corrupt, truncated, empty, not an image, too large)."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has a supported image extension (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FAST_PNG_MAX_BYTES = 32 << 20
# Chunks that make Pillow do more than decode an RGB PNG (transparency, EXIF or XMP orientation in text chunks).
# A match inside compressed data only sends the file down the Pillow path.
_PNG_SLOW_CHUNKS = (b"tRNS", b"eXIf", b"iTXt", b"tEXt", b"zTXt")


def _read_plain_png(data: bytes) -> np.ndarray | None:
    """uint8 [H, W, 3] of a plain 8-bit RGB PNG decoded by libpng, else None (then Pillow reads the file)."""
    if _codecs is None or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or data[24:26] != b"\x08\x02":
        return None  # bit depth 8, colour type 2 (RGB) only
    if any(c in data for c in _PNG_SLOW_CHUNKS):
        return None
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if w * h > MAX_IMAGE_PIXELS or w == 0 or h == 0:
        return None  # Pillow's path reports it
    try:
        arr = _codecs.png_decode(data)
    except Exception:  # noqa: BLE001 - corrupt or truncated: Pillow's path names the problem
        return None
    if arr.dtype != np.uint8 or arr.shape != (h, w, 3):
        return None
    return arr


def open_image_file(path: str) -> tuple[io.BufferedReader, int]:
    """Open `path` for reading under the rule for image files: a regular file (a symlink counts when its target is
    one), not empty, of at most MAX_IMAGE_BYTES. Returns (binary file, size); raises BadImageError naming the file.

    The file is opened without blocking and checked by its descriptor, so a FIFO never hangs the reader and a
    link to /dev/zero or /dev/urandom is refused before a byte is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise BadImageError(f"cannot read image {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadImageError(f"{path} is not a regular file but a {_file_kind(st.st_mode)}; only image files are "
                                "read: remove it from the data folder or re-run with `skip_bad`")
        _check_size(st.st_size, path)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _check_size(size: int, name: str) -> None:
    """The size rule for an image, a file or an upload: not empty, at most MAX_IMAGE_BYTES."""
    if size == 0:
        raise BadImageError(f"image {name} is an empty file (0 bytes); delete or replace it")
    if size > MAX_IMAGE_BYTES:
        raise BadImageError(f"image {name} is {size} bytes, above the limit of {MAX_IMAGE_BYTES}; shrink it "
                            "or raise GANPRINT_MAX_IMAGE_BYTES")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    for test, name in kinds:
        if test(mode):
            return name
    return "special file"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3]; raises BadImageError naming the file and the cause."""
    path = os.fspath(path)  # strings, not Path: pathlib costs more than the rest of the per-image Python work
    f, size = open_image_file(path)
    with f:
        data = None
        try:
            if _codecs is not None and path[-4:].lower() == ".png" and size <= _FAST_PNG_MAX_BYTES:
                data = f.read()  # larger files: Pillow, which checks the size before reading
        except OSError as e:
            raise BadImageError(f"cannot read image {path}: {e.strerror or e}") from None
        if data is not None:
            arr = _read_plain_png(data)
            if arr is not None:
                return arr
        return _read_with_pillow(f if data is None else io.BytesIO(data), path)


def read_image_bytes(data: bytes, name: str) -> np.ndarray:
    """`read_image` of a file holding `data` (an upload: no temporary file); errors name `name`.

    The same checks and decoders as a file: a plain RGB PNG through libpng, anything else through Pillow.
    """
    _check_size(len(data), name)
    arr = _read_plain_png(data) if len(data) <= _FAST_PNG_MAX_BYTES else None
    return arr if arr is not None else _read_with_pillow(io.BytesIO(data), name)


def _read_with_pillow(fp, path: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise BadImageError(
                        f"image {path} is {w}x{h} = {w * h} pixels, above the limit of {MAX_IMAGE_PIXELS} "
                        "(possible decompression bomb); shrink it or raise GANPRINT_MAX_IMAGE_PIXELS"
                    )
                if w == 0 or h == 0:
                    raise BadImageError(f"image {path} has zero size {w}x{h}")
                im.load()  # decode now so that truncation and corruption surface here
                im = _exif_transpose(im, path)
                return _to_rgb_array(im, path)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(
            f"{path} is not an image file Pillow can read (wrong extension or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(f"image {path} is too large (possible decompression bomb): {e}") from None
    except MemoryError:
        raise BadImageError(f"image {path} does not fit in memory") from None
    except Exception as e:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ValueError, zlib.error, ...
        raise BadImageError(f"image {path} is corrupt or truncated: {type(e).__name__}: {e}") from None


def image_array(im: Image.Image, name: str) -> np.ndarray:
    """An image already opened with Pillow (in memory) as uint8 RGB [H, W, 3], under the policies a file gets
    (EXIF orientation, transparency on white, 16-bit scaled); errors name `name`."""
    w, h = im.size
    if w == 0 or h == 0:
        raise BadImageError(f"image {name} has zero size {w}x{h}")
    try:
        im.load()
    except Exception as e:  # noqa: BLE001 - a lazily opened file may be truncated or corrupt
        raise BadImageError(f"image {name} is corrupt or truncated: {type(e).__name__}: {e}") from None
    return _to_rgb_array(_exif_transpose(im, name), name)


def _exif_transpose(im: Image.Image, path: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - a broken EXIF block should not lose the pixels
        log.warning("ignoring unreadable EXIF orientation of %s: %s", path, e)
        return im


def _to_rgb_array(im: Image.Image, path: str) -> np.ndarray:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(im).astype(np.int64)
        a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[..., None], 3, axis=2))  # [H, W, 3]
    if mode == "F":
        raise BadImageError(f"image {path} holds floating-point pixels (mode F); convert it to 8-bit first")
    if mode in _TRANSPARENT_MODES or (mode != "RGBA" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX, composited RGBA
    arr = np.array(im, dtype=np.uint8)  # a writable copy (np.asarray of a PIL image is read-only)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise BadImageError(f"image {path} has unsupported mode {mode}")
    return np.ascontiguousarray(arr)


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    # torchvision's CenterCrop offsets: int(round((H - size) / 2)).
    h, w = img.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img[top:top + size, left:left + size]


def resize(img: np.ndarray, resolution: int) -> np.ndarray:
    """Resize uint8 [H, W, 3] to [resolution, resolution, 3] (antialiased bicubic); identity if already that size."""
    if img.shape[0] == resolution and img.shape[1] == resolution:
        return img
    out = Image.fromarray(img).resize((resolution, resolution), RESAMPLE)
    return np.array(out, dtype=np.uint8)


def preprocess(img: np.ndarray, resolution: int, celeba: bool = False) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [R, R, 3]: centre crop to the shorter side, then resize to R.

    With `celeba=True`: the original's CelebA preprocessing, CenterCrop(148) then resize to 128
    (R must be 128). An image that is already R x R passes through unchanged (bit for bit).
    """
    if celeba:
        if resolution != CELEBA_RESOLUTION:
            raise GanprintError(
                f"`celeba` preprocessing produces {CELEBA_RESOLUTION}x{CELEBA_RESOLUTION} images but the resolution "
                f"is {resolution}; use a {CELEBA_RESOLUTION}-px model or drop `celeba`"
            )
        h, w = img.shape[:2]
        if h < CELEBA_CROP or w < CELEBA_CROP:
            raise BadImageError(
                f"image of {w}x{h} is smaller than the {CELEBA_CROP}x{CELEBA_CROP} CelebA crop "
                "(`celeba` expects aligned CelebA, 178x218)"
            )
        return resize(np.ascontiguousarray(_center_crop(img, CELEBA_CROP)), resolution)
    s = min(img.shape[0], img.shape[1])
    return resize(np.ascontiguousarray(_center_crop(img, s)), resolution)


def load_preprocessed(path: str | os.PathLike, resolution: int, celeba: bool = False) -> np.ndarray:
    """`read_image` then `preprocess`; a preprocessing failure names the file."""
    img = read_image(path)
    try:
        return preprocess(img, resolution, celeba)
    except BadImageError as e:
        raise BadImageError(f"image {path}: {e}") from None


def write_png(path: str | os.PathLike, img_u8: np.ndarray, compress_level: int = 6) -> Path:
    """Write uint8 [H, W, 3] (or [H, W]) losslessly as PNG, atomically (readers never see a partial file)."""
    arr = np.asarray(img_u8)
    if arr.dtype != np.uint8:
        raise TypeError(f"write_png expects uint8 pixels, got {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    if _codecs is not None:
        return atomic_write_bytes(path, _codecs.png_encode(arr, level=compress_level))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return atomic_write_bytes(path, buf.getbuffer())


# JPEG and WebP outputs that keep their input's format: quality 95, and JPEG without chroma subsampling, which would
# halve the resolution of the fingerprint's colour part.
LOSSY_QUALITY = 95
_LOSSY = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def write_image(path: str | os.PathLike, img_u8: np.ndarray, compress_level: int = 6) -> Path:
    """Write uint8 [H, W, 3] (or [H, W], greyscale) atomically in the format its suffix names: .png losslessly
    (`write_png`), .jpg/.jpeg/.webp at `LOSSY_QUALITY`."""
    fmt = _LOSSY.get(os.path.splitext(os.fspath(path))[1].lower())
    if fmt is None:
        return write_png(path, img_u8, compress_level)
    arr = np.ascontiguousarray(np.asarray(img_u8))
    if arr.dtype != np.uint8:
        raise TypeError(f"write_image expects uint8 pixels, got {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=LOSSY_QUALITY, **({"subsampling": 0} if fmt == "JPEG" else {}))
    return atomic_write_bytes(path, buf.getbuffer())


def is_greyscale_file(path: str | os.PathLike) -> bool:
    """Whether the image file is stored greyscale (Pillow reads only its header)."""
    try:
        with Image.open(path) as im:
            return im.mode in GREY_MODES
    except (OSError, ValueError):
        return False  # read_image reports the file's problem


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of one shape (inf when they are equal); exact integer sums, by bands
    of rows so that a 4000 x 3000 photo needs no full-size temporary."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"psnr_u8 needs two images of one non-empty shape, got {a.shape} and {b.shape}")
    sq = 0
    for i in range(0, a.shape[0], 256):
        d = (a[i:i + 256].astype(np.int64) - b[i:i + 256]).ravel()
        sq += int(d @ d)
    return math.inf if sq == 0 else 10.0 * math.log10(255.0 ** 2 * a.size / sq)


def to_tensor01(img_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [0, 1]."""
    import torch  # here, not above: reading images needs no torch (the ONNX verifier runs without it)

    t = torch.as_tensor(np.asarray(img_u8) if not isinstance(img_u8, torch.Tensor) else img_u8)
    if t.dtype != torch.uint8:
        raise TypeError(f"to_tensor01 expects uint8 pixels, got {t.dtype}")
    return t.movedim(-1, -3).float().div(255.0)  # [..., 3, H, W]


def from_tensor01(t: torch.Tensor) -> np.ndarray:
    """float [..., 3, H, W] in [0, 1] -> uint8 [..., H, W, 3], clamped and rounded (as torchvision's save_image)."""
    import torch

    t = t.detach().to("cpu", torch.float32)
    u8 = t.mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(u8.movedim(-3, -1).numpy())  # [..., H, W, 3]


def write_grid(path: str | os.PathLike, img_u8: np.ndarray, cols: int | None = None) -> Path:
    """Tile uint8 [N, H, W, C] into one PNG (row-major, `cols` wide; default ~square), written atomically."""
    n, h, w, c = img_u8.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * h: (r + 1) * h, q * w: (q + 1) * w] = img_u8[i]
    return write_png(path, grid)
