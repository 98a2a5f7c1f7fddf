"""Read request bodies: a multipart form or a raw image, all in memory, never past a cap."""

from __future__ import annotations

from typing import BinaryIO

import multipart

from .errors import ImageTooLarge, InvalidParameter

FORM_OVERHEAD = 64 * 1024  # room for boundaries, part headers and small text fields


def read_multipart(stream: BinaryIO, boundary: str | bytes | None, content_length: int,
                   max_bytes: int) -> dict[str, str | bytes]:
    """Parse multipart/form-data: file parts become bytes, other parts text.

    Nothing is spooled to disk. When a name repeats, the first part wins.

    :raises ImageTooLarge: the body or a part is over the cap
    :raises InvalidParameter: the body is not well-formed multipart
    """
    if isinstance(boundary, bytes):
        boundary = boundary.decode("latin-1")
    if not boundary:
        raise InvalidParameter("body", "malformed_multipart")
    limit = max_bytes + FORM_OVERHEAD
    if content_length > limit:
        raise ImageTooLarge()
    form: dict[str, str | bytes] = {}
    try:
        parser = multipart.MultipartParser(
            stream, boundary, content_length, part_limit=16, partsize_limit=max_bytes,
            spool_limit=limit, memory_limit=limit, disk_limit=0,
        )
        for part in parser:
            value = part.raw if part.filename is not None or part.name == "image" else part.value
            form.setdefault(part.name, value)
    except multipart.ParserLimitReached:
        raise ImageTooLarge() from None
    except (multipart.MultipartError, UnicodeDecodeError, ValueError):
        raise InvalidParameter("body", "malformed_multipart") from None
    return form


def read_raw(stream: BinaryIO, content_length: int, max_bytes: int) -> bytes:
    """Read a raw image body of a declared length.

    :raises ImageTooLarge: the declared length is over the cap
    """
    if content_length > max_bytes:
        raise ImageTooLarge()
    return stream.read(content_length)
