"""The enrolled people, searchable by nearest centroid, changed one face at a time. Pure numpy;
faiss is imported only when a gallery grows large enough to need it.

A person is the centroid (mean) of their faces' encodings. The gallery keeps every face's
encoding and each person's running sum and face count, so adding, removing or moving a face
changes one person: one row of the search matrix, or one entry of the index, never a rebuild.
:meth:`Gallery.apply` makes a whole batch of changes with vectorised numpy: a million faces
load in 10-15 s on one core, the index included. One lock guards everything: searches from
video threads may run while the store applies changes.

Searches return the k nearest people with float64 distances to their float64 centroids, by one
of two paths:

- **exact**, up to ``index_above`` people: a float32 matrix of centroids with their squared
  norms. One matrix-vector product bounds every distance to within float32 rounding; every
  person within that bound of the k-th nearest is re-ranked in float64, so the answers are
  those of a float64 brute force.
- **faiss**, above ``index_above`` people: an inverted-file index with about sqrt(people)
  lists, of which :data:`IVF_PROBES` are searched, holding each centroid in float16
  (``IndexIVFScalarQuantizer``, ``QT_fp16``), with a hashtable direct map so that a person's
  entry is replaced in O(1). Its nearest k + :data:`IVF_MARGIN` are re-ranked in float64. It is
  approximate: at a million people it finds the true nearest for 99% or more of probes in a
  few milliseconds (``scripts/bench_gallery.py`` has the figures). Unlike HNSW, an IVF index
  removes entries; unlike PQ fast-scan, it removes them through the direct map; float16 halves
  the bytes each query scans against float32 (IndexIVFFlat), ~1.7x faster at equal recall.
  It is retrained only when the number of people has changed :data:`IVF_REGROW` times over
  since it was trained, and dropped (back to exact) when it falls to half of ``index_above``,
  so that a gallery near the threshold does not switch at every change.

Face encodings are stored as float32 while every one of them is exactly a float32 number
(dlib's always are), and as float64 as soon as one is not: nothing is ever rounded.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import threading
import time
from typing import Iterable

import numpy as np

ENCODING_SIZE = 128
# Up to this many people the search is exact, a float32 scan of every centroid: about 2 ms at
# 50,000 people (40 ns a person), and every answer is the brute force's. Above it the index
# answers in about 1 ms at 100,000 people and 2 ms at a million, but only approximately
# (scripts/bench_gallery.py); below it, it would save at most a millisecond or two a face.
INDEX_ABOVE = 50_000
# Inverted lists searched per query. About 1 in 8 of the lists at a million people (1,000
# lists): recall@1 >= 0.99 there; nearer all of them, so nearer exact, for smaller galleries.
# Read at every search: changing it trades latency for recall without a rebuild.
IVF_PROBES = 128
# Candidates fetched from the index beyond the k asked for, re-ranked in float64: float16
# distances misorder near neighbours of a stranger (many fillers lie about equally far).
IVF_MARGIN = 16
# The index is retrained when the number of people leaves [trained / 4, trained * 4].
IVF_REGROW = 4
# k-means training: points sampled per list (faiss wants at least 39) and iterations.
_TRAIN_PER_LIST = 40
_TRAIN_ITERATIONS = 10
# Unit roundoff of float32: bounds the error of the exact path's float32 scan.
_ROUNDOFF = 2.0 ** -24
# Rows per step of batch arithmetic: big temporaries cost more in fresh pages than in sums.
_CHUNK = 8192
log = logging.getLogger(__name__)

Face = tuple[int, str, np.ndarray]


class _Pool:
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


class Gallery:
    """Every enrolled person as the centroid of their faces, for nearest-person search.

    Faces are known by integer ids (the store's); people by name. Thread-safe.
    """

    def __init__(self, index_above: int = INDEX_ABOVE) -> None:
        """
        :param index_above: search with a faiss index above this many people (0: always),
            exactly at or below it; the index is dropped again at half as many
        """
        if index_above < 0:
            raise ValueError("index_above must be 0 or more")
        self.index_above = int(index_above)
        self._lock = threading.Lock()
        self._reset()

    @classmethod
    def from_encodings(cls, by_person: dict[str, list[np.ndarray]], **kwargs) -> "Gallery":
        """A gallery of {name: [encoding, ...]}, faces numbered from 0 in name order; people
        without encodings are left out.

        :param kwargs: passed to the constructor (``index_above``)
        """
        gallery = cls(**kwargs)
        faces = ((name, encoding) for name, rows in sorted(by_person.items()) for encoding in rows)
        gallery.apply((), [(face_id, name, row) for face_id, (name, row) in enumerate(faces)])
        return gallery

    def _reset(self) -> None:
        self._rows: dict[int, int] = {}  # face id -> row of _encodings and _owner
        self._row_pool = _Pool()
        self._encodings = np.zeros((0, ENCODING_SIZE), np.float32)  # float64 once one needs it
        self._owner = np.zeros(0, np.int64)  # row -> person slot; -1 for a free row
        self._slots: dict[str, int] = {}  # name -> slot of _names, _sums, _counts, _matrix
        self._slot_pool = _Pool()
        self._names: list[str | None] = []
        self._sums = np.zeros((0, ENCODING_SIZE))
        self._counts = np.zeros(0, np.int64)
        self._matrix: np.ndarray | None = np.zeros((0, ENCODING_SIZE), np.float32)  # exact path
        self._sq_norms = np.zeros(0, np.float32)  # of _matrix's rows; inf for a free slot
        self._max_sq = 0.0  # at least the largest of _sq_norms
        self._index = None  # the faiss path: an IVF index over slots, when _matrix is None
        self._trained_for = 0  # people when the index was trained

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def names(self) -> tuple[str, ...]:
        """Everyone enrolled, in name order."""
        with self._lock:
            return tuple(sorted(self._slots))

    @property
    def faces(self) -> int:
        """How many faces the centroids are made from."""
        return len(self._rows)

    @property
    def index_kind(self) -> str:
        """"faiss" while the faiss index answers searches, else "exact"."""
        return "exact" if self._index is None else "faiss"

    @property
    def nbytes(self) -> int:
        """Approximate memory held: the arrays, the faiss index and the id tables' hash tables
        (not the Python int and str objects in them)."""
        with self._lock:
            arrays = (self._encodings, self._owner, self._sums, self._counts, self._matrix,
                      self._sq_norms)
            held = sum(array.nbytes for array in arrays if array is not None)
            tables = sum(sys.getsizeof(table) for table in (self._rows, self._slots, self._names))
            return held + tables + _index_bytes(self._index)

    def add(self, face_id: int, name: str, encoding: np.ndarray) -> None:
        """Add a face to a person, creating the person if needed. A face id already present is
        replaced, and may move to another person.

        :raises ValueError: the encoding is not 128 finite numbers
        """
        self.apply((), [(face_id, name, encoding)])

    def remove(self, face_id: int) -> None:
        """Remove a face; a person with no faces left is removed too. An absent face is ignored."""
        self.apply([face_id], ())

    def apply(self, removed: Iterable[int], added: Iterable[Face]) -> None:
        """Remove faces, then add (or replace) faces, as one change under one lock.

        :param removed: face ids; absent ones are ignored
        :param added: (face_id, name, encoding) triples; the last of a repeated id counts
        :raises ValueError: an encoding is not 128 finite numbers (nothing is changed)
        """
        ids, names, encodings = _batch(added)
        with self._lock:
            dropped = self._drop(set(map(int, removed)) | set(ids.tolist()))
            inserted = self._insert(ids, names, encodings)
            self._refresh(_distinct(np.concatenate([dropped, inserted])))

    def clear(self) -> None:
        """Remove everybody."""
        with self._lock:
            self._reset()

    def nearest(self, encoding: np.ndarray, k: int,
                without: int | None = None) -> list[tuple[str, float]]:
        """The k nearest people to an encoding, nearest first (ties in name order).

        :param without: a face id to leave out: its person is taken as they would be without
            it, and is left out if it is their only face
        :return: (name, distance to their centroid) pairs; fewer when fewer people are enrolled
        """
        probe = _vector(encoding)
        with self._lock:
            if k <= 0 or not self._slots:
                return []
            skip, adjusted = self._without(without, probe)
            slots = self._candidates(probe, k + (skip >= 0))
            found = self._ranked(slots[slots != skip], probe) + ([adjusted] if adjusted else [])
        return sorted(found, key=lambda pair: (pair[1], pair[0]))[:k]

    def distance_to(self, name: str, encoding: np.ndarray,
                    without: int | None = None) -> float | None:
        """Distance from an encoding to one person's centroid.

        :param without: a face id to leave out, as in :meth:`nearest`
        :return: None when nobody of that name is enrolled (or only with that face)
        """
        probe = _vector(encoding)
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return None
            skip, adjusted = self._without(without, probe)
            if skip == slot:
                return None if adjusted is None else adjusted[1]
            return float(np.linalg.norm(self._sums[slot] / self._counts[slot] - probe))

    # Changes. Each of these runs under the lock.

    def _drop(self, face_ids: set[int]) -> np.ndarray:
        """Take faces out of their people's sums; return the people touched."""
        popped = (self._rows.pop(face_id, None) for face_id in face_ids)
        rows = np.fromiter((row for row in popped if row is not None), np.int64)
        slots = self._owner[rows]
        _accumulate(np.subtract, self._sums, slots, self._encodings, rows)
        np.subtract.at(self._counts, slots, 1)
        self._owner[rows] = -1
        self._row_pool.give(rows)
        return slots

    def _insert(self, ids: np.ndarray, names: list[str], encodings: np.ndarray) -> np.ndarray:
        """Add faces to their people's sums (creating people); return the people touched."""
        slots = self._slots_for(names)
        rows = self._row_pool.take(len(ids))
        self._store_encodings(rows, encodings)
        self._owner[rows] = slots
        self._rows.update(zip(ids.tolist(), rows.tolist()))
        _accumulate(np.add, self._sums, slots, encodings)
        np.add.at(self._counts, slots, 1)
        return slots

    def _slots_for(self, names: list[str]) -> np.ndarray:
        """Each name's slot, giving new people free slots."""
        new = [name for name in dict.fromkeys(names) if name not in self._slots]
        fresh = self._slot_pool.take(len(new)).tolist()
        self._slots.update(zip(new, fresh))
        self._names.extend([None] * (self._slot_pool.used - len(self._names)))
        for name, slot in zip(new, fresh):
            self._names[slot] = name
        self._fit_people()
        return np.fromiter((self._slots[name] for name in names), np.int64, len(names))

    def _fit_people(self) -> None:
        """Grow the per-person sums and counts to the slots handed out."""
        size = self._slot_pool.used
        self._sums, self._counts = _fit(self._sums, size), _fit(self._counts, size)

    def _store_encodings(self, rows: np.ndarray, encodings: np.ndarray) -> None:
        """Keep faces' encodings, as float32 while that loses nothing."""
        if self._encodings.dtype == np.float32 and not _float32_exact(encodings):
            self._encodings = self._encodings.astype(np.float64)
        self._encodings = _fit(self._encodings, self._row_pool.used)
        self._owner = _fit(self._owner, self._row_pool.used, -1)
        self._encodings[rows] = encodings

    def _refresh(self, slots: np.ndarray) -> None:
        """Free the people left without faces, and bring the search path up to date for these
        people (or rebuild it, when the size calls for that)."""
        empty = self._counts[slots] == 0
        self._free_people(slots[empty])
        if self._rebuilt():
            return
        if self._index is None:
            self._set_rows(slots[~empty], slots[empty])
        elif len(slots):
            self._index.remove_ids(slots)
            self._index.add_with_ids(self._vectors(slots[~empty]), slots[~empty])

    def _free_people(self, slots: np.ndarray) -> None:
        for slot in slots.tolist():
            del self._slots[self._names[slot]]
            self._names[slot] = None
        self._sums[slots] = 0.0  # what float drift the subtractions left goes with them
        self._slot_pool.give(slots)

    def _set_rows(self, slots: np.ndarray, freed: np.ndarray) -> None:
        """Put people's float32 centroids into the exact path's matrix, and blank freed slots."""
        self._matrix = _fit(self._matrix, self._slot_pool.used)
        self._sq_norms = _fit(self._sq_norms, self._slot_pool.used, np.inf)
        self._matrix[freed], self._sq_norms[freed] = 0.0, np.inf
        vectors = self._vectors(slots)
        self._matrix[slots] = vectors
        sq_norms = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
        self._sq_norms[slots] = sq_norms
        self._max_sq = max(self._max_sq, float(sq_norms.max(initial=0.0)))

    def _rebuilt(self) -> bool:
        """Switch paths, retrain the index or compact the matrix if the size calls for it."""
        people = len(self._slots)
        if self._index is None:
            if people > self.index_above:
                self._build_index()
            elif len(self._slot_pool.free) > max(1024, people):  # mostly holes: compact
                self._build_matrix()
            else:
                return False
        elif people <= self.index_above // 2:
            self._build_matrix()
        elif not self._trained_for / IVF_REGROW <= people <= self._trained_for * IVF_REGROW:
            self._build_index()
        else:
            return False
        return True

    def _compact(self) -> None:
        """Renumber people 0..P-1, dropping free slots."""
        live = np.flatnonzero(self._counts[:self._slot_pool.used] > 0)
        renumber = np.full(self._slot_pool.used, -1, np.int64)
        renumber[live] = np.arange(len(live))
        owner = self._owner[:self._row_pool.used]
        owner[owner >= 0] = renumber[owner[owner >= 0]]
        self._sums, self._counts = self._sums[live], self._counts[live]
        self._names = [self._names[slot] for slot in live.tolist()]
        self._slots = {name: slot for slot, name in enumerate(self._names)}
        self._slot_pool = _Pool(len(live))

    def _build_matrix(self) -> None:
        """Search exactly from now on."""
        self._compact()
        self._index, self._trained_for = None, 0
        self._matrix = np.zeros((len(self._slots), ENCODING_SIZE), np.float32)
        self._sq_norms, self._max_sq = np.zeros(len(self._slots), np.float32), 0.0
        self._set_rows(np.arange(len(self._slots)), np.zeros(0, np.int64))
        log.info("gallery: exact search over %d people", len(self._slots))

    def _build_index(self) -> None:
        """Search with a newly trained faiss index from now on; if none can be built (faiss
        missing, memory short), search exactly for good rather than retry at every change."""
        started = time.perf_counter()
        self._compact()
        self._index = self._matrix = self._sq_norms = None  # free them before building
        try:
            index = _ivf(self._vectors(np.arange(len(self._slots))))
        except Exception:
            log.exception("gallery: no faiss index; searching exactly from now on")
            self.index_above = sys.maxsize
            return self._build_matrix()
        self._index, self._trained_for = index, len(self._slots)
        log.info("gallery: faiss IVF index of %d lists over %d people, built in %.1f s",
                 index.nlist, len(self._slots), time.perf_counter() - started)

    def _vectors(self, slots: np.ndarray) -> np.ndarray:
        """These people's centroids in float32."""
        vectors = np.empty((len(slots), ENCODING_SIZE), np.float32)
        for start in range(0, len(slots), _CHUNK):
            part = slots[start:start + _CHUNK]
            np.divide(self._sums[part], self._counts[part, None], casting="same_kind",
                      out=vectors[start:start + _CHUNK])
        return vectors

    # Searches. Each of these runs under the lock.

    def _without(self, face_id: int | None, probe: np.ndarray) -> tuple[int, tuple | None]:
        """(slot of the left-out face's person or -1, that person's (name, distance) without
        it, or None when it was their only face)."""
        row = None if face_id is None else self._rows.get(face_id)
        if row is None:
            return -1, None
        slot = int(self._owner[row])
        count = int(self._counts[slot]) - 1
        if not count:
            return slot, None
        centroid = (self._sums[slot] - self._encodings[row]) / count
        return slot, (self._names[slot], float(np.linalg.norm(centroid - probe)))

    def _candidates(self, probe: np.ndarray, k: int) -> np.ndarray:
        """Slots that include the k nearest people (all of them on the exact path)."""
        if self._index is not None:
            query = probe.astype(np.float32)[None]
            _, found = self._index.search(query, k + IVF_MARGIN, params=_probing(IVF_PROBES))
            return found[0][found[0] >= 0]
        used = self._slot_pool.used
        if k >= len(self._slots):
            return np.flatnonzero(self._counts[:used] > 0)
        approximate = self._matrix[:used] @ probe.astype(np.float32)
        approximate *= -2.0
        approximate += self._sq_norms[:used]  # the squared distance less |probe|^2
        kth = np.partition(approximate, k - 1)[k - 1]
        return np.flatnonzero(approximate <= kth + self._slack(probe))

    def _slack(self, probe: np.ndarray) -> float:
        """Twice the largest error of a float32 squared distance on the exact path: the
        rounding of the centroid, the probe and the squared norm, and of a 128-term dot
        product (Higham's bound, 128 u |c| |p|)."""
        radius, length = math.sqrt(self._max_sq), float(np.linalg.norm(probe))
        return 2.0 * _ROUNDOFF * (4.0 * self._max_sq + 264.0 * radius * length)

    def _ranked(self, slots: np.ndarray, probe: np.ndarray) -> list[tuple[str, float]]:
        """(name, float64 distance) of these people."""
        centroids = self._sums[slots] / self._counts[slots, None]
        difference = centroids - probe
        distances = np.sqrt(np.einsum("ij,ij->i", difference, difference))
        return [(self._names[slot], distance)
                for slot, distance in zip(slots.tolist(), distances.tolist())]


def _vector(encoding: np.ndarray) -> np.ndarray:
    """An encoding as 128 float64 numbers."""
    vector = np.asarray(encoding, dtype=np.float64)
    if vector.shape != (ENCODING_SIZE,):
        raise ValueError(f"an encoding is {ENCODING_SIZE} numbers")
    return vector


def _batch(added: Iterable[Face]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(face ids, names, float64 encodings) of the faces to add, the last of a repeated id."""
    latest = {int(face_id): (name, encoding) for face_id, name, encoding in added}
    encodings = np.zeros((len(latest), ENCODING_SIZE))
    for row, (_, encoding) in enumerate(latest.values()):
        encodings[row] = _vector(encoding)
    if not np.isfinite(encodings).all():
        raise ValueError("an encoding is 128 finite numbers")
    ids = np.fromiter(latest, np.int64, len(latest))
    return ids, [name for name, _ in latest.values()], encodings


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (np.unique's hashing is slower on large arrays)."""
    values = np.sort(values)
    first = np.ones(len(values), bool)
    first[1:] = values[1:] != values[:-1]
    return values[first]


def _accumulate(ufunc: np.ufunc, target: np.ndarray, index: np.ndarray, source: np.ndarray,
                rows: np.ndarray | None = None) -> None:
    """target[index[i]] = ufunc(target[index[i]], source[rows[i]]) for each i in order,
    repeated indices included (rows defaults to every row of source)."""
    for start in range(0, len(index), _CHUNK):
        chunk = slice(start, start + _CHUNK)
        part, values = index[chunk], source[chunk] if rows is None else source[rows[chunk]]
        if len(_distinct(part)) == len(part):
            target[part] = ufunc(target[part], values)
        else:
            ufunc.at(target, part, values)


def _float32_exact(values: np.ndarray) -> bool:
    """Whether every value survives a round trip through float32."""
    return all(np.array_equal(values[start:start + _CHUNK].astype(np.float32),
                              values[start:start + _CHUNK])
               for start in range(0, len(values), _CHUNK))


def _fit(array: np.ndarray, size: int, fill: float = 0) -> np.ndarray:
    """The array with at least size rows: grown by half again when short (new rows = fill)."""
    if len(array) >= size:
        return array
    grown = np.full((max(size, len(array) * 3 // 2),) + array.shape[1:], fill, array.dtype)
    grown[:len(array)] = array
    return grown


def ivf_lists(people: int) -> int:
    """How many inverted lists an index over this many people has: about sqrt(people), so
    that the lists are about as long as they are many; fewer when there are too few people to
    train that many."""
    return max(1, min(round(math.sqrt(people)), people // _TRAIN_PER_LIST))


def _ivf(vectors: np.ndarray):
    """A trained float16 IVF index holding vectors[i] as id i, with a hashtable direct map."""
    import faiss  # only large galleries pay for it

    people = len(vectors)
    lists = ivf_lists(people)
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(ENCODING_SIZE), ENCODING_SIZE,
                                          lists, faiss.ScalarQuantizer.QT_fp16)
    index.cp.niter, index.cp.min_points_per_centroid = _TRAIN_ITERATIONS, 1
    sample = np.random.default_rng(0).choice(people, min(people, lists * _TRAIN_PER_LIST),
                                             replace=False)
    index.train(vectors[np.sort(sample)])
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.add_with_ids(vectors, np.arange(people, dtype=np.int64))
    return index


@functools.lru_cache(maxsize=16)
def _probing(lists: int):
    """faiss search parameters that probe this many lists (at most the index's own)."""
    import faiss

    return faiss.SearchParametersIVF(nprobe=lists)


def _index_bytes(index) -> int:
    """Approximate bytes of an IVF index: codes, ids, the lists' centroids, the direct map."""
    if index is None:
        return 0
    entry = index.code_size + 8 + 40  # the vector, its id, a hashtable node and bucket
    return index.ntotal * entry + index.nlist * (ENCODING_SIZE * 4 + 64)
