"""The encodings store: people, their faces and where each face came from.

Two backends share one behaviour (``base.Store``): SQLite, a file beside the service (the
default), and PostgreSQL, for workers on several hosts (``FACEREC_STORE=postgresql://...``).
"""

from __future__ import annotations

import os

from .base import Store
from .records import (
    Changes,
    Export,
    FaceRecord,
    FaceRow,
    Person,
    PersonRecord,
    blob_to_encoding,
    encoding_to_blob,
)


def open_store(location: str | os.PathLike) -> Store:
    """Open the store at a location: a ``postgresql://`` (or ``postgres://``) URL, or else the
    path of a SQLite file (created if missing)."""
    location = os.fspath(location)
    if location.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(location)
    from .sqlite import SqliteStore

    return SqliteStore(location)


__all__ = ["Changes", "Export", "FaceRecord", "FaceRow", "Person", "PersonRecord", "Store",
           "blob_to_encoding", "encoding_to_blob", "open_store"]
