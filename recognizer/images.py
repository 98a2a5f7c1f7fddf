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
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from .errors import ImageTooLarge, InvalidParameter, UnsupportedImage

# Only these decoders ever see untrusted bytes (importing a plugin registers it with Pillow).
# Phones' multi-picture JPEGs (MPO) open through the JPEG decoder.
_PLUGINS = (BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin,
            WebPImagePlugin)
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
                  TypeError, ZeroDivisionError)


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes into an (height, width, 3) uint8 RGB array.

    :param max_pixels: refuse images with more pixels than this, before decoding them
    :raises UnsupportedImage: not one of FORMATS, corrupt or truncated
    :raises ImageTooLarge: more than max_pixels pixels
    """
    if not data:
        raise UnsupportedImage()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels rules
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLarge()
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise (ImageTooLarge() if isinstance(error, Image.DecompressionBombError)
               else UnsupportedImage()) from None
    except _DECODE_ERRORS as error:
        truncated = "truncated" in str(error) or isinstance(error, EOFError)
        raise UnsupportedImage("image_truncated" if truncated else "unsupported_image") from None


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
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max()) if values.size else 0.0
    if mode.startswith("I;16") or 255 < peak <= 65535:
        top = 65535.0
    elif mode == "F" and peak <= 1.0:
        top = 1.0
    else:
        top = max(peak, 255.0)
    return np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def read_file(path: str | Path, max_bytes: int) -> bytes:
    """Read a local image file for the CLI (never reachable over HTTP).

    :raises InvalidParameter: the path is not a readable regular file
    :raises ImageTooLarge: the file is over max_bytes
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise InvalidParameter("path", "not_a_file")
        if path.stat().st_size > max_bytes:
            raise ImageTooLarge("path")
        return path.read_bytes()
    except OSError:
        raise InvalidParameter("path", "unreadable") from None
