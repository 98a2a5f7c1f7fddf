"""Images from where callers have them: an upload, base64 text (a data: URI or bare), a URL, a
local file (CLI only). Each is decoded into RGB pixels and labelled with where it came from,
never with a URL: a hash of it. A request's images are decoded by the ``decode`` it is given:
the service's sandboxed decoders; a local file in this process."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import fetch, images, timing
from .config import Settings
from .errors import ImageTooLarge, InvalidParameter, RecognizerError
from .uploads import encoded_limit

# Where an image can come from in a request, and the body types that can carry one.
ACCEPTED = ("give one of image_url (http, https or a data:image/...;base64, URI), image (a"
            " multipart file, or a raw image/* or application/octet-stream body) or"
            " image_base64 (base64, or a data: URI, in JSON or a form)")
_DATA_URI = re.compile(r"data:(image/[\w.+-]+|application/octet-stream)?(;[\w=.+-]+)*;base64,",
                       re.IGNORECASE)
_BASE64_SPACE = re.compile(rb"[\r\n\t ]")


@dataclass(frozen=True)
class Picture:
    """Decoded RGB pixels, where they came from, and the SHA-256 of the image's bytes.

    ``original`` is the image's own (width, height): larger than the pixels' for a large JPEG
    decoded at a reduced size, whose boxes are scaled back to it for the caller.
    """

    pixels: np.ndarray
    source: str
    digest: str = ""
    original: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image as the caller has it."""
        return self.original or (int(self.pixels.shape[1]), int(self.pixels.shape[0]))

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y): the decoded pixels' size over the image's own."""
        width, height = self.size
        return self.pixels.shape[1] / width, self.pixels.shape[0] / height


def box_in_image(picture: Picture, box) -> dict[str, int]:
    """A box found in a picture's pixels, in the image's own coordinates (as the caller sees
    it: a JPEG decoded at a reduced size has its boxes scaled back up)."""
    (x, y), (width, height) = picture.scale, picture.size
    return {"top": max(0, round(box.top / y)), "right": min(width, round(box.right / x)),
            "bottom": min(height, round(box.bottom / y)), "left": max(0, round(box.left / x))}


def sha256(data: bytes) -> str:
    """The hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


Decode = Callable[..., tuple[np.ndarray, tuple[int, int]]]
# A request's JPEG is decoded at a reduced size (DCT scaling) when it keeps this many times the
# detection size: the smallest face detection finds (40 px across in the detection copy, at
# upsample 1) is then still 100 px across, as much as dlib's 150-px aligned chip (the face and
# a quarter of its width each side) uses. A 12 MP photo decodes at 1/2 in 40% of the time.
DETAIL = 2.5


def from_request(settings: Settings, image_url: str | None = None, image: object = None,
                 image_base64: object = None, prefix: str = "",
                 decode: Decode = images.decode_scaled) -> Picture:
    """The one image of a request, from whichever field carries it.

    :param prefix: the fields' prefix (``other_`` for /verify's second image)
    :param decode: (bytes, max pixels) -> (pixels, the image's size), as images.decode_scaled
    :raises InvalidParameter: ``missing_image`` or ``several_images`` (the detail names the
        accepted fields), ``not_an_image_upload``, ``invalid_base64``, ``wrong_type``
    """
    try:
        return _from_fields(settings, image_url, image, image_base64, prefix, decode)
    except RecognizerError as error:  # a second image's errors name its own fields
        if prefix and not error.field.startswith(prefix):
            error.field = prefix + error.field
        raise


def _from_fields(settings: Settings, image_url: str | None, image: object, image_base64: object,
                 prefix: str, decode: Decode) -> Picture:
    given = {name: value for name, value in (("image_url", image_url), ("image", image),
                                              ("image_base64", image_base64))
             if value is not None}
    if len(given) != 1:
        raise InvalidParameter(prefix + "image", "missing_image" if not given
                               else "several_images", ACCEPTED)
    ((name, value),) = given.items()
    field = prefix + name
    if name == "image_url" and not str(value).lower().startswith("data:"):
        return from_url(settings, value, decode)
    if name == "image" and isinstance(value, bytes) and not value[:5].lower() == b"data:":
        return from_bytes(settings, value, decode)
    if name == "image" and not isinstance(value, (str, bytes)):
        raise InvalidParameter(field, "not_an_image_upload", ACCEPTED)
    return from_bytes(settings, decode_base64(field, value, settings.max_image_bytes,
                                              require_uri=name != "image_base64"), decode)


def decode_base64(field: str, text: object, max_bytes: int, require_uri: bool = False) -> bytes:
    """The bytes of base64 text, bare or a ``data:image/...;base64,`` URI (standard or URL-safe
    alphabet, padded or not, line breaks allowed). The text's length is checked first.

    :param require_uri: only a data: URI is accepted (in fields that also take other things)
    :raises ImageTooLarge: the text is longer than an image of max_bytes can be
    :raises InvalidParameter: ``invalid_base64`` or ``not_an_image_upload``
    """
    if isinstance(text, str):
        text = text.encode("ascii", "replace")
    if not isinstance(text, bytes):
        raise InvalidParameter(field, "wrong_type", "a string")
    if len(text) > encoded_limit(max_bytes):
        raise ImageTooLarge(field, f"bytes: at most {max_bytes}")
    head = _DATA_URI.match(text[:200].decode("ascii", "replace"))
    if head is None and (require_uri or text[:5].lower() == b"data:"):
        raise InvalidParameter(field, "not_an_image_upload" if require_uri else "invalid_base64",
                               "a data:image/...;base64, URI")
    payload = _BASE64_SPACE.sub(b"", text[head.end():] if head else text)
    try:
        alphabet = b"-_" if b"-" in payload or b"_" in payload else None
        return base64.b64decode(payload + b"=" * (-len(payload) % 4), altchars=alphabet,
                                validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(field, "invalid_base64", "base64 text") from None


def from_url(settings: Settings, url: str,
             decode: Decode = images.decode_scaled) -> Picture:
    """Fetch (SSRF-safe, size- and time-bounded) and decode the image at url."""
    with timing.stage("fetch"):
        data = fetch.fetch(url, max_bytes=settings.max_image_bytes,
                           timeout=settings.fetch_timeout,
                           allow_private=settings.allow_private_networks)
    return _decoded(settings, data, f"url:{sha256(url.encode())}", decode)


def from_bytes(settings: Settings, data: bytes,
               decode: Decode = images.decode_scaled) -> Picture:
    """Decode an uploaded image."""
    if len(data) > settings.max_image_bytes:
        raise ImageTooLarge(detail=f"bytes: at most {settings.max_image_bytes}")
    return _decoded(settings, data, f"sha256:{sha256(data)}", decode)


def from_path(settings: Settings, path: str | Path) -> Picture:
    """Decode a local file (CLI only); its source is its path under known_faces/ if it is
    there, else a hash of its bytes."""
    data = images.read_file(path, settings.max_image_bytes)
    resolved = Path(path).resolve()
    root = settings.known_faces_dir.resolve()
    source = (f"file:{resolved.relative_to(root).as_posix()}"
              if resolved.is_relative_to(root) else f"sha256:{sha256(data)}")
    return _decoded(settings, data, source)


def _decoded(settings: Settings, data: bytes, source: str,
             decode: Decode | None = None) -> Picture:
    """A request's image (decode given) at the size that holds every detail recognition uses;
    a local file (CLI) at full size."""
    with timing.stage("decode"):
        if decode is None:
            pixels, original = images.decode_scaled(data, settings.max_image_pixels)
        else:
            pixels, original = decode(data, settings.max_image_pixels,
                                      least_side=round(settings.detect_max_side * DETAIL))
    return Picture(pixels, source, sha256(data), original)
