"""Encodings files: the ``.npz`` a face_recognition script saves, read and written without pickle.

The format is what ``np.savez(path, names=np.array(names), encodings=np.array(encodings))``
writes: a zip archive holding exactly two ``.npy`` arrays, ``names`` (N strings) and
``encodings`` (N x 128 floats). Reading checks every array's header (dtype and shape, from
``np.lib.format``) before any array is loaded, so an object (pickled) array is refused unread
and a header declaring a huge array (a decompression bomb) is refused before memory is
allocated for it. Writing goes to a temporary file, readable by the owner only, that replaces
the target in one rename.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from .errors import InvalidParameter
from .limits import ENCODING_SIZE

ARRAYS = ("names", "encodings")
MAX_FACES = 1_000_000  # rows in one file
MAX_ARRAY_BYTES = 1 << 30  # the size an array's header may declare (1 GiB)
MAX_FILE_BYTES = 3 << 30  # the file itself (two arrays and the zip's overhead)
_MAX_HEADER = 10_000  # bytes of .npy header, numpy's own default limit
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# What a damaged archive raises from zipfile, zlib or numpy's .npy reader.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError)


@dataclass(frozen=True)
class EncodingsFile:
    """The arrays of an encodings file, checked, and the SHA-256 of its bytes."""

    names: np.ndarray
    encodings: np.ndarray
    sha256: str


@dataclass(frozen=True)
class _Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    data_bytes: int  # what the header declares: the product of the shape times the item size
    consistent: bool  # the member's size is its header's plus the data the header declares


def refused(code: str, detail: str | None = None) -> InvalidParameter:
    """The error for a file that cannot be imported: field ``file``, its code and detail."""
    return InvalidParameter("file", code, detail)


def read(path: str | Path) -> EncodingsFile:
    """Read and check an encodings file; nothing is loaded before every header has passed.

    :raises InvalidParameter: field ``file``: ``no_such_file``, ``not_a_file``, ``unreadable``,
        ``not_a_npz``, ``missing_array``, ``unexpected_array``, ``pickled_arrays``,
        ``bad_dtype``, ``bad_shape``, ``length_mismatch``, ``empty``, ``too_large`` or
        ``not_finite`` (with the first bad row: ``not_finite: encodings[7]``)
    """
    with _open_regular(Path(path)) as stream:
        digest = _sha256(stream)
        stream.seek(0)
        if stream.read(4) not in _ZIP_MAGIC:
            raise refused("not_a_npz")
        stream.seek(0)
        names, encodings = _load(stream)
    bad = np.flatnonzero(~np.isfinite(encodings).all(axis=1))
    if len(bad):
        raise refused("not_finite", f"encodings[{bad[0]}]")
    return EncodingsFile(names, encodings, digest)


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file: a directory, device or FIFO is refused before it is opened."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise refused("not_a_file")
        stream = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        raise refused("no_such_file") from None
    except OSError:
        raise refused("unreadable") from None
    if os.fstat(stream.fileno()).st_size > MAX_FILE_BYTES:
        stream.close()
        raise refused("too_large")
    return stream


def _sha256(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _load(stream: BinaryIO) -> tuple[np.ndarray, np.ndarray]:
    """The two arrays, read from the archive once their headers have passed."""
    try:
        with zipfile.ZipFile(stream) as archive:
            headers = _headers(archive)
            _check(headers)
            names = _array(archive, "names", headers["names"])
            encodings = _array(archive, "encodings", headers["encodings"])
    except _DAMAGED:
        raise refused("not_a_npz") from None
    return names, encodings.astype(np.float64)


def _headers(archive: zipfile.ZipFile) -> dict[str, _Header]:
    """Each array's declared shape and dtype; the archive must hold exactly names and encodings."""
    members = archive.namelist()
    if len(set(members)) != len(members):
        raise ValueError("a member repeats")
    for member in members:
        if member not in (f"{array}.npy" for array in ARRAYS):
            raise refused("unexpected_array", member[:100])
    for array in ARRAYS:
        if f"{array}.npy" not in members:
            raise refused("missing_array", array)
    return {array: _header(archive, archive.getinfo(f"{array}.npy")) for array in ARRAYS}


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Header:
    with archive.open(info) as member:
        reader = _HEADER_READERS.get(np.lib.format.read_magic(member))
        if reader is None:
            raise ValueError("unsupported .npy version")
        shape, _, dtype = reader(member, max_header_size=_MAX_HEADER)
        data_bytes = math.prod(shape) * dtype.itemsize
        return _Header(tuple(shape), dtype, data_bytes,
                       consistent=info.file_size == member.tell() + data_bytes)


def _check(headers: dict[str, _Header]) -> None:
    """Refuse, from the headers alone, anything but N names and N x 128 floats."""
    names, encodings = headers["names"], headers["encodings"]
    _check_dtypes(names.dtype, encodings.dtype)
    _check_shapes(names, encodings)
    if not (names.consistent and encodings.consistent):
        raise refused("not_a_npz")


def _check_dtypes(names: np.dtype, encodings: np.dtype) -> None:
    if names.hasobject or encodings.hasobject:
        raise refused("pickled_arrays")
    if names.kind != "U":
        raise refused("bad_dtype", "names")
    if encodings.kind != "f":
        raise refused("bad_dtype", "encodings")


def _check_shapes(names: _Header, encodings: _Header) -> None:
    if len(names.shape) != 1:
        raise refused("bad_shape", "names")
    if len(encodings.shape) != 2 or encodings.shape[1] != ENCODING_SIZE:
        raise refused("bad_shape", "encodings")
    if names.shape[0] != encodings.shape[0]:
        raise refused("length_mismatch")
    if names.shape[0] == 0:
        raise refused("empty")
    if names.shape[0] > MAX_FACES or max(names.data_bytes, encodings.data_bytes) > MAX_ARRAY_BYTES:
        raise refused("too_large")


def _array(archive: zipfile.ZipFile, array: str, header: _Header) -> np.ndarray:
    """Read one checked array; reading to the member's end makes zipfile verify its CRC."""
    with archive.open(f"{array}.npy") as member:
        loaded = np.lib.format.read_array(member, allow_pickle=False,
                                          max_header_size=_MAX_HEADER)
        if member.read(1):
            raise ValueError("data after the array")
    if loaded.shape != header.shape or loaded.dtype != header.dtype:
        raise ValueError("the array is not what its header declared")
    return loaded


def write(path: str | Path, names: Sequence[str], encodings: np.ndarray) -> Path:
    """Write an encodings file atomically, readable by its owner only (biometric data).

    A name without the ``.npz`` suffix gets it, as with ``np.savez``. An existing file is
    replaced in one rename: a reader sees the old file or the new one, never a part.

    :return: the absolute path written
    :raises InvalidParameter: field ``file``, ``unwritable``: the folder does not exist or is
        not writable, or the target is a directory
    """
    target = Path(path).absolute()
    target = target if target.suffix == ".npz" else target.with_name(target.name + ".npz")
    try:
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                                 suffix=".tmp")
    except OSError:
        raise refused("unwritable") from None
    try:
        _write_arrays(descriptor, names, encodings)
        os.replace(temporary, target)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise refused("unwritable") from None
        raise
    _sync_folder(target.parent)
    return target


def _write_arrays(descriptor: int, names: Sequence[str], encodings: np.ndarray) -> None:
    with os.fdopen(descriptor, "wb") as stream:
        os.fchmod(stream.fileno(), 0o600)
        np.savez(stream, names=np.array(list(names), dtype=str),
                 encodings=np.asarray(encodings, dtype=np.float64).reshape(-1, ENCODING_SIZE))
        stream.flush()
        os.fsync(stream.fileno())


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
