"""Decoding untrusted bytes into 8-bit RGB, and reading local files for the CLI."""

import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import GifImagePlugin, Image, ImageFile

from conftest import face, png_bytes
from recognizer import images
from recognizer.errors import ImageTooLarge, InvalidParameter, UnsupportedImage

LIMIT = 40_000_000


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A 60-byte PNG claiming width x height, with one tiny IDAT chunk of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)))


def test_decodes_a_jpeg_to_contiguous_uint8_rgb():
    pixels = images.decode(face("people/obama/obama.jpg").read_bytes(), LIMIT)
    assert pixels.shape == (1137, 910, 3) and pixels.dtype == np.uint8
    assert pixels.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("side", [7_000, 40_000])  # over our limit; over Pillow's own as well
def test_a_header_claiming_a_huge_image_is_refused_before_decoding(side):
    data = png_header(side, side)
    tracemalloc.start()
    with pytest.raises(ImageTooLarge):
        images.decode(data, LIMIT)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10_000_000  # nothing near the 4.8 GB the pixels would need


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 100, bytes(range(256)) * 4, b"<html><body>hi</body></html>",
    b'<svg xmlns="http://www.w3.org/2000/svg"/>', b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n",
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
    b"SIMPLE  =                    T" + b" " * 50, b"GIF89a", png_header(10, 10)[:20],
    png_header(10, 10),
])
def test_non_images_and_other_formats_are_unsupported(data):
    with pytest.raises(UnsupportedImage):
        images.decode(data, LIMIT)


def test_formats_outside_the_list_are_refused_even_when_pillow_reads_them():
    with pytest.raises(UnsupportedImage):
        images.decode(png_bytes(Image.new("RGB", (8, 8)), format="PPM"), LIMIT)


def test_a_truncated_jpeg_is_refused_whatever_face_recognition_set():
    import recognizer.faces  # noqa: F401  (face_recognition sets the flag to True on import)

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = face("people/obama/obama.jpg").read_bytes()
    with pytest.raises(UnsupportedImage) as refused:
        images.decode(data[: len(data) // 2], LIMIT)
    assert refused.value.message == "image_truncated"


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6
    source = Image.new("RGB", (40, 20), (200, 0, 0))
    pixels = images.decode(png_bytes(source, format="JPEG", exif=exif), LIMIT)
    assert pixels.shape == (40, 20, 3)


def test_transparent_pixels_become_white_not_black():
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert (images.decode(png_bytes(clear), LIMIT) == 255).all()
    gray_alpha = Image.new("LA", (4, 4), (0, 0))
    assert (images.decode(png_bytes(gray_alpha), LIMIT) == 255).all()


def test_sixteen_bit_images_are_scaled_not_clipped():
    levels = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    pixels = images.decode(png_bytes(Image.fromarray(levels)), LIMIT)
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert 120 <= pixels[0, 128, 0] <= 135  # mid-grey stays mid-grey


@pytest.mark.parametrize("mode", ["1", "L", "P", "CMYK", "YCbCr", "I", "F", "RGBA", "LA", "PA"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new("RGB", (16, 8), (10, 120, 240)).convert(mode)
    save = {"format": "TIFF"} if mode in ("I", "F", "CMYK", "YCbCr", "PA") else {}
    pixels = images.decode(png_bytes(image, **save), LIMIT)
    assert pixels.shape == (8, 16, 3) and pixels.dtype == np.uint8


def test_only_the_first_frame_of_an_animation_is_used(monkeypatch):
    frames = [Image.new("RGB", (32, 32), (255 * (i % 2), 0, 0)) for i in range(300)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    visited = []
    real_seek = GifImagePlugin.GifImageFile.seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "seek",
                        lambda image, frame: visited.append(frame) or real_seek(image, frame))
    pixels = images.decode(buffer.getvalue(), LIMIT)
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert set(visited) <= {0}  # the other 299 frames are never decoded


def test_a_non_finite_pixel_does_not_blacken_a_float_image():
    values = np.full((4, 4), 100.0, dtype=np.float32)
    values[0, 0], values[1, 1] = np.nan, np.inf
    decoded = images.decode(png_bytes(Image.fromarray(values, mode="F"), format="TIFF"), 10**6)
    assert decoded[3, 3].tolist() == [100, 100, 100] and decoded[0, 0].tolist() == [0, 0, 0]


def test_read_file_refuses_directories_missing_and_oversized_files(tmp_path):
    with pytest.raises(InvalidParameter):
        images.read_file(tmp_path, 1000)
    with pytest.raises(InvalidParameter):
        images.read_file(tmp_path / "missing.jpg", 1000)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(ImageTooLarge):
        images.read_file(big, 1000)
    assert images.read_file(big, 5000) == b"x" * 2000
