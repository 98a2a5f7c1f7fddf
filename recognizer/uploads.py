"""Read request bodies: a multipart form or a raw image or video, all in memory, never past a
cap.

A request carries at most two images (``/verify``), each as bytes or as base64 text, whose
length is checked before it is decoded, or one video clip (``/enroll``), as bytes:
:func:`body_limit` bounds the whole body by the larger.
"""

from __future__ import annotations

from typing import BinaryIO

import multipart

from .errors import ImageTooLarge, InvalidParameter, VideoTooLarge

FORM_OVERHEAD = 64 * 1024  # room for boundaries, part headers and small text fields
DATA_URI_PREFIX = 100  # room for "data:image/...;base64," before base64 text
# Form fields read as bytes even without a file name: the service's, then CompreFace's.
IMAGE_FIELDS = ("image", "other_image", "video", "file", "source_image", "target_image")


def encoded_limit(max_bytes: int) -> int:
    """The longest base64 text (a data: URI's included) of an image of max_bytes."""
    return 4 * -(-max_bytes // 3) + DATA_URI_PREFIX


def body_limit(max_bytes: int, max_video_bytes: int = 0) -> int:
    """The largest request body the service reads: two images, base64 or not, and fields, or
    a video clip and fields."""
    return max(2 * encoded_limit(max_bytes), max_video_bytes) + FORM_OVERHEAD


def read_multipart(stream: BinaryIO, boundary: str | bytes | None, content_length: int,
                   max_bytes: int, max_video_bytes: int = 0) -> dict[str, str | bytes]:
    """Parse multipart/form-data: file parts become bytes, other parts text.

    Nothing is spooled to disk. When a name repeats, the first part wins.

    :raises ImageTooLarge: the body or a part is over the cap
    :raises InvalidParameter: the body is not well-formed multipart
    """
    if isinstance(boundary, bytes):
        boundary = boundary.decode("latin-1")
    if not boundary:
        raise InvalidParameter("body", "malformed_multipart")
    limit = body_limit(max_bytes, max_video_bytes)
    if content_length > limit:
        raise ImageTooLarge(detail=f"bytes: a body of at most {limit}")
    form: dict[str, str | bytes] = {}
    try:
        parser = multipart.MultipartParser(
            stream, boundary, content_length, part_limit=16,
            partsize_limit=max(encoded_limit(max_bytes), max_video_bytes), spool_limit=limit,
            memory_limit=limit,
            disk_limit=0,
        )
        for part in parser:
            raw = part.filename is not None or part.name in IMAGE_FIELDS
            form.setdefault(part.name, part.raw if raw else part.value)
    except multipart.ParserLimitReached as limit:
        if "size" in str(limit) or "limit" in str(limit):  # a part, or the body, too big
            raise ImageTooLarge(detail=f"bytes: at most {max_bytes}" + (
                f" an image, {max_video_bytes} a video" if max_video_bytes else "")) from None
        raise InvalidParameter("body", "malformed_multipart",  # too many parts or headers
                               "at most 16 parts, each with a few short headers") from None
    except (multipart.MultipartError, UnicodeDecodeError, ValueError):
        raise InvalidParameter("body", "malformed_multipart") from None
    return form


def read_raw(stream: BinaryIO, content_length: int, max_bytes: int,
             field: str = "image") -> bytes:
    """Read a raw image (or video) body of a declared length.

    :raises ImageTooLarge: the declared length is over the cap (an image)
    :raises VideoTooLarge: the same, for a video (field ``video``)
    """
    if content_length > max_bytes:
        if field == "video":
            raise VideoTooLarge(f"bytes: at most {max_bytes}")
        raise ImageTooLarge(detail=f"bytes: at most {max_bytes}")
    return stream.read(content_length)
