"""The encodings store: people, their faces and where each face came from, in SQLite.

Encodings are stored as raw little-endian float64 arrays (never pickle) and validated on load.
The database runs in WAL mode, so a server's readers never block the CLI's writes; every write
is one ``BEGIN IMMEDIATE`` transaction, so concurrent writers queue instead of failing. Each
process keeps the gallery in memory; when ``PRAGMA data_version`` says another connection
(another worker, the CLI) has committed, it reads only the faces added or removed since, which
triggers record in ``face_changes``. Deleting a person overwrites their rows
(``secure_delete``) and checkpoints the WAL, so their encodings leave the files on disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import UnknownPerson
from .matching import ENCODING_SIZE, Gallery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    encoding BLOB NOT NULL CHECK (length(encoding) = 1024),
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_person ON faces(person_id);
-- what `build` has already processed: a second run skips files whose bytes have not changed
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    person TEXT NOT NULL,
    outcome TEXT NOT NULL,
    face_id INTEGER REFERENCES faces(id) ON DELETE SET NULL,
    updated_at TEXT NOT NULL
);
-- every face added or removed, in order: each process applies only the changes it has not seen
CREATE TABLE IF NOT EXISTS face_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    face_id INTEGER NOT NULL,
    added INTEGER NOT NULL
);
"""
_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS face_added AFTER INSERT ON faces BEGIN"
    " INSERT INTO face_changes (face_id, added) VALUES (NEW.id, 1); END",
    "CREATE TRIGGER IF NOT EXISTS face_removed AFTER DELETE ON faces BEGIN"
    " INSERT INTO face_changes (face_id, added) VALUES (OLD.id, 0); END",
)
# Changes kept for processes that have fallen behind; one further behind reloads everything.
_CHANGES_KEPT = 10_000
# Encodings fetched per query when applying changes.
_FETCH_CHUNK = 500
_DTYPE = np.dtype("<f8")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Person:
    """A person and how many faces they have."""

    name: str
    faces: int


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


class Store:
    """A SQLite store shared by every process that opens the same file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # biometric data: readable by the owner only
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._lock = threading.RLock()
        self._checkpoint_pending = False
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "secure_delete=ON", "busy_timeout=30000"):
            self._db.execute(f"PRAGMA {pragma}")
        with self._write() as db:  # executescript() would commit on its own; keep it one txn
            for statement in _statements():
                db.execute(statement)
        self._gallery: Gallery | None = None
        self._version: int | None = None
        self._seen: int | None = None  # the last face_changes.seq applied to the gallery
        self._faces: dict[int, tuple[str, np.ndarray]] = {}
        self._checkpoint()  # a deletion may have been cut off before its checkpoint: finish it

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so that writers queue."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("DELETE FROM face_changes WHERE seq <= (SELECT MAX(seq)"
                                 " FROM face_changes) - ?", (_CHANGES_KEPT,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                self._version = None  # look for changes at the next gallery()
            if self._checkpoint_pending:
                self._checkpoint()

    def add_face(self, name: str, encoding: np.ndarray, source: str) -> tuple[int, int]:
        """Add one face to a person, creating the person if needed.

        :return: (face_id, number of faces the person has now)
        """
        blob = encoding_to_blob(encoding)
        with self._write() as db:
            return self._insert_face(db, name, blob, source)

    def _insert_face(self, db: sqlite3.Connection, name: str, blob: bytes,
                     source: str) -> tuple[int, int]:
        db.execute("INSERT OR IGNORE INTO people (name, created_at) VALUES (?, ?)", (name, _now()))
        (person_id,) = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        cursor = db.execute(
            "INSERT INTO faces (person_id, encoding, source, created_at) VALUES (?, ?, ?, ?)",
            (person_id, blob, source, _now()),
        )
        (count,) = db.execute("SELECT COUNT(*) FROM faces WHERE person_id = ?",
                              (person_id,)).fetchone()
        return int(cursor.lastrowid), int(count)

    def record_file(self, path: str, sha256: str, person: str, outcome: str,
                    encoding: np.ndarray | None = None) -> int | None:
        """Record what build made of a file, replacing the face an older version of it gave.

        :param encoding: the file's face, added to ``person``, when the outcome is "enrolled"
        :return: the new face's id, if one was added
        """
        blob = None if encoding is None else encoding_to_blob(encoding)
        with self._write() as db:
            old = db.execute("SELECT face_id FROM files WHERE path = ?", (path,)).fetchone()
            if old and old[0] is not None:
                db.execute("DELETE FROM faces WHERE id = ?", (old[0],))
            face_id = None
            if blob is not None:
                face_id, _ = self._insert_face(db, person, blob, f"file:{path}")
            db.execute(
                "INSERT OR REPLACE INTO files (path, sha256, person, outcome, face_id, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)", (path, sha256, person, outcome, face_id, _now()),
            )
            self._drop_empty_people(db)
            return face_id

    def file_is_current(self, path: str, sha256: str, retry: Iterable[str] = ()) -> bool:
        """Whether build already processed these exact bytes at this path (and kept the result).

        :param retry: outcomes that do not count as current (build tries those files again)
        """
        with self._lock:
            row = self._db.execute(
                "SELECT f.outcome, f.face_id IS NOT NULL FROM files f"
                " WHERE f.path = ? AND f.sha256 = ?", (path, sha256),
            ).fetchone()
        if not row or row[0] in retry:
            return False
        return row[0] != "enrolled" or bool(row[1])

    def forget(self, name: str) -> int:
        """Delete a person, every face of theirs and build's records of their files.

        :return: how many faces were deleted
        :raises UnknownPerson: nobody of that name is enrolled
        """
        with self._write() as db:
            row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UnknownPerson(name)
            (count,) = db.execute("SELECT COUNT(*) FROM faces WHERE person_id = ?",
                                  row).fetchone()
            db.execute("DELETE FROM files WHERE person = ?", (name,))
            db.execute("DELETE FROM faces WHERE person_id = ?", row)
            db.execute("DELETE FROM people WHERE id = ?", row)
        self._checkpoint()
        return int(count)

    def _checkpoint(self) -> None:
        """Copy the WAL into the main file and empty it, so that rows overwritten by a deletion
        leave both files. A reader holding an old snapshot can make it give up; then it is
        tried again after every write until it succeeds."""
        with self._lock:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self._checkpoint_pending = bool(busy)
        if busy:
            log.warning("a reader held the store open: deleted data leaves the WAL later")

    def _drop_empty_people(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM people WHERE id NOT IN (SELECT person_id FROM faces)")

    def people(self) -> list[Person]:
        """Everyone enrolled, by name, with their face counts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.name, COUNT(f.id) FROM people p JOIN faces f ON f.person_id = p.id"
                " GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [Person(name, int(faces)) for name, faces in rows]

    def counts(self) -> tuple[int, int]:
        """(people, faces) in the store."""
        with self._lock:
            (faces, people) = self._db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT person_id) FROM faces").fetchone()
        return int(people), int(faces)

    def gallery(self) -> Gallery:
        """The in-memory gallery. When some connection has changed the store, only the faces
        added or removed since are read (from ``face_changes``), not the whole table."""
        with self._lock:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
            if self._gallery is None or version != self._version:
                self._db.execute("BEGIN")  # one snapshot for the changes and the rows they name
                try:
                    self._apply_changes()
                finally:
                    self._db.execute("COMMIT")
                self._gallery, self._version = self._rebuild(), version
            return self._gallery

    def _apply_changes(self) -> None:
        (first, last) = self._db.execute("SELECT MIN(seq), MAX(seq) FROM face_changes").fetchone()
        if self._seen is None or (first is not None and first > self._seen + 1):
            self._faces = self._read_faces("", ())
            self._seen = last or 0
            return
        changes = self._db.execute("SELECT face_id, added FROM face_changes WHERE seq > ?"
                                   " ORDER BY seq", (self._seen,)).fetchall()
        latest = dict(changes)  # each face's last change
        for face_id in latest:
            self._faces.pop(face_id, None)
        added = [face_id for face_id, was_added in latest.items() if was_added]
        for start in range(0, len(added), _FETCH_CHUNK):
            chunk = added[start:start + _FETCH_CHUNK]
            marks = ",".join("?" * len(chunk))
            self._faces.update(self._read_faces(f" WHERE f.id IN ({marks})", chunk))
        self._seen = last or self._seen

    def _read_faces(self, where: str, parameters: tuple | list) -> dict:
        faces = {}
        rows = self._db.execute("SELECT f.id, p.name, f.encoding FROM faces f"
                                " JOIN people p ON p.id = f.person_id" + where, parameters)
        for face_id, name, blob in rows:
            try:
                faces[face_id] = (name, blob_to_encoding(blob))
            except ValueError:
                log.error("face %d has a corrupt encoding and is left out of matching", face_id)
        return faces

    def _rebuild(self, without: int | None = None) -> Gallery:
        return Gallery.from_encodings(self._by_person(without))

    def _by_person(self, without: int | None = None) -> dict[str, list[np.ndarray]]:
        by_person: dict[str, list[np.ndarray]] = {}
        for face_id, (name, encoding) in self._faces.items():
            if face_id != without:
                by_person.setdefault(name, []).append(encoding)
        return by_person

    def encodings(self) -> dict[str, list[np.ndarray]]:
        """Every enrolled encoding, by person."""
        with self._lock:
            self.gallery()
            return self._by_person()

    def gallery_without(self, face_id: int) -> Gallery:
        """The gallery as it would be without one face (not cached: for checking a replacement)."""
        with self._lock:
            self.gallery()
            return self._rebuild(without=face_id)

    def file_face(self, path: str) -> int | None:
        """The face that build enrolled from this path, if it still has one."""
        with self._lock:
            row = self._db.execute("SELECT face_id FROM files WHERE path = ?", (path,)).fetchone()
        return None if row is None else row[0]

def _statements() -> list[str]:
    return [statement for statement in _SCHEMA.split(";") if statement.strip()] + list(_TRIGGERS)
