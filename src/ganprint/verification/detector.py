"""Check images in memory: `Detector.from_file(model).detect(images) -> rows`, the library behind `ganprint check`.

A `Detector` holds one decoder export (a `stega` / `stega-decoder` / `scalable-decoder` safetensors file, or an ONNX
graph from `ganprint export`) and what its images are tested against: one reference `fingerprint` (detection, the
rows of `ganprint detect`) or a `registry` of issued fingerprints (attribution, the rows of `ganprint attribute`).
`detect` takes PIL images, uint8 [H, W, 3] arrays or float tensors in [0, 1] of any size; each image gets the
preprocessing `detect` gives a file (centre square, antialiased bicubic resize to the decoder's resolution,
`ganprint.core.images.preprocess`) and its row is built by `ganprint.inference.scoring`, so an image read from a
file gives the same row here as in `detect` / `attribute` (tested).

With `tiles` n > 1 (`DetectorOptions`) a photo fingerprinted with `embed`'s `keep_size` and `tiles` n is read as
`detect`'s `tiles` reads it: its centre square resized to n R x n R, cut into n x n tiles, and the tiles' logits
averaged. The averaged logits are one reading of the photo, so its p-value is the same exact binomial tail.

An ONNX graph is run by ONNX Runtime with numpy alone: `from_file("decoder.onnx", fingerprint=...)` never imports
torch (with tiles neither: they are cut in numpy), so a verifier needs neither PyTorch nor a GPU. PyTorch (and the
registry code, which uses it) is imported only for a safetensors export or a `registry`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from ganprint.core import bounds
from ganprint.core.errors import GanprintError
from ganprint.core.fingerprints import as_bit_string, bits_to_strs, strs_to_array
from ganprint.core.hamming import HammingIndex
from ganprint.core.images import BadImageError, image_array, preprocess, read_image, read_image_bytes
from ganprint.core.runtime import resolve_device, resolve_precision
from ganprint.core.stats import usable_threshold
from ganprint.inference.scoring import UNKNOWN, attribute_bits, score_bits
from ganprint.nets.onnx_runtime import OnnxDecoder

log = logging.getLogger(__name__)

__all__ = ["Detector", "DetectorOptions", "ImageInputError", "as_images", "check_files", "load_detector"]

RUNTIMES = ("auto", "torch", "onnx")
DECODER_KINDS = ("stega", "stega-decoder", "scalable-decoder")
ONNX_SUFFIX = ".onnx"
STDIN = "-"  # the image name that reads standard input


class ImageInputError(GanprintError):
    """An in-memory image `detect` cannot read: wrong type, dtype, shape or value range."""


@dataclasses.dataclass(frozen=True)
class _Issued:
    """The registry's issued fingerprints, read once: ids, packed bits and who holds each."""

    fp_ids: np.ndarray
    packed: np.ndarray
    who: dict
    index: Any  # a HammingIndex over `packed`


@dataclasses.dataclass(frozen=True)
class DetectorOptions:
    """How a `Detector` reads images (the keywords of `Detector.from_file` and `load_detector`; `check`'s flags).

    `runtime`: auto (ONNX Runtime for a .onnx file, PyTorch for a safetensors export), torch, or onnx (a
    safetensors export converted to ONNX in memory, as `detect` does). `fpr`: the per-image false-positive rate.
    `device` and `precision` (auto, fp32, bf16) apply to PyTorch, as in `detect`. `batch_size`: images decoded at
    a time. `tiles` n > 1: read photos fingerprinted with `embed`'s `tiles` n, the n x n tiles' logits averaged
    (stega decoders, either runtime).
    """

    runtime: str = "auto"
    fpr: float = 1e-6
    device: str = "cpu"
    precision: str = "auto"
    batch_size: int = 64
    tiles: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise GanprintError(f"`runtime` must be auto, torch or onnx, got {self.runtime!r}")
        if not 0 < self.fpr < 1:
            raise GanprintError(f"`fpr` must be in (0, 1), got {self.fpr}")
        bounds.BATCH.check(self.batch_size, "`batch_size`")
        bounds.TILES.check(self.tiles, "`tiles`")


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(DetectorOptions))


def detector_options(options: DetectorOptions | None = None, **keywords: Any) -> DetectorOptions:
    """`options` (default: `DetectorOptions()`) with the fields named by `keywords` replaced; an unknown keyword is
    refused by name."""
    unknown = sorted(set(keywords) - set(OPTION_NAMES))
    if unknown:
        raise GanprintError(f"unknown detector option {', '.join(f'`{u}`' for u in unknown)}; the options are "
                            f"{', '.join(OPTION_NAMES)}")
    if options is not None and not isinstance(options, DetectorOptions):
        raise GanprintError(f"`options` is a {type(options).__name__}; give a DetectorOptions (or its fields as "
                            "keywords)")
    options = options or DetectorOptions()
    return dataclasses.replace(options, **keywords) if keywords else options


class Detector:
    """A decoder and its reference, ready to check images: `detect(images) -> list of rows`.

    Build one with `Detector.from_file` (or `ganprint.load_detector`). `kind`, `k` (bits), `resolution`, `options`
    (a `DetectorOptions`; `fpr`, `batch_size` and `tiles` are its fields) and `threshold` (the matching bits an
    image needs; with a registry, after the Bonferroni correction) describe it.
    """

    def __init__(self, decoder: Any, kind: str, k: int, resolution: int, reference: str | None = None,
                 issued: _Issued | None = None, options: DetectorOptions | None = None):
        self.decoder, self.kind, self.k, self.resolution = decoder, kind, k, resolution
        self.reference, self.issued, self.options = reference, issued, options or DetectorOptions()
        self.fpr, self.batch_size, self.tiles = self.options.fpr, int(self.options.batch_size), int(self.options.tiles)
        n_keys = len(issued.fp_ids) if issued is not None else 1
        self.threshold = usable_threshold(k, self.fpr, n_keys, "`fpr`") if reference or issued else None
        self._ref_bits = strs_to_array([reference], k) if reference is not None else None  # [1, K]

    @classmethod
    def from_file(cls, path: str | os.PathLike, fingerprint: Any = None, registry: str | os.PathLike | None = None,
                  *, options: DetectorOptions | None = None, **keywords: Any) -> Detector:
        """The decoder export at `path` with its reference: `fingerprint` (0/1 or 0x-hex string, or [K] bits: the
        one fingerprint every image is tested against) or `registry` (SQLite path or postgresql:// URL of issued
        fingerprints, for a scalable-decoder), or neither (rows then hold the decoded bits only).

        How it reads: `options`, a `DetectorOptions`, or its fields as keywords (`runtime`, `fpr`, `device`,
        `precision`, `batch_size`, `tiles`), which replace those of `options` where both are given.
        """
        if fingerprint is not None and registry is not None:
            raise GanprintError("pass either `fingerprint` or `registry`, not both")
        opts = detector_options(options, **keywords)
        if not os.path.isfile(path):
            raise GanprintError(f"`model` {path} does not exist or is not a file; give a decoder export "
                                "(.safetensors from `ganprint train` / `ganprint export`, or an .onnx graph)")
        if os.fspath(path).lower().endswith(ONNX_SUFFIX):
            if opts.runtime == "torch":
                raise GanprintError(f"`model` {path} is an ONNX graph: it runs with `runtime` onnx (or auto)")
            decoder, kind, k, res = _onnx_decoder(path, int(opts.tiles))
        else:
            decoder, kind, k, res = _torch_decoder(path, opts)
        reference = as_bit_string(fingerprint, k) if fingerprint is not None else None
        issued = _read_registry(registry, k, kind, path) if registry is not None else None
        return cls(decoder, kind, k, res, reference, issued, opts)

    def detect(self, images: Any) -> list[dict]:
        """One row per image, in order. `images`: a PIL image, a uint8 array [H, W, 3] (or [N, H, W, 3]), a float
        tensor in [0, 1] [3, H, W] (or [N, 3, H, W]), or a list of any of these; any size.

        With a `fingerprint`: bits, bit_accuracy, matches, p_value, log10_p, detected (the rows of `detect`). With a
        `registry`: decoded (hex), nearest_fp_id, hamming, matches, bit_accuracy, log10_p, log10_p_corrected,
        p_value_corrected, attributed (the fp_id or "unknown") and who (the rows of `attribute`). Without a
        reference: bits only.
        """
        arrays = as_images(images)
        rows: list[dict] = []
        side = self.resolution * self.tiles  # the view `detect` reads (its `tiles` x `tiles` tiles)
        for s in range(0, len(arrays), self.batch_size):
            batch = np.stack([preprocess(a, side) for a in arrays[s:s + self.batch_size]])
            rows += self._rows(self.decoder.bits(batch))
        return rows

    def decision(self, row: dict) -> bool | None:
        """Whether a row of `detect` is a positive decision (detected, or attributed to an issued fingerprint);
        None without a reference."""
        if "attributed" in row:
            return row["attributed"] != UNKNOWN
        return row.get("detected")

    def _rows(self, bits) -> list[dict]:
        if self.issued is not None:
            iss = self.issued
            rows = attribute_bits(bits, iss.fp_ids, iss.packed, self.k, self.fpr, iss.index)
            for r in rows:
                r["who"] = iss.who.get(r["attributed"]) if r["attributed"] != UNKNOWN else None
            return rows
        strs = bits_to_strs(bits)
        if self._ref_bits is None:
            return [{"bits": b} for b in strs]
        return [{"bits": b, **score} for b, score in zip(strs, score_bits(bits, self._ref_bits, self.threshold))]


def check_files(detector: Detector, names: list[str], stdin: BinaryIO | None = None) -> Iterator[dict]:
    """`detector.detect` on image files, `batch_size` files at a time: yields one row per file, in order, with the
    file's name first ("image"). The name "-" reads one image from `stdin` (binary). An unreadable file raises
    BadImageError naming it (after the rows before it)."""
    if list(names).count(STDIN) > 1:
        raise GanprintError("`images` names - (standard input) more than once; it holds one image")
    for s in range(0, len(names), detector.batch_size):
        chunk, arrays, failure = names[s:s + detector.batch_size], [], None
        for name in chunk:
            try:
                arrays.append(_read_stdin(stdin) if name == STDIN else read_image(name))
            except BadImageError as e:  # the files before it still get their rows
                failure = e
                break
        for name, row in zip(chunk, detector.detect(arrays) if arrays else []):
            yield {"image": name, **row}
        if failure is not None:
            raise failure


def _read_stdin(stdin: BinaryIO | None) -> np.ndarray:
    if stdin is None:
        raise GanprintError("`images` names - but no standard input was given")
    return read_image_bytes(stdin.read(), "<standard input>")


def load_detector(path: str | os.PathLike, fingerprint: Any = None, registry: str | os.PathLike | None = None,
                  *, options: DetectorOptions | None = None, **keywords: Any) -> Detector:
    """`Detector.from_file`: `options` a `DetectorOptions`, or its fields (`runtime`, `fpr`, `device`,
    `precision`, `batch_size`, `tiles`) as keywords."""
    return Detector.from_file(path, fingerprint, registry, options=options, **keywords)


def _onnx_decoder(path: str | os.PathLike, tiles: int) -> tuple[Any, str, int, int]:
    session = OnnxDecoder(path, tiles=tiles)
    if session.kind not in DECODER_KINDS:
        raise GanprintError(f"`model` {path} holds a {session.kind!r} graph, not a decoder")
    if tiles != 1 and session.kind == "scalable-decoder":  # as the PyTorch adapter refuses it
        raise GanprintError(f"`tiles` reads stega decoders; {path} is a scalable-decoder")
    return session, session.kind, session.k, session.resolution


def _torch_decoder(path: str | os.PathLike, opts: DetectorOptions) -> tuple[Any, str, int, int]:
    """The shared PyTorch adapter (imported here: the ONNX path above never loads torch)."""
    from ganprint.inference.decoders import Decoder, DecoderOptions

    dev = resolve_device(opts.device)
    try:
        prec = resolve_precision(opts.precision, dev)
    except ValueError as e:
        raise GanprintError(str(e)) from None
    runtime = "onnx" if opts.runtime == "onnx" else "torch"
    decoder = Decoder(path, DecoderOptions(dev, prec, runtime, "nhwc", tiles=int(opts.tiles)), DECODER_KINDS)
    return decoder, decoder.kind, decoder.k, decoder.resolution


def _read_registry(registry: str | os.PathLike, k: int, kind: str, model: str | os.PathLike) -> _Issued:
    """The issued fingerprints of `registry`, checked against the decoder (imported here: it needs torch)."""
    from ganprint.registry.store import Registry

    if kind not in ("scalable-decoder", "stega-decoder"):  # the latter reads latent issued decoders
        raise GanprintError(f"`registry` attributes images to issued scalable models (a scalable-decoder) or latent "
                            f"decoders (a stega-decoder), but `model` {model} is a {kind} decoder; test it against "
                            "its `fingerprint` instead")
    reg = Registry(registry, create=False)
    if reg.fingerprint_length() not in (None, k):
        raise GanprintError(f"`registry` {registry} holds {reg.fingerprint_length()}-bit fingerprints but `model` "
                            f"{model} reads {k} bits; use the matching `model` / `registry`")
    fp_ids, packed = reg.packed()
    if len(fp_ids) == 0:
        raise GanprintError(f"`registry` {registry} is empty: nothing to attribute to; issue models with "
                            "`ganprint issue`")
    who = {r.fp_id: r.who for r in reg.list()}
    return _Issued(fp_ids, packed, who, HammingIndex(packed))


def as_images(images: Any) -> list[np.ndarray]:
    """`images` (see `Detector.detect`) as a list of uint8 [H, W, 3] arrays; ImageInputError names what is wrong."""
    if isinstance(images, (list, tuple)):
        out = []
        for i, item in enumerate(images):
            if isinstance(item, (list, tuple)):
                raise ImageInputError(f"`images`[{i}] is a {type(item).__name__}: give a flat list of images")
            out += _one(item, f"`images`[{i}]")
        return out
    return _one(images, "`images`")


def _one(item: Any, name: str) -> list[np.ndarray]:
    """One image (or one batch) as uint8 [H, W, 3] arrays."""
    if hasattr(item, "getpixel") and hasattr(item, "mode"):  # a PIL image, told apart without importing PIL here
        return [image_array(item, name)]
    if hasattr(item, "detach") and hasattr(item, "dtype"):
        return _from_tensor(item, name)
    if isinstance(item, np.ndarray):
        return _from_array(item, name)
    raise ImageInputError(f"{name} is a {type(item).__name__}; give a PIL image, a uint8 numpy array [H, W, 3] "
                          "or a float tensor in [0, 1] [3, H, W]")


def _from_array(a: np.ndarray, name: str) -> list[np.ndarray]:
    if a.dtype != np.uint8:
        raise ImageInputError(f"{name} is a {a.dtype} array; arrays must be uint8 [H, W, 3] (0-255). Convert a "
                              "float image in [0, 1] with (x * 255).round().astype(np.uint8)")
    if a.ndim == 3 and a.shape[2] == 3:
        return [_checked_size(a, name)]
    if a.ndim == 4 and a.shape[3] == 3:
        return [_checked_size(x, f"{name}[{i}]") for i, x in enumerate(a)]
    raise ImageInputError(f"{name} has shape {list(a.shape)}; arrays must be [H, W, 3] or [N, H, W, 3] (RGB, "
                          "channels last)")


def _from_tensor(t: Any, name: str) -> list[np.ndarray]:
    if not t.dtype.is_floating_point:
        raise ImageInputError(f"{name} is a {str(t.dtype).replace('torch.', '')} tensor; tensors must be float in "
                              "[0, 1] [3, H, W] (or pass a uint8 numpy array [H, W, 3])")
    x = t.detach().cpu().float().numpy()
    if not (x.ndim == 3 and x.shape[0] == 3) and not (x.ndim == 4 and x.shape[1] == 3):
        raise ImageInputError(f"{name} has shape {list(x.shape)}; tensors must be [3, H, W] or [N, 3, H, W] (RGB, "
                              "channels first)")
    if x.size and not np.isfinite(x).all():
        raise ImageInputError(f"{name} holds NaN or infinite values; tensors must be float in [0, 1]")
    if x.size and not (x.min() >= 0.0 and x.max() <= 1.0):
        raise ImageInputError(f"{name} holds values outside [0, 1] (from {x.min():g} to {x.max():g}); tensors must "
                              "be float in [0, 1]")
    # rounded as `core.images.from_tensor01` (and a PNG writer) would: x * 255 + 0.5, truncated
    u8 = np.clip(x * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)
    u8 = np.moveaxis(u8, -3, -1)  # [..., H, W, 3]
    return [_checked_size(np.ascontiguousarray(u8), name)] if u8.ndim == 3 else \
        [_checked_size(np.ascontiguousarray(u), f"{name}[{i}]") for i, u in enumerate(u8)]


def _checked_size(a: np.ndarray, name: str) -> np.ndarray:
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageInputError(f"{name} has zero size {a.shape[1]}x{a.shape[0]}")
    return a
