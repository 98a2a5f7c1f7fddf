"""Images from where callers have them: an upload, a URL, a local file (CLI only). Each is
decoded into RGB pixels and labelled with where it came from, never with a URL: a hash of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import fetch, images
from .config import Settings
from .errors import ImageTooLarge, InvalidParameter


@dataclass(frozen=True)
class Picture:
    """Decoded RGB pixels and where they came from."""

    pixels: np.ndarray
    source: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def sha256(data: bytes) -> str:
    """The hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def from_request(settings: Settings, image_url: str | None, upload: object) -> Picture:
    """The image of an HTTP request: an uploaded file or body, or else a URL to fetch.

    :raises InvalidParameter: neither or both are given, or the upload is not a file
    """
    if upload is not None and image_url is not None:
        raise InvalidParameter("image", "give image_url or an uploaded image, not both")
    if upload is not None:
        if not isinstance(upload, bytes):
            raise InvalidParameter("image", "upload the image as a file or a raw body")
        return from_bytes(settings, upload)
    if image_url is None:
        raise InvalidParameter("image_url", "give image_url or an uploaded image")
    return from_url(settings, image_url)


def from_url(settings: Settings, url: str) -> Picture:
    """Fetch (SSRF-safe, size- and time-bounded) and decode the image at url."""
    data = fetch.fetch(url, max_bytes=settings.max_image_bytes, timeout=settings.fetch_timeout,
                       allow_private=settings.allow_private_networks)
    return Picture(images.decode(data, settings.max_image_pixels), f"url:{sha256(url.encode())}")


def from_bytes(settings: Settings, data: bytes) -> Picture:
    """Decode an uploaded image."""
    if len(data) > settings.max_image_bytes:
        raise ImageTooLarge()
    return Picture(images.decode(data, settings.max_image_pixels), f"sha256:{sha256(data)}")


def from_path(settings: Settings, path: str | Path) -> Picture:
    """Decode a local file (CLI only); its source is its path under known_faces/ if it is
    there, else a hash of its bytes."""
    data = images.read_file(path, settings.max_image_bytes)
    resolved = Path(path).resolve()
    root = settings.known_faces_dir.resolve()
    source = (f"file:{resolved.relative_to(root).as_posix()}"
              if resolved.is_relative_to(root) else f"sha256:{sha256(data)}")
    return Picture(images.decode(data, settings.max_image_pixels), source)
