"""What the store hands out: people, faces and changes as frozen records, and encodings as
raw little-endian float64 bytes (never pickle), validated in both directions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..limits import ENCODING_SIZE
from ..record import Record

_DTYPE = np.dtype("<f8")
BLOB_SIZE = ENCODING_SIZE * _DTYPE.itemsize
log = logging.getLogger(__name__)

# (face id, person's name, encoding): one face as the gallery takes it
FaceRow = tuple[int, str, np.ndarray]


@dataclass(frozen=True)
class Person(Record):
    """A person and how many faces they have."""

    name: str
    face_count: int


@dataclass(frozen=True)
class FaceRecord(Record):
    """One enrolled face: its id, where it came from and when it was added."""

    id: int
    source: str
    created_at: str


@dataclass(frozen=True)
class PersonRecord(Record):
    """A person, when they were first enrolled, and their faces in the order they were added."""

    name: str
    created_at: str
    faces: list[FaceRecord]


@dataclass(frozen=True)
class Export:
    """Every encoding in the store with its person's name, row for row."""

    names: list[str]
    encodings: np.ndarray


@dataclass(frozen=True)
class Changes:
    """The faces changed since a point of the store's change log.

    :ivar latest: the change log's last sequence number, 0 when it is empty
    :ivar reset: the rows are every face in the store: start from nothing
    :ivar changed: otherwise, each changed face's id and whether it is now present (True: added
        or moved to another person; False: deleted), in no particular order
    :ivar rows: the faces present among those changed (every face, on a reset)
    """

    latest: int
    reset: bool
    changed: dict[int, bool] = field(default_factory=dict)
    rows: list[FaceRow] = field(default_factory=list)


def encoding_to_blob(encoding: np.ndarray) -> bytes:
    """Serialise one encoding as 1024 raw bytes."""
    array = np.asarray(encoding, dtype=_DTYPE)
    if array.shape != (ENCODING_SIZE,) or not np.isfinite(array).all():
        raise ValueError("an encoding is 128 finite numbers")
    return array.tobytes()


def blob_to_encoding(blob: bytes) -> np.ndarray:
    """Parse 1024 raw bytes back into an encoding, refusing anything malformed."""
    array = np.frombuffer(blob, dtype=_DTYPE)
    if array.shape != (ENCODING_SIZE,) or not np.isfinite(array).all():
        raise ValueError("corrupt encoding in store")
    return array


def parse_rows(rows: Sequence[tuple[int, str, bytes]]) -> tuple[list[int], list[str], np.ndarray]:
    """(ids, names, encodings) of (id, name, blob) rows, parsed at once; a corrupt encoding is
    logged (by id only) and left out."""
    good = [row for row in rows if len(row[2]) == BLOB_SIZE]
    encodings = np.frombuffer(b"".join(bytes(row[2]) for row in good), dtype=_DTYPE)
    encodings = encodings.reshape(len(good), ENCODING_SIZE)
    finite = np.isfinite(encodings).all(axis=1)
    for face_id in {row[0] for row in rows} - {row[0] for row, ok in zip(good, finite) if ok}:
        log.error("face %d has a corrupt encoding and is left out of matching", face_id)
    kept = [row for row, ok in zip(good, finite) if ok]
    return [int(row[0]) for row in kept], [row[1] for row in kept], encodings[finite]
