"""ganprint.core.images: every image mode to uint8 RGB, every bad file to a clear BadImageError, preprocessing."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ganprint.core import images as imageio
from ganprint.core.errors import GanprintError
from ganprint.core.images import BadImageError, from_tensor01, preprocess, read_image, to_tensor01, write_png
from tests.conftest import make_image


@pytest.fixture
def rgb():
    return make_image(np.random.default_rng(1), 24, 20)  # [H=24, W=20, 3]


def _check(arr, h, w):
    assert arr.dtype == np.uint8 and arr.shape == (h, w, 3) and arr.flags.writeable


def test_rgb_png_round_trip_is_exact(tmp_path, rgb):
    p = write_png(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(read_image(p), rgb)
    assert [q.name for q in tmp_path.iterdir()] == ["a.png"]  # no temporary file left behind


def test_grey_and_1bit(tmp_path):
    g = np.arange(24 * 20, dtype=np.uint8).reshape(24, 20)
    Image.fromarray(g).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    _check(out, 24, 20)
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, 2))
    Image.fromarray(g > 100).save(tmp_path / "b.png")  # mode "1"
    out = read_image(tmp_path / "b.png")
    assert set(np.unique(out)) == {0, 255}


def test_alpha_is_composited_on_white(tmp_path, rgb):
    a = np.full(rgb.shape[:2], 255, np.uint8)
    a[:, :10] = 0  # left half fully transparent
    Image.fromarray(np.dstack([rgb, a]), "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    _check(out, 24, 20)
    assert (out[:, :10] == 255).all()
    np.testing.assert_array_equal(out[:, 10:], rgb[:, 10:])
    la = Image.fromarray(np.dstack([rgb[..., 0], a]), "LA")
    la.save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    assert (out[:, :10] == 255).all() and (out[:, 10:, 1] == rgb[:, 10:, 0]).all()


def test_palette_with_and_without_transparency(tmp_path, rgb):
    p = Image.fromarray(rgb).quantize(16)
    p.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    _check(out, 24, 20)
    np.testing.assert_array_equal(out, np.asarray(p.convert("RGB")))
    p.info["transparency"] = 0
    p.save(tmp_path / "pt.png", transparency=0)
    out = read_image(tmp_path / "pt.png")
    idx = np.asarray(p)
    assert (out[idx == 0] == 255).all()


def test_cmyk(tmp_path, rgb):
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    out = read_image(tmp_path / "c.jpg")
    _check(out, 24, 20)
    assert np.abs(out.astype(int) - rgb).mean() < 12


def test_sixteen_bit(tmp_path):
    g = np.array([[0, 257 * 100, 65535, 257 * 7 + 200]], np.uint16).repeat(3, 0)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")  # Pillow 10.4 opens it as I;16, 10.0 as I
    out = read_image(tmp_path / "g16.png")
    _check(out, 3, 4)
    assert out[0, :, 0].tolist() == [0, 100, 255, 8]
    Image.fromarray(g.astype(np.int32)).save(tmp_path / "g32.tif")
    assert Image.open(tmp_path / "g32.tif").mode == "I"
    np.testing.assert_array_equal(read_image(tmp_path / "g32.tif"), out)


def test_exif_orientation_is_applied(tmp_path, rgb):
    im = Image.fromarray(rgb)  # 20 wide, 24 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "r.jpg")
    _check(out, 20, 24)  # displayed landscape
    ref = np.rot90(rgb, k=-1)
    assert np.abs(out.astype(int) - ref).mean() < 6


@pytest.mark.parametrize("ext", ["PNG", "JPeG", "webp", "bmp", "tiff", "tif"])
def test_extensions_case_insensitive(tmp_path, rgb, ext):
    p = tmp_path / f"x.{ext}"
    Image.fromarray(rgb).save(p, format={"JPEG": "JPEG", "TIF": "TIFF"}.get(ext.upper(), ext.upper()))
    assert imageio.is_image_file(p)
    _check(read_image(p), 24, 20)


def _bad(tmp_path, rgb):
    good = tmp_path / "good.png"
    write_png(good, rgb)
    data = good.read_bytes()
    files = {
        "empty.png": b"",
        "text.png": b"this is not an image\n",
        "truncated.png": data[: len(data) // 2],
        "corrupt.png": data[:40] + bytes(np.random.default_rng(0).integers(0, 256, len(data) - 40, dtype=np.uint8)),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    jpg = tmp_path / "j.jpg"
    Image.fromarray(rgb).save(jpg)
    (tmp_path / "truncated.jpg").write_bytes(jpg.read_bytes()[:200])
    jpg.unlink()
    return [tmp_path / n for n in [*files, "truncated.jpg"]]


def test_bad_files_raise_clear_errors(tmp_path, rgb):
    for p in _bad(tmp_path, rgb):
        with pytest.raises(BadImageError) as e:
            read_image(p)
        assert str(p) in str(e.value), e.value
        assert isinstance(e.value, GanprintError)
    with pytest.raises(BadImageError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def test_decompression_bomb_errors_before_decoding(tmp_path):
    # A 100000 x 100000 PNG header (10 giga-pixels) with a tiny payload: must fail at once, not allocate.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    p = tmp_path / "bomb.png"
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    with pytest.raises(BadImageError, match="decompression bomb"):
        read_image(p)


def test_pixel_limit_is_configurable(tmp_path, rgb, monkeypatch):
    p = write_png(tmp_path / "a.png", rgb)
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(BadImageError, match="above the limit of 100"):
        read_image(p)


def test_preprocess_shapes_and_identity(rgb):
    assert preprocess(rgb, 16).shape == (16, 16, 3)
    assert preprocess(rgb, 64).shape == (64, 64, 3)  # upsampling is allowed
    sq = rgb[:20, :20].copy()
    np.testing.assert_array_equal(preprocess(sq, 20), sq)  # already R x R: bit exact
    # centre crop of the shorter side: a 24x20 image keeps rows 2..21
    np.testing.assert_array_equal(preprocess(rgb, 20), rgb[2:22])


def test_celeba_preprocessing():
    img = make_image(np.random.default_rng(2), 218, 178)
    out = preprocess(img, 128, celeba=True)
    assert out.shape == (128, 128, 3)
    crop = img[35:183, 15:163]  # CenterCrop(148) of 178x218 (torchvision offsets)
    ref = imageio.resize(np.ascontiguousarray(crop), 128)
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(GanprintError, match="128"):
        preprocess(img, 64, celeba=True)
    with pytest.raises(BadImageError, match="smaller than"):
        preprocess(img[:100, :100], 128, celeba=True)


def test_tensor_conversions():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = to_tensor01(img)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1
    np.testing.assert_array_equal(from_tensor01(t), img)
    batch = to_tensor01(np.stack([img, img]))
    assert batch.shape == (2, 3, 5, 7)
    np.testing.assert_array_equal(from_tensor01(batch)[1], img)
    wild = torch.tensor([-0.5, 0.0, 0.5 / 255, 0.499 / 255, 1.7]).view(1, 1, 5).expand(3, 1, 5)
    assert from_tensor01(wild)[0, :, 0].tolist() == [0, 0, 1, 0, 255]
    with pytest.raises(TypeError):
        to_tensor01(img.astype(np.float32))


def test_write_png_is_atomic_and_world_readable(tmp_path):
    import os
    import stat

    from ganprint.core.images import write_png

    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = write_png(tmp_path / "new" / "sub" / "a.png", img)  # missing folders are created
    assert np.array_equal(read_image(path), img)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600
    write_png(path, img[::-1].copy())  # replaces an existing file whole
    assert np.array_equal(read_image(path), img[::-1])
    with pytest.raises(TypeError):
        write_png(tmp_path / "b.png", img.astype(np.float32))
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png"]  # no temporaries left
    assert os.listdir(tmp_path / "new" / "sub") == ["a.png"]


def _umask() -> int:
    import os

    old = os.umask(0)
    os.umask(old)
    return old


def test_atomic_text_files_are_not_private(tmp_path):
    import stat

    from ganprint.core.files import atomic_write_json

    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~_umask()


def _png_with_chunk(rgb: np.ndarray, kind: bytes, body: bytes) -> bytes:
    """An 8-bit RGB PNG of `rgb` with one extra chunk before the pixels."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(kind, body) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def test_fast_png_path_reads_what_pillow_reads(tmp_path, rgb, monkeypatch):
    if imageio._codecs is None:
        pytest.skip("imagecodecs is not installed")
    files = {"plain.png": None, "text.png": (b"tEXt", b"Software\x00test"),
             "xmp.png": (b"iTXt", b'XML:com.adobe.xmp\x00\x00\x00\x00\x00<x:xmpmeta><rdf:Description '
                                  b'tiff:Orientation="6"/></x:xmpmeta>'),
             "trns.png": (b"tRNS", struct.pack(">HHH", *(int(v) for v in rgb[0, 0])))}
    for name, extra in files.items():
        if extra is None:
            Image.fromarray(rgb).save(tmp_path / name)
        else:
            (tmp_path / name).write_bytes(_png_with_chunk(rgb, *extra))
    calls = []
    real = imageio._codecs.png_decode
    monkeypatch.setattr(imageio._codecs, "png_decode", lambda d: calls.append(1) or real(d))
    fast = {n: read_image(tmp_path / n) for n in files}
    assert len(calls) == 1  # only the plain file; text, XMP orientation and transparency go to Pillow
    _check(fast["plain.png"], 24, 20)  # writable uint8 [H, W, 3], as from Pillow's path
    monkeypatch.setattr(imageio, "_codecs", None)
    for n in files:
        np.testing.assert_array_equal(fast[n], read_image(tmp_path / n), err_msg=n)
    assert fast["xmp.png"].shape == (20, 24, 3)  # Pillow applied the XMP orientation
    assert (fast["trns.png"][0, 0] == 255).all()  # the transparent colour became white


def test_without_imagecodecs_pillow_reads_and_writes_the_same_pixels(tmp_path, rgb, monkeypatch):
    a = write_png(tmp_path / "a.png", rgb)
    monkeypatch.setattr(imageio, "_codecs", None)
    b = write_png(tmp_path / "b.png", rgb)
    for p in (a, b):
        np.testing.assert_array_equal(read_image(p), rgb)
    (tmp_path / "bad").mkdir()
    for p in _bad(tmp_path / "bad", rgb):
        with pytest.raises(BadImageError, match=p.name):
            read_image(p)


def test_large_png_files_are_not_read_whole_before_the_size_check(tmp_path, rgb, monkeypatch):
    p = write_png(tmp_path / "a.png", rgb)
    monkeypatch.setattr(imageio, "_FAST_PNG_MAX_BYTES", 10)  # every file counts as large: Pillow's path
    if imageio._codecs is not None:
        monkeypatch.setattr(imageio._codecs, "png_decode", lambda d: pytest.fail("fast path used"))
    np.testing.assert_array_equal(read_image(p), rgb)


def _read_in_thread(path, seconds=10.0):
    """read_image(path) in a thread: (finished in time, the exception raised or None)."""
    import threading

    box = {}

    def run():
        try:
            read_image(path)
            box["error"] = None
        except Exception as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive(), box.get("error")


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_link_to_a_device_is_refused_before_reading(tmp_path, target):
    import os

    if not os.path.exists(target):
        pytest.skip(f"no {target}")
    link = tmp_path / "zero.png"
    link.symlink_to(target)
    done, error = _read_in_thread(link)
    assert done and isinstance(error, BadImageError)
    assert "zero.png is not a regular file but a character device" in str(error)


def test_fifo_never_hangs(tmp_path):
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    done, error = _read_in_thread(fifo)
    assert done, "reading a FIFO hung"
    assert isinstance(error, BadImageError) and "pipe.png is not a regular file but a named pipe" in str(error)


def test_link_to_a_regular_image_is_read(tmp_path, rgb):
    p = write_png(tmp_path / "a.png", rgb)
    (tmp_path / "b.png").symlink_to(p)
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), rgb)


def test_byte_limit_is_checked_before_reading(tmp_path, rgb, monkeypatch):
    p = write_png(tmp_path / "a.png", rgb)
    monkeypatch.setattr(imageio, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(BadImageError, match=r"a.png is \d+ bytes, above the limit of 100"):
        read_image(p)


def test_bytes_read_like_the_file_that_holds_them(tmp_path, rgb):
    # Uploads are read from memory: the same pixels as read_image of the same bytes, the same errors by name.
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=90)
    Image.fromarray(rgb).quantize(16).save(tmp_path / "p.png")
    for p in [write_png(tmp_path / "a.png", rgb), tmp_path / "rgba.png", tmp_path / "c.jpg", tmp_path / "p.png"]:
        np.testing.assert_array_equal(imageio.read_image_bytes(p.read_bytes(), "up"), read_image(p))
    (tmp_path / "bad").mkdir()
    for p in _bad(tmp_path / "bad", rgb):
        with pytest.raises(BadImageError, match="upload-x"):
            imageio.read_image_bytes(p.read_bytes(), "upload-x")
    with pytest.raises(BadImageError, match="empty"):
        imageio.read_image_bytes(b"", "upload-x")
