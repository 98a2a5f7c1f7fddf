"""Numpy helpers for the gallery's parallel arrays: row numbers handed out and reused, arrays
grown in steps, sums accumulated with repeated indices, encodings checked. Pure numpy."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .limits import ENCODING_SIZE

# Rows per step of batch arithmetic: big temporaries cost more in fresh pages than in sums.
CHUNK = 8192


class Pool:
    """Numbers for the rows of parallel arrays: freed numbers are used again before new ones."""

    def __init__(self, used: int = 0) -> None:
        self.used = used  # rows 0..used-1 have been handed out at some time
        self.free: list[int] = []

    def take(self, count: int) -> np.ndarray:
        """count row numbers, freed ones first."""
        reused = self.free[len(self.free) - min(count, len(self.free)):]
        del self.free[len(self.free) - len(reused):]
        fresh = np.arange(self.used, self.used + count - len(reused), dtype=np.int64)
        self.used += len(fresh)
        return np.concatenate([np.asarray(reused, dtype=np.int64), fresh])

    def give(self, numbers: np.ndarray) -> None:
        """Free row numbers for reuse."""
        self.free.extend(numbers.tolist())


def as_vector(encoding: np.ndarray) -> np.ndarray:
    """An encoding as 128 float64 numbers."""
    vector = np.asarray(encoding, dtype=np.float64)
    if vector.shape != (ENCODING_SIZE,):
        raise ValueError(f"an encoding is {ENCODING_SIZE} numbers")
    return vector


def batch(added: Iterable[tuple[int, str, np.ndarray]]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(face ids, names, float64 encodings) of the faces to add, the last of a repeated id."""
    latest = {int(face_id): (name, encoding) for face_id, name, encoding in added}
    encodings = np.zeros((len(latest), ENCODING_SIZE))
    for row, (_, encoding) in enumerate(latest.values()):
        encodings[row] = as_vector(encoding)
    if not np.isfinite(encodings).all():
        raise ValueError("an encoding is 128 finite numbers")
    ids = np.fromiter(latest, np.int64, len(latest))
    return ids, [name for name, _ in latest.values()], encodings


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (np.unique's hashing is slower on large arrays)."""
    values = np.sort(values)
    first = np.ones(len(values), bool)
    first[1:] = values[1:] != values[:-1]
    return values[first]


def accumulate(ufunc: np.ufunc, target: np.ndarray, index: np.ndarray, source: np.ndarray,
                rows: np.ndarray | None = None) -> None:
    """target[index[i]] = ufunc(target[index[i]], source[rows[i]]) for each i in order,
    repeated indices included (rows defaults to every row of source)."""
    for start in range(0, len(index), CHUNK):
        chunk = slice(start, start + CHUNK)
        part, values = index[chunk], source[chunk] if rows is None else source[rows[chunk]]
        if len(distinct(part)) == len(part):
            target[part] = ufunc(target[part], values)
        else:
            ufunc.at(target, part, values)


def float32_exact(values: np.ndarray) -> bool:
    """Whether every value survives a round trip through float32."""
    return all(np.array_equal(values[start:start + CHUNK].astype(np.float32),
                              values[start:start + CHUNK])
               for start in range(0, len(values), CHUNK))


def fit(array: np.ndarray, size: int, fill: float = 0) -> np.ndarray:
    """The array with at least size rows: grown by half again when short (new rows = fill)."""
    if len(array) >= size:
        return array
    grown = np.full((max(size, len(array) * 3 // 2),) + array.shape[1:], fill, array.dtype)
    grown[:len(array)] = array
    return grown
