"""The enrolled people, searchable by nearest centroid, changed one face at a time. Pure numpy;
faiss is imported only when a gallery grows large enough to need it.

A person is the centroid (mean) of their faces' encodings. The gallery keeps every face's
encoding and each person's running sum and face count, so adding, removing or moving a face
changes one person, never a rebuild; :meth:`Gallery.apply` makes a whole batch of changes with
vectorised numpy. One lock guards everything: video threads search while changes are applied.

Searches return the k nearest people with float64 distances to their float64 centroids, by one
of two paths: **exact** up to ``index_above`` people (a float32 scan of every centroid, whose
candidates are re-ranked in float64, so the answers are a float64 brute force's), and
**faiss** above it (an IVF index, see ``ivf``; approximate, recall@1 of 0.99 or more at a
million people). Encodings are kept as float32 while every one of them is exactly a float32
number (dlib's always are), as float64 once one is not: nothing is ever rounded.
docs/benchmarks.md has the figures (``scripts/bench_gallery.py``).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Iterable

import numpy as np

from . import ivf
from .arrays import (
    CHUNK,
    Pool,
    accumulate,
    as_vector,
    batch,
    distinct,
    fit,
    float32_exact,
)
from .exact import ExactScan
from .limits import ENCODING_SIZE

# Up to this many people the search is exact, a float32 scan of every centroid: about 2 ms at
# 50,000 people (40 ns a person), and every answer is the brute force's. Above it the index
# answers in about 1 ms at 100,000 people and 2 ms at a million, but only approximately
# (scripts/bench_gallery.py); below it, it would save at most a millisecond or two a face.
INDEX_ABOVE = 50_000
# The index is retrained when the number of people leaves [trained / 4, trained * 4].
IVF_REGROW = 4
log = logging.getLogger(__name__)


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
        self._row_pool = Pool()
        self._encodings = np.zeros((0, ENCODING_SIZE), np.float32)  # float64 once one needs it
        self._owner = np.zeros(0, np.int64)  # row -> person slot; -1 for a free row
        self._slots: dict[str, int] = {}  # name -> slot of _names, _sums, _counts, _exact
        self._slot_pool = Pool()
        self._names: list[str | None] = []
        self._sums = np.zeros((0, ENCODING_SIZE))
        self._counts = np.zeros(0, np.int64)
        self._exact: ExactScan | None = ExactScan()  # the exact path
        self._index = None  # the faiss path: an IVF index over slots, when _exact is None
        self._trained_for = 0  # people when the index was trained
        self._neighbours: dict[int, float] = {}  # slot -> neighbour_distance, until a change

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def names(self) -> tuple[str, ...]:
        """Everyone enrolled, in name order."""
        with self._lock:
            return tuple(sorted(self._slots))

    @property
    def face_count(self) -> int:
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
            arrays = (self._encodings, self._owner, self._sums, self._counts)
            held = sum(array.nbytes for array in arrays) + (self._exact.nbytes if self._exact
                                                            else 0)
            tables = sum(sys.getsizeof(table) for table in (self._rows, self._slots, self._names))
            return held + tables + ivf.nbytes(self._index)

    def add(self, face_id: int, name: str, encoding: np.ndarray) -> None:
        """Add a face to a person, creating the person if needed. A face id already present is
        replaced, and may move to another person.

        :raises ValueError: the encoding is not 128 finite numbers
        """
        self.apply((), [(face_id, name, encoding)])

    def remove(self, face_id: int) -> None:
        """Remove a face; a person with no faces left is removed too. An absent face is ignored."""
        self.apply([face_id], ())

    def apply(self, removed: Iterable[int],
              added: Iterable[tuple[int, str, np.ndarray]]) -> None:
        """Remove faces, then add (or replace) faces, as one change under one lock.

        :param removed: face ids; absent ones are ignored
        :param added: (face_id, name, encoding) triples; the last of a repeated id counts
        :raises ValueError: an encoding is not 128 finite numbers (nothing is changed)
        """
        ids, names, encodings = batch(added)
        with self._lock:
            self._neighbours.clear()  # any change can move anybody's nearest neighbour
            dropped = self._drop(set(map(int, removed)) | set(ids.tolist()))
            inserted = self._insert(ids, names, encodings)
            self._refresh(distinct(np.concatenate([dropped, inserted])))

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
        probe = as_vector(encoding)
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
        probe = as_vector(encoding)
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return None
            skip, adjusted = self._without(without, probe)
            if skip == slot:
                return None if adjusted is None else adjusted[1]
            return float(np.linalg.norm(self._sums[slot] / self._counts[slot] - probe))

    def nearest_face(self, name: str, encoding: np.ndarray) -> int | None:
        """The id of one person's face nearest to an encoding (None: nobody of that name)."""
        probe = as_vector(encoding)
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return None
            rows = np.flatnonzero(self._owner == slot)
            best = rows[int(np.argmin(np.linalg.norm(self._encodings[rows] - probe, axis=1)))]
            return next(face_id for face_id, row in self._rows.items() if row == best)

    def people_count(self, without: int | None = None) -> int:
        """How many people are enrolled, leaving a face out as in :meth:`nearest` (its person
        goes with it if it is their only face)."""
        with self._lock:
            row = None if without is None else self._rows.get(without)
            alone = row is not None and self._counts[self._owner[row]] == 1
            return len(self._slots) - alone

    def faces_of(self, name: str, without: int | None = None) -> int:
        """How many faces a person's centroid is made from (0: nobody of that name).

        :param without: a face id to leave out, as in :meth:`nearest`
        """
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return 0
            row = None if without is None else self._rows.get(without)
            return int(self._counts[slot]) - (row is not None and self._owner[row] == slot)

    def neighbour_distance(self, name: str, without: int | None = None) -> float | None:
        """Distance from one person's centroid to the nearest other person's: how crowded the
        gallery is around them. Kept until the gallery next changes.

        :param without: a face id to leave out, as in :meth:`nearest`
        :return: None when nobody of that name is enrolled (or only with that face), or
            nobody else is
        """
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                return None
            if without is None and slot in self._neighbours:
                return self._neighbours[slot]
            centroid = self._centroid(slot, without)
            if centroid is None:
                return None
            skip, adjusted = self._without(without, centroid)
            slots = self._candidates(centroid, 2 + (skip >= 0))
            found = self._ranked(slots[(slots != slot) & (slots != skip)], centroid)
            found += [adjusted] if adjusted and skip != slot else []
            distance = min((d for _, d in found), default=None)
            if without is None and distance is not None:
                self._neighbours[slot] = distance
            return distance

    # Changes. Each of these runs under the lock.

    def _drop(self, face_ids: set[int]) -> np.ndarray:
        """Take faces out of their people's sums; return the people touched."""
        popped = (self._rows.pop(face_id, None) for face_id in face_ids)
        rows = np.fromiter((row for row in popped if row is not None), np.int64)
        slots = self._owner[rows]
        accumulate(np.subtract, self._sums, slots, self._encodings, rows)
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
        accumulate(np.add, self._sums, slots, encodings)
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
        self._sums, self._counts = fit(self._sums, size), fit(self._counts, size)

    def _store_encodings(self, rows: np.ndarray, encodings: np.ndarray) -> None:
        """Keep faces' encodings, as float32 while that loses nothing."""
        if self._encodings.dtype == np.float32 and not float32_exact(encodings):
            self._encodings = self._encodings.astype(np.float64)
        self._encodings = fit(self._encodings, self._row_pool.used)
        self._owner = fit(self._owner, self._row_pool.used, -1)
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
        self._exact.set(slots, self._vectors(slots), freed, self._slot_pool.used)

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
        self._slot_pool = Pool(len(live))

    def _build_matrix(self) -> None:
        """Search exactly from now on."""
        self._compact()
        self._index, self._trained_for = None, 0
        self._exact = ExactScan(len(self._slots))
        self._set_rows(np.arange(len(self._slots)), np.zeros(0, np.int64))
        log.info("gallery: exact search over %d people", len(self._slots))

    def _build_index(self) -> None:
        """Search with a newly trained faiss index from now on; if none can be built (faiss
        missing, memory short), search exactly for good rather than retry at every change."""
        started = time.perf_counter()
        self._compact()
        self._index = self._exact = None  # free the matrix before building
        try:
            index = ivf.build(self._vectors(np.arange(len(self._slots))))
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
        for start in range(0, len(slots), CHUNK):
            part = slots[start:start + CHUNK]
            np.divide(self._sums[part], self._counts[part, None], casting="same_kind",
                      out=vectors[start:start + CHUNK])
        return vectors

    # Searches. Each of these runs under the lock.

    def _centroid(self, slot: int, without: int | None) -> np.ndarray | None:
        """A person's centroid, without one of their faces if asked (None if it is the last)."""
        row = None if without is None else self._rows.get(without)
        if row is None or self._owner[row] != slot:
            return self._sums[slot] / self._counts[slot]
        count = int(self._counts[slot]) - 1
        return (self._sums[slot] - self._encodings[row]) / count if count else None

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
            _, found = self._index.search(query, k + ivf.MARGIN, params=ivf.probing(ivf.PROBES))
            return found[0][found[0] >= 0]
        used = self._slot_pool.used
        if k >= len(self._slots):
            return np.flatnonzero(self._counts[:used] > 0)
        return self._exact.candidates(probe, k, used)

    def _ranked(self, slots: np.ndarray, probe: np.ndarray) -> list[tuple[str, float]]:
        """(name, float64 distance) of these people."""
        centroids = self._sums[slots] / self._counts[slots, None]
        difference = centroids - probe
        distances = np.sqrt(np.einsum("ij,ij->i", difference, difference))
        return [(self._names[slot], distance)
                for slot, distance in zip(slots.tolist(), distances.tolist())]
