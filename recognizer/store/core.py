"""The store's core, shared by both backends: statements, transactions and the change log.

Writes are one transaction each, and writers queue (SQLite's ``BEGIN IMMEDIATE``, a PostgreSQL
advisory lock), so the change log is written in commit order: triggers record the id of every
face added, removed or moved to another person in ``face_changes``. A reader that keeps faces in
memory (``recognizer.live_gallery``) asks for the log's last sequence number at each request,
and reads only the faces changed since the last one it applied.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from .records import Changes, FaceRow, parse_rows

# Changes kept for readers that have fallen behind; one further behind reloads everything.
CHANGES_KEPT = 10_000
# Columns added since the first schema, added to older stores when they are opened, and the
# indexes on them: (table, column, type, index).
ADDED_COLUMNS = (
    ("faces", "image_sha256", "TEXT", "faces_by_image ON faces(person_id, image_sha256)"),
    ("files", "root", "TEXT", "files_by_root ON files(root)"),
    ("people", "skeleton", "TEXT", "people_by_skeleton ON people(skeleton)"),
)
# Ids per "IN (...)" query, and rows per fetch when reading many faces.
ID_CHUNK = 500
FETCH_ROWS = 20_000


class StoreCore:
    """Statements, transactions and the change log, over a backend's connection."""

    # The database's clock, in seconds since the epoch (a backend sets its own)
    _CLOCK = "0"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Seams for tracing and tests: called with each SQL statement before and after it runs.
        self.before_statement: Callable[[str], None] | None = None
        self.after_statement: Callable[[str], None] | None = None

    # -- what a backend provides ------------------------------------------------------------

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def _run(self, sql: str, parameters: Sequence = ()) -> Any:
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

    def _has_column(self, table: str, column: str) -> bool:
        """Whether a table has a column (stores made by older versions may lack one)."""
        raise NotImplementedError

    def _after_write(self) -> None:
        """Backend housekeeping after each committed write."""

    def _reclaim(self, faces: bool = True) -> None:
        """Make deleted rows leave the backend's files (called after every deletion, and after
        a rename: the old name must go too).

        :param faces: whether faces were deleted (a rename only moves them)
        """

    def _add_columns(self) -> None:
        """Bring an older store's tables up to date (ADDED_COLUMNS), in one transaction."""
        with self._write():
            for table, column, kind, index in ADDED_COLUMNS:
                if not self._has_column(table, column):
                    self._execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                self._execute(f"CREATE INDEX IF NOT EXISTS {index}")

    # -- statements and transactions ---------------------------------------------------------

    def _execute(self, sql: str, parameters: Sequence = ()) -> Any:
        if self.before_statement is not None:
            self.before_statement(sql)
        cursor = self._run(sql, parameters)
        if self.after_statement is not None:
            self.after_statement(sql)
        return cursor

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; the change log is pruned in the same transaction."""
        with self._lock:
            try:
                self._begin_write()  # inside: an interrupt may land once BEGIN has run
                yield
                self._execute("DELETE FROM face_changes WHERE seq <= (SELECT MAX(seq)"
                              " FROM face_changes) - ?", (CHANGES_KEPT,))
                self._execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
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

    def counts(self) -> tuple[int, int]:
        """(people, faces) in the store, counted in one snapshot."""
        with self._snapshot():
            people = self._one("SELECT COUNT(*) FROM people p WHERE EXISTS"
                               " (SELECT 1 FROM faces f WHERE f.person_id = p.id)")[0]
            faces = self._one("SELECT COUNT(*) FROM faces")[0]
        return int(people), int(faces)

    def query(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        """Run a read-only statement in a snapshot of its own and return its rows: for
        diagnostics and tests (a write in it is rolled back)."""
        with self._snapshot():
            return [tuple(row) for row in self._execute(sql, parameters).fetchall()]

    def latest_change(self) -> int:
        """The change log's last sequence number (0 when it is empty): one indexed read, made
        at every request to see whether any process has changed the faces."""
        with self._lock:
            (last,) = self._one("SELECT MAX(seq) FROM face_changes")
        return int(last or 0)

    def changes_after(self, seen: int | None) -> Changes:
        """The faces added, removed or moved since change ``seen``, read in one snapshot; every
        face (a reset) when ``seen`` is None or older than the changes kept."""
        with self._snapshot():
            first, last = self._one("SELECT MIN(seq), MAX(seq) FROM face_changes")
            if seen is None or (first is not None and first > seen + 1):
                return Changes(int(last or 0), True, rows=self._read_faces("", ()))
            changes = self._execute("SELECT face_id, added FROM face_changes WHERE seq > ?"
                                    " ORDER BY seq", (seen,)).fetchall()
            latest = {int(face_id): bool(added) for face_id, added in changes}  # the last of each
            present = [face_id for face_id, added in latest.items() if added]
            rows: list[FaceRow] = []
            for start in range(0, len(present), ID_CHUNK):
                chunk = present[start:start + ID_CHUNK]
                rows += self._read_faces(f" WHERE f.id IN ({','.join('?' * len(chunk))})", chunk)
        return Changes(int(last if last is not None else seen), False, latest, rows)

    def _read_faces(self, where: str, parameters: Sequence) -> list[FaceRow]:
        """(face id, name, encoding) of the faces the clause selects."""
        cursor = self._execute("SELECT f.id, p.name, f.encoding FROM faces f"
                               " JOIN people p ON p.id = f.person_id" + where, parameters)
        faces: list[FaceRow] = []
        while rows := cursor.fetchmany(FETCH_ROWS):
            faces += zip(*parse_rows(rows))
        return faces
