"""What every store does, in SQL both SQLite and PostgreSQL run: the backends differ only in
how they connect, begin a transaction, notice another process's changes and reclaim deleted data.

Encodings are stored as raw little-endian float64 arrays (never pickle) and validated on load.
Writes are one transaction each, and writers queue (SQLite's ``BEGIN IMMEDIATE``, a PostgreSQL
advisory lock), so the change log below is written in commit order. Each process keeps the
gallery in memory; when another process (a worker on this or another host, the CLI) has
committed, it reads only the faces added, removed or moved since: triggers record their ids in
``face_changes``, and each process applies the changes after the last one it has seen.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import UnknownFace, UnknownPerson
from ..gallery import Gallery
from ..matching import ENCODING_SIZE

# Changes kept for processes that have fallen behind; one further behind reloads everything.
_CHANGES_KEPT = 10_000
# Ids per "IN (...)" query, and rows per fetch when reading many faces.
_ID_CHUNK = 500
_FETCH_ROWS = 20_000
_DTYPE = np.dtype("<f8")
_BLOB_SIZE = ENCODING_SIZE * _DTYPE.itemsize
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Person:
    """A person and how many faces they have."""

    name: str
    faces: int


@dataclass(frozen=True)
class FaceRecord:
    """One enrolled face: its id, where it came from and when it was added."""

    id: int
    source: str
    created_at: str


@dataclass(frozen=True)
class PersonRecord:
    """A person, when they were first enrolled, and their faces in the order they were added."""

    name: str
    created_at: str
    faces: list[FaceRecord]


@dataclass(frozen=True)
class Export:
    """Every encoding in the store with its person's name, row for row."""

    names: list[str]
    encodings: np.ndarray


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _parse_rows(rows: Sequence[tuple[int, str, bytes]]) -> tuple[list[int], list[str], np.ndarray]:
    """(ids, names, encodings) of (id, name, blob) rows, parsed at once; a corrupt encoding is
    logged (by id only) and left out."""
    good = [row for row in rows if len(row[2]) == _BLOB_SIZE]
    encodings = np.frombuffer(b"".join(bytes(row[2]) for row in good), dtype=_DTYPE)
    encodings = encodings.reshape(len(good), ENCODING_SIZE)
    finite = np.isfinite(encodings).all(axis=1)
    for face_id in {row[0] for row in rows} - {row[0] for row, ok in zip(good, finite) if ok}:
        log.error("face %d has a corrupt encoding and is left out of matching", face_id)
    kept = [row for row, ok in zip(good, finite) if ok]
    return [int(row[0]) for row in kept], [row[1] for row in kept], encodings[finite]


class Store:
    """The behaviour both backends share. A store object is safe to use from several threads;
    every process opens its own."""

    # How names are ordered: by code point in both backends, as Python sorts them.
    _NAME_ORDER = "p.name"

    def __init__(self, index_above: int | None = None) -> None:
        self._lock = threading.RLock()
        self._gallery = Gallery() if index_above is None else Gallery(index_above=index_above)
        self._seen: int | None = None  # the last face_changes.seq applied to the gallery
        self._stale = True  # this process wrote: look for changes at the next gallery()

    # -- what a backend provides ------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def _execute(self, sql: str, parameters: Sequence = ()) -> Any:
        """Run one statement written with ``?`` placeholders; returns a DB-API cursor."""
        raise NotImplementedError

    def _insert_faces(self, rows: list[tuple[int, bytes, str, str]]) -> None:
        """Insert many (person_id, encoding, source, created_at) rows into faces."""
        raise NotImplementedError

    def _begin_write(self) -> None:
        """Begin a write transaction, after every other process's write has finished."""
        raise NotImplementedError

    def _begin_snapshot(self) -> None:
        """Begin a read-only transaction that sees one consistent snapshot."""
        raise NotImplementedError

    def _rollback(self) -> None:
        """End the open transaction, if there is one, keeping none of its changes."""
        raise NotImplementedError

    def _changed_elsewhere(self) -> bool:
        """Whether another connection may have committed since the gallery was last synced."""
        raise NotImplementedError

    def _after_write(self) -> None:
        """Backend housekeeping after each committed write."""

    def _reclaim(self) -> None:
        """Make deleted rows leave the backend's files (called after every deletion)."""

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; the change log is pruned in the same transaction."""
        with self._lock:
            try:
                self._begin_write()  # inside: an interrupt may land once BEGIN has run
                yield
                self._execute("DELETE FROM face_changes WHERE seq <= (SELECT MAX(seq)"
                              " FROM face_changes) - ?", (_CHANGES_KEPT,))
                self._execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self._stale = True
            self._after_write()

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        with self._lock:
            try:
                self._begin_snapshot()
                yield
            finally:
                self._rollback()  # read-only: nothing to commit

    def _one(self, sql: str, parameters: Sequence = ()) -> tuple | None:
        return self._execute(sql, parameters).fetchone()

    # -- enrolment ---------------------------------------------------------------------------

    def add_face(self, name: str, encoding: np.ndarray, source: str) -> tuple[int, int]:
        """Add one face to a person, creating the person if needed.

        :return: (face_id, number of faces the person has now)
        """
        blob = encoding_to_blob(encoding)
        with self._write():
            return self._insert_face(name, blob, source)

    def _person_id(self, name: str, create: bool = False) -> int | None:
        if create:
            self._execute("INSERT INTO people (name, created_at) VALUES (?, ?)"
                          " ON CONFLICT (name) DO NOTHING", (name, _now()))
        row = self._one("SELECT id FROM people WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    def _insert_face(self, name: str, blob: bytes, source: str) -> tuple[int, int]:
        person_id = self._person_id(name, create=True)
        (face_id,) = self._one("INSERT INTO faces (person_id, encoding, source, created_at)"
                               " VALUES (?, ?, ?, ?) RETURNING id",
                               (person_id, blob, source, _now()))
        return int(face_id), self._face_count(person_id)

    def _face_count(self, person_id: int) -> int:
        return int(self._one("SELECT COUNT(*) FROM faces WHERE person_id = ?", (person_id,))[0])

    def _drop_if_empty(self, person_id: int) -> None:
        self._execute("DELETE FROM people WHERE id = ? AND NOT EXISTS"
                      " (SELECT 1 FROM faces WHERE person_id = ?)", (person_id, person_id))

    def record_file(self, path: str, sha256: str, person: str, outcome: str,
                    encoding: np.ndarray | None = None) -> int | None:
        """Record what build made of a file, replacing the face an older version of it gave.

        :param encoding: the file's face, added to ``person``, when the outcome is "enrolled"
        :return: the new face's id, if one was added
        """
        blob = None if encoding is None else encoding_to_blob(encoding)
        with self._write():
            old = self._one("SELECT f.id, f.person_id FROM files r JOIN faces f"
                            " ON f.id = r.face_id WHERE r.path = ?", (path,))
            if old:
                self._execute("DELETE FROM faces WHERE id = ?", (old[0],))
            face_id = None if blob is None else self._insert_face(person, blob,
                                                                  f"file:{path}")[0]
            self._execute(
                "INSERT INTO files (path, sha256, person, outcome, face_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET"
                " sha256 = excluded.sha256, person = excluded.person,"
                " outcome = excluded.outcome, face_id = excluded.face_id,"
                " updated_at = excluded.updated_at",
                (path, sha256, person, outcome, face_id, _now()),
            )
            if old:
                self._drop_if_empty(old[1])
            return face_id

    def file_is_current(self, path: str, sha256: str, retry: Iterable[str] = ()) -> bool:
        """Whether build already processed these exact bytes at this path (and kept the result).

        :param retry: outcomes that do not count as current (build tries those files again)
        """
        with self._lock:
            row = self._one("SELECT outcome, face_id IS NOT NULL FROM files"
                            " WHERE path = ? AND sha256 = ?", (path, sha256))
        if not row or row[0] in set(retry):
            return False
        return row[0] != "enrolled" or bool(row[1])

    def file_face(self, path: str) -> int | None:
        """The face that build enrolled from this path, if it still has one."""
        with self._lock:
            row = self._one("SELECT face_id FROM files WHERE path = ?", (path,))
        return None if row is None or row[0] is None else int(row[0])

    def import_encodings(self, names: Sequence[str], encodings: np.ndarray,
                         source: str) -> int:
        """Add many precomputed faces in one transaction: all of them, or none on any error.

        :param source: where they came from; face i gets the source ``f"{source}#{i}"``
        :return: how many faces were added; 0 when any face from this source is still stored
        """
        blobs = [encoding_to_blob(row) for row in encodings]
        with self._write():
            prefix = f"{source}#"
            if self._one("SELECT 1 FROM faces WHERE substr(source, 1, ?) = ? LIMIT 1",
                         (len(prefix), prefix)):
                return 0
            ids = self._people_ids(sorted(set(names)))
            now = _now()
            self._insert_faces([(ids[name], blob, f"{source}#{row}", now)
                                for row, (name, blob) in enumerate(zip(names, blobs))])
        return len(blobs)

    def _people_ids(self, names: list[str]) -> dict[str, int]:
        """Ids of these people, created if new."""
        ids: dict[str, int] = {}
        now = _now()
        for start in range(0, len(names), _ID_CHUNK):
            chunk = names[start:start + _ID_CHUNK]
            values = ", ".join("(?, ?)" for _ in chunk)
            self._execute(f"INSERT INTO people (name, created_at) VALUES {values}"
                          " ON CONFLICT (name) DO NOTHING",
                          [value for name in chunk for value in (name, now)])
            marks = ", ".join("?" for _ in chunk)
            rows = self._execute(f"SELECT name, id FROM people WHERE name IN ({marks})", chunk)
            ids.update((name, int(person_id)) for name, person_id in rows.fetchall())
        return ids

    # -- people ------------------------------------------------------------------------------

    def people(self, offset: int = 0, limit: int = 1000) -> list[Person]:
        """People with their face counts, in name order, from offset, at most limit of them."""
        with self._lock:
            rows = self._execute(
                "SELECT p.name, COUNT(f.id) FROM people p JOIN faces f ON f.person_id = p.id"
                f" GROUP BY p.id, p.name ORDER BY {self._NAME_ORDER} LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [Person(name, int(faces)) for name, faces in rows]

    def person(self, name: str) -> PersonRecord:
        """A person and their faces.

        :raises UnknownPerson: nobody of that name is enrolled
        """
        with self._snapshot():
            row = self._one("SELECT id, created_at FROM people WHERE name = ?", (name,))
            faces = [] if row is None else self._execute(
                "SELECT id, source, created_at FROM faces WHERE person_id = ? ORDER BY id",
                (row[0],)).fetchall()
        if not faces:
            raise UnknownPerson(name)
        return PersonRecord(name, row[1], [FaceRecord(int(i), s, c) for i, s, c in faces])

    def forget(self, name: str) -> int:
        """Delete a person, every face of theirs and build's records of their files.

        :return: how many faces were deleted
        :raises UnknownPerson: nobody of that name is enrolled
        """
        with self._write():
            person_id = self._person_id(name)
            if person_id is None:
                raise UnknownPerson(name)
            count = self._face_count(person_id)
            self._execute("DELETE FROM files WHERE person = ?", (name,))
            self._execute("DELETE FROM faces WHERE person_id = ?", (person_id,))
            self._execute("DELETE FROM people WHERE id = ?", (person_id,))
        self._reclaim()
        return count

    def delete_face(self, name: str, face_id: int) -> int:
        """Delete one of a person's faces; the person goes with their last face. A file that
        build enrolled the face from is not enrolled again until its bytes change.

        :return: how many faces the person has left
        :raises UnknownPerson: nobody of that name is enrolled
        :raises UnknownFace: the person has no face with that id
        """
        with self._write():
            person_id = self._person_id(name)
            if person_id is None:
                raise UnknownPerson(name)
            if not self._one("SELECT 1 FROM faces WHERE id = ? AND person_id = ?",
                             (face_id, person_id)):
                raise UnknownFace()
            self._execute("UPDATE files SET outcome = 'deleted', face_id = NULL"
                          " WHERE face_id = ?", (face_id,))
            self._execute("DELETE FROM faces WHERE id = ?", (face_id,))
            left = self._face_count(person_id)
            self._drop_if_empty(person_id)
        self._reclaim()
        return left

    def rename(self, name: str, new_name: str) -> tuple[int, bool]:
        """Give a person's faces to new_name: a new person, or one already enrolled (a merge).

        :return: (faces new_name has now, whether they were merged into an existing person)
        :raises UnknownPerson: nobody called name is enrolled
        """
        with self._write():
            source = self._person_id(name)
            if source is None:
                raise UnknownPerson(name)
            if new_name == name:
                return self._face_count(source), False
            merged = self._person_id(new_name) is not None
            target = self._person_id(new_name, create=True)
            self._execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (target, source))
            self._execute("UPDATE files SET person = ? WHERE person = ?", (new_name, name))
            self._execute("DELETE FROM people WHERE id = ?", (source,))
            return self._face_count(target), merged

    def counts(self) -> tuple[int, int]:
        """(people, faces) the service recognises: the gallery's, so it costs no query."""
        gallery = self.gallery()
        return len(gallery), gallery.faces

    # -- reading faces -----------------------------------------------------------------------

    def export(self) -> Export:
        """Every stored encoding and its person's name, by name then in the order added."""
        names: list[str] = []
        chunks = [np.zeros((0, ENCODING_SIZE))]
        with self._snapshot():
            cursor = self._execute("SELECT f.id, p.name, f.encoding FROM faces f JOIN people p"
                                   f" ON p.id = f.person_id ORDER BY {self._NAME_ORDER}, f.id")
            while rows := cursor.fetchmany(_FETCH_ROWS):
                _, chunk_names, encodings = _parse_rows(rows)
                names += chunk_names
                chunks.append(encodings)
        return Export(names, np.concatenate(chunks))

    def encodings(self) -> dict[str, list[np.ndarray]]:
        """Every stored encoding, by person."""
        by_person: dict[str, list[np.ndarray]] = {}
        export = self.export()
        for name, encoding in zip(export.names, export.encodings):
            by_person.setdefault(name, []).append(encoding)
        return by_person

    def gallery(self) -> Gallery:
        """The in-memory gallery, brought up to date: after a change elsewhere, only the faces
        added, removed or moved since are read (from ``face_changes``), not the whole table."""
        with self._lock:
            elsewhere = self._changed_elsewhere()  # asked first: SQLite notes the version
            if self._stale or elsewhere:
                with self._snapshot():  # one snapshot for the changes and the rows they name
                    self._sync()
                self._stale = False
            return self._gallery

    def _sync(self) -> None:
        first, last = self._one("SELECT MIN(seq), MAX(seq) FROM face_changes")
        if self._seen is None or (first is not None and first > self._seen + 1):
            self._gallery.clear()
            self._gallery.apply((), self._read_faces("", ()))
            self._seen = last or 0
            return
        changes = self._execute("SELECT face_id, added FROM face_changes WHERE seq > ?"
                                " ORDER BY seq", (self._seen,)).fetchall()
        latest = dict(changes)  # each face's last change
        added = [face_id for face_id, was_added in latest.items() if was_added]
        rows: list[tuple[int, str, np.ndarray]] = []
        for start in range(0, len(added), _ID_CHUNK):
            chunk = added[start:start + _ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += self._read_faces(f" WHERE f.id IN ({marks})", chunk)
        self._gallery.apply(latest, rows)
        self._seen = last if last is not None else self._seen

    def _read_faces(self, where: str, parameters: Sequence) -> list[tuple[int, str, np.ndarray]]:
        """(face id, name, encoding) of the faces the clause selects."""
        cursor = self._execute("SELECT f.id, p.name, f.encoding FROM faces f"
                               " JOIN people p ON p.id = f.person_id" + where, parameters)
        faces: list[tuple[int, str, np.ndarray]] = []
        while rows := cursor.fetchmany(_FETCH_ROWS):
            faces += zip(*_parse_rows(rows))
        return faces
