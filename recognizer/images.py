"""Decode untrusted image bytes into the 8-bit RGB arrays dlib wants.

Only bytes are decoded: a caller's string never reaches Pillow as a path. Only a short list of
formats is parsed, the pixel count is checked before any pixel is decoded, EXIF orientation is
applied, and every mode (alpha, palette, 16-bit, CMYK, ...) becomes C-contiguous uint8 RGB.
Animated images give their first frame. Truncated images are refused: see faces.py, which
undoes face_recognition's global LOAD_TRUNCATED_IMAGES = True.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import (
    BmpImagePlugin,
    ExifTags,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from .errors import ImageTooComplex, ImageTooLarge, InvalidParameter, UnsupportedImage

# Only these decoders ever see untrusted bytes (importing a plugin registers it with Pillow).
# Phones' multi-picture JPEGs (MPO) open through the JPEG decoder.
_PLUGINS = (BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin,
            WebPImagePlugin)
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
                  TypeError, ZeroDivisionError)
# A progressive JPEG has a scan per pass (libjpeg writes 10); thousands of them cost seconds
# of CPU each megabyte. Only markers count: 0xFF in entropy-coded data is stuffed as FF 00.
MAX_JPEG_SCANS = 100
# Photographs never pack more pixels than this into one byte of file (a JPEG about 8, a PNG
# well under 1); a canvas of millions of pixels in a few kilobytes is a decompression bomb.
MAX_PIXELS_PER_BYTE = 100
BOMB_CHECK_ABOVE = 4_000_000  # pixels: smaller images cost little, whatever they hold


def precheck(data: bytes, max_pixels: int) -> None:
    """Refuse what is costly to decode from a glance at the bytes, before any decoder runs.

    :raises ImageTooComplex: a JPEG with more than MAX_JPEG_SCANS scans
    """
    if data[:3] == b"\xff\xd8\xff":
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            raise ImageTooComplex(f"scans: {scans} JPEG scans, at most {MAX_JPEG_SCANS}")


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes into an (height, width, 3) uint8 RGB array, at full size.

    :param max_pixels: refuse images with more pixels than this, before decoding them
    :raises UnsupportedImage: not one of FORMATS, corrupt or truncated
    :raises ImageTooLarge: more than max_pixels pixels
    """
    pixels, _ = decode_scaled(data, max_pixels, reduce=False)
    return pixels


def decode_scaled(data: bytes, max_pixels: int, reduce: bool = True,
                  least_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode image bytes into (RGB pixels, the image's own (width, height)): a JPEG over
    max_pixels is decoded at 1/2, 1/4 or 1/8 of its size (JPEG's DCT scaling, Pillow's draft),
    so that a 50 MP phone photo never becomes 150 MB of pixels; with least_side, a JPEG is
    decoded at the smallest of those sizes whose longest side is still least_side or more. Sizes
    are as the image is shown, after its EXIF orientation.

    :param reduce: allow decoding a JPEG at a reduced size
    :param least_side: the longest side a reduced JPEG must keep (None: reduce only for
        max_pixels)
    :raises UnsupportedImage: not one of FORMATS, corrupt or truncated
    :raises ImageTooLarge: more than max_pixels pixels, even at 1/8 (JPEG)
    """
    if not data:
        raise UnsupportedImage()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels rules
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels and not (reduce and image.format == "JPEG"):
                    raise ImageTooLarge(detail=f"pixels: at most {max_pixels}")
                _check_density(width * height, len(data))
                if reduce:
                    _reduce(image, max_pixels, least_side)
                if image.size[0] * image.size[1] > max_pixels:
                    raise ImageTooLarge(detail=f"pixels: at most {max_pixels}")
                image.load()
                turned = image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
                return (to_rgb(ImageOps.exif_transpose(image)),
                        (height, width) if turned else (width, height))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise (ImageTooLarge(detail=f"pixels: at most {max_pixels}")
               if isinstance(error, Image.DecompressionBombError) else UnsupportedImage()) from None
    except _DECODE_ERRORS as error:
        truncated = "truncated" in str(error) or isinstance(error, EOFError)
        raise UnsupportedImage("image_truncated" if truncated else "unsupported_image") from None


def _check_density(pixels: int, size: int) -> None:
    if pixels > BOMB_CHECK_ABOVE and pixels > MAX_PIXELS_PER_BYTE * size:
        raise ImageTooComplex(f"canvas: {pixels} pixels in {size} bytes, at most"
                              f" {MAX_PIXELS_PER_BYTE} pixels a byte")


def _reduce(image: Image.Image, max_pixels: int, least_side: int | None = None) -> None:
    """Ask a JPEG's decoder for the largest of 1/1, 1/2, 1/4, 1/8 of its size that holds at
    most max_pixels, or the smallest whose longest side is least_side or more (other formats
    are decoded whole)."""
    width, height = image.size
    if image.format != "JPEG":
        return
    step = 1
    if least_side is not None:
        while step < 8 and max(width, height) // (step * 2) >= least_side:
            step *= 2
    if width * height > max_pixels:
        for step in (2, 4, 8):
            if -(-width // step) * -(-height // step) <= max_pixels:
                break
    if step == 1:
        return
    # Pillow decodes at the largest power-of-two reduction that the requested size divides
    # the image by, rounded down: ask for width // step to get width / step (rounded up)
    image.draft(image.mode, (max(1, width // step), max(1, height // step)))


def to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to C-contiguous uint8 RGB.

    Transparent pixels are composited on white (not left black); 16-bit and float images are
    scaled to 0-255 rather than clipped.
    """
    if image.mode in _HIGH_DEPTH:
        gray = _scale_to_8bit(np.asarray(image), image.mode)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def _scale_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit and float pixels scaled to 0-255, in float32 and in place: one copy of
    the image at 4 bytes a pixel, not several at 8."""
    values = values.astype(np.float32)
    np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max()) if values.size else 0.0
    if mode.startswith("I;16") or 255 < peak <= 65535:
        top = 65535.0
    elif mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = max(peak, 255.0)
    values *= 255.0 / top
    values += 0.5
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def read_file(path: str | Path, max_bytes: int) -> bytes:
    """Read a local image file for the CLI (never reachable over HTTP).

    :raises InvalidParameter: ``no_such_file``, ``not_a_file`` (a folder, a device) or
        ``unreadable``
    :raises ImageTooLarge: the file is over max_bytes
    """
    path = Path(path)
    try:
        if not path.exists():
            raise InvalidParameter("path", "no_such_file")
        if not path.is_file():
            raise InvalidParameter("path", "not_a_file")
        if path.stat().st_size > max_bytes:
            raise ImageTooLarge("path", f"bytes: at most {max_bytes}")
        return path.read_bytes()
    except OSError:
        raise InvalidParameter("path", "unreadable") from None
