"""The SQLite store: one file beside the service, shared by every process on this host.

The database runs in WAL mode, so a server's readers never block the CLI's writes; every write
is one ``BEGIN IMMEDIATE`` transaction, so concurrent writers queue instead of failing.
Deleting or renaming overwrites the old rows (``secure_delete``) and checkpoints the WAL, so
deleted encodings, and old names, paths and hashes, leave the files on disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Sequence

from ..config import ConfigError
from .base import Store
from .streams import schema

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS people (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS faces (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        encoding BLOB NOT NULL CHECK (length(encoding) = 1024),
        source TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS faces_by_person ON faces(person_id)",
    "CREATE INDEX IF NOT EXISTS faces_by_source ON faces(source)",
    # what `build` has already processed: a second run skips files whose bytes have not changed
    """CREATE TABLE IF NOT EXISTS files (
        path TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        person TEXT NOT NULL,
        outcome TEXT NOT NULL,
        face_id INTEGER REFERENCES faces(id) ON DELETE SET NULL,
        updated_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS files_by_face ON files(face_id)",
    "CREATE INDEX IF NOT EXISTS files_by_person ON files(person)",
    # every face added, removed or moved to another person, in commit order
    """CREATE TABLE IF NOT EXISTS face_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        face_id INTEGER NOT NULL,
        added INTEGER NOT NULL)""",
    "CREATE TRIGGER IF NOT EXISTS face_added AFTER INSERT ON faces BEGIN"
    " INSERT INTO face_changes (face_id, added) VALUES (NEW.id, 1); END",
    "CREATE TRIGGER IF NOT EXISTS face_removed AFTER DELETE ON faces BEGIN"
    " INSERT INTO face_changes (face_id, added) VALUES (OLD.id, 0); END",
    "CREATE TRIGGER IF NOT EXISTS face_moved AFTER UPDATE OF person_id ON faces BEGIN"
    " INSERT INTO face_changes (face_id, added) VALUES (NEW.id, 1); END",
    *schema("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "REAL", "INTEGER"),
)
log = logging.getLogger(__name__)


class SqliteStore(Store):
    """A SQLite store shared by every process that opens the same file."""

    _CLOCK = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        """
        :param busy_timeout: seconds to wait for another connection's write (or, before a
            checkpoint, for its readers)
        """
        super().__init__()
        self.path = Path(path)
        if not self.path.parent.is_dir():  # a typo in FACEREC_STORE should not go unnoticed
            raise ConfigError(f"FACEREC_STORE: the folder {self.path.parent} does not exist")
        if not self.path.exists():  # biometric data: readable by the owner only
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        self._checkpoint_pending = False
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "secure_delete=ON", f"busy_timeout={round(busy_timeout * 1000)}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._create_schema()
        if self._never_reuse_face_ids():
            self._create_schema()  # the rebuilt faces table's index and triggers
        self._add_columns()
        self._reclaim()  # a deletion may have been cut off before its checkpoint: finish it

    def _create_schema(self) -> None:
        with self._write():  # executescript() would commit on its own; keep it one transaction
            for statement in _SCHEMA:
                self._execute(statement)

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self._execute(f"PRAGMA table_info({table})"))

    def _never_reuse_face_ids(self) -> bool:
        """Stores made before face ids were exposed let SQLite hand a deleted face's id to the
        next one; rebuild their faces table with AUTOINCREMENT, keeping every id.

        :return: whether the table was rebuilt
        """
        row = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'faces'").fetchone()
        if "AUTOINCREMENT" in row[0]:
            return False
        self._db.execute("PRAGMA foreign_keys = OFF")  # files keep their face ids throughout
        try:
            with self._write():  # SQLite's documented way to change a table's definition
                self._execute(_SCHEMA[1].replace("EXISTS faces (", "EXISTS faces_new ("))
                self._execute("INSERT INTO faces_new SELECT * FROM faces")
                self._execute("DROP TABLE faces")  # its index and triggers are made again below
                self._execute("ALTER TABLE faces_new RENAME TO faces")
        finally:
            self._db.execute("PRAGMA foreign_keys = ON")
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, parameters: Sequence = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, parameters)

    def _insert_faces(self, rows: list[tuple[int, bytes, str, str]]) -> None:
        self._db.executemany("INSERT INTO faces (person_id, encoding, source, created_at)"
                             " VALUES (?, ?, ?, ?)", rows)

    def _begin_write(self) -> None:
        self._execute("BEGIN IMMEDIATE")

    def _begin_snapshot(self) -> None:
        self._execute("BEGIN")

    def _rollback(self) -> None:
        # Not when nothing is open: a Ctrl-C can land just after COMMIT returned
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _after_write(self) -> None:
        if self._checkpoint_pending:
            self._reclaim()

    def _reclaim_events(self) -> None:
        self._reclaim()

    def _reclaim(self, faces: bool = True) -> None:
        """Copy the WAL into the main file and empty it, so that rows overwritten by a deletion
        leave both files. A reader holding an old snapshot can make it give up; then it is
        tried again after every write until it succeeds."""
        with self._lock:
            busy, _, _ = self._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self._checkpoint_pending = bool(busy)
        if busy:
            log.warning("a reader held the store open: deleted data leaves the WAL later")
