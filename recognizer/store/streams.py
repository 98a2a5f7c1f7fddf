"""What the store keeps for live video, in SQL both backends run: stream definitions and the
leases that give each one to exactly one runner, the events the runners see, and who is present
where (webhooks are in ``webhooks``).

Leases are timed by the database's clock (``_CLOCK``), so runners on hosts whose clocks differ
agree on when a lease has run out. Events are written inside the store's write transactions,
which commit one at a time, so their ids commit in order: a reader that has seen event n has
seen every event before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import NameTaken, UnknownEvent, UnknownStream
from .core import ID_CHUNK, StoreCore
from .records import blob_to_encoding, encoding_to_blob


def schema(key: str, blob: str, real: str, integer: str) -> tuple[str, ...]:
    """The tables, in a backend's types: its auto-increment key, bytes, float and integer."""
    return (
        f"""CREATE TABLE IF NOT EXISTS streams (
            id {key}, name TEXT NOT NULL UNIQUE, source TEXT NOT NULL, every INTEGER,
            scale {real}, tolerance {real}, created_at TEXT NOT NULL,
            runner TEXT, lease_until {real}, status TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS events (
            id {key},
            stream_id {integer} NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
            kind TEXT NOT NULL, track {integer} NOT NULL, at {real} NOT NULL, name TEXT,
            confidence {real}, box TEXT NOT NULL, extra TEXT)""",
        "CREATE INDEX IF NOT EXISTS events_by_stream ON events(stream_id, id)",
        "CREATE INDEX IF NOT EXISTS events_by_name ON events(name, id)",
        "CREATE INDEX IF NOT EXISTS events_by_time ON events(at)",
        # an unknown track's mean encoding, and its face's snapshot (FACEREC_SNAPSHOTS)
        f"""CREATE TABLE IF NOT EXISTS event_faces (
            event_id {integer} PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
            encoding {blob} NOT NULL, snapshot {blob})""",
        f"""CREATE TABLE IF NOT EXISTS presence (
            name TEXT NOT NULL,
            stream_id {integer} NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
            present INTEGER NOT NULL, since {real} NOT NULL, last_seen {real} NOT NULL,
            confidence {real}, PRIMARY KEY (name, stream_id))""",
        f"""CREATE TABLE IF NOT EXISTS webhooks (
            id {key}, url TEXT NOT NULL, events TEXT NOT NULL, people TEXT,
            unknown INTEGER NOT NULL, secret TEXT NOT NULL, created_at TEXT NOT NULL,
            cursor {integer} NOT NULL, delivered {integer} NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt {real} NOT NULL DEFAULT 0,
            last_error TEXT, runner TEXT, lease_until {real})""",
    )


@dataclass(frozen=True)
class StreamRow:
    """A stream's definition, and who runs it (runner None: nobody, or a lease run out)."""

    id: int
    name: str
    source: str
    every: int | None
    scale: float | None
    tolerance: float | None
    created_at: str
    runner: str | None
    status: dict | None


@dataclass(frozen=True)
class EventRow:
    """One stored event; ``extra`` holds what only some kinds have (a leave's duration)."""

    id: int
    stream_id: int
    stream: str
    kind: str
    track: int
    at: float
    name: str | None
    confidence: float | None
    box: dict
    extra: dict
    snapshot: bool


@dataclass(frozen=True)
class NewEvent:
    """An event as a runner records it; ``encoding`` only for an unknown track."""

    kind: str
    track: int
    at: float
    name: str | None
    confidence: float | None
    box: dict
    extra: dict
    encoding: np.ndarray | None = None
    snapshot: bytes | None = None


@dataclass(frozen=True)
class PresenceRow:
    """Whether a person is in view of a stream, since when, and when last seen there."""

    name: str
    stream_id: int
    stream: str
    present: bool
    since: float
    last_seen: float
    confidence: float | None


_STREAM_COLUMNS = ("s.id, s.name, s.source, s.every, s.scale, s.tolerance, s.created_at,"
                   " CASE WHEN s.lease_until >= {clock} THEN s.runner END, s.status")
_EVENT_COLUMNS = ("e.id, e.stream_id, s.name, e.kind, e.track, e.at, e.name, e.confidence,"
                  " e.box, e.extra, f.snapshot IS NOT NULL")


class StreamTables(StoreCore):
    """Streams, their leases, events and presence."""

    def _stream_rows(self, where: str, parameters: Sequence) -> list[StreamRow]:
        columns = _STREAM_COLUMNS.format(clock=self._CLOCK)
        rows = self._execute(f"SELECT {columns} FROM streams s{where} ORDER BY s.id",
                             parameters).fetchall()
        return [StreamRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                          json.loads(r[8]) if r[8] else None) for r in rows]

    # -- definitions -------------------------------------------------------------------------

    def add_stream(self, name: str, source: str, every: int | None, scale: float | None,
                   tolerance: float | None, created_at: str) -> StreamRow:
        """Define a stream.

        :raises NameTaken: a stream of that name exists
        """
        with self._write():
            if self._one("SELECT 1 FROM streams WHERE name = ?", (name,)):
                raise NameTaken("name")
            self._execute("INSERT INTO streams (name, source, every, scale, tolerance,"
                          " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                          (name, source, every, scale, tolerance, created_at))
            return self._stream_rows(" WHERE s.name = ?", (name,))[0]

    def streams(self) -> list[StreamRow]:
        """Every stream, by id."""
        with self._lock:
            return self._stream_rows("", ())

    def stream(self, stream_id: int) -> StreamRow:
        """One stream.

        :raises UnknownStream: no stream has that id
        """
        with self._lock:
            found = self._stream_rows(" WHERE s.id = ?", (stream_id,))
        if not found:
            raise UnknownStream()
        return found[0]

    def delete_stream(self, stream_id: int) -> None:
        """Delete a stream with its events and presence; its runner stops it at its next
        heartbeat.

        :raises UnknownStream: no stream has that id
        """
        with self._write():
            if not self._one("SELECT 1 FROM streams WHERE id = ?", (stream_id,)):
                raise UnknownStream()
            self._execute("DELETE FROM event_faces WHERE event_id IN"
                          " (SELECT id FROM events WHERE stream_id = ?)", (stream_id,))
            self._execute("DELETE FROM events WHERE stream_id = ?", (stream_id,))
            self._execute("DELETE FROM presence WHERE stream_id = ?", (stream_id,))
            self._execute("DELETE FROM streams WHERE id = ?", (stream_id,))
        self._reclaim_events()

    # -- leases ------------------------------------------------------------------------------

    def lease_streams(self, runner: str, seconds: float, statuses: dict[int, dict],
                      claim: int) -> list[StreamRow]:
        """A runner's heartbeat, in one transaction: renew its leases and record its streams'
        status, mark the people in view of them as seen now, and claim up to ``claim`` streams
        that nobody runs (never leased, released, or whose lease ran out).

        :return: the streams this runner holds now
        """
        clock = self._CLOCK
        with self._write():
            for stream_id, status in statuses.items():
                self._execute(f"UPDATE streams SET lease_until = {clock} + ?, status = ?"
                              " WHERE id = ? AND runner = ?",
                              (seconds, json.dumps(status), stream_id, runner))
            self._execute(f"UPDATE presence SET last_seen = {clock} WHERE present = 1 AND"
                          " stream_id IN (SELECT id FROM streams WHERE runner = ?)", (runner,))
            if claim > 0:
                free = [row[0] for row in self._execute(
                    "SELECT id FROM streams WHERE runner IS NULL OR lease_until IS NULL OR"
                    f" lease_until < {clock} ORDER BY id LIMIT ?", (claim,)).fetchall()]
                for stream_id in free:  # a new runner: nobody is known to be in view yet
                    self._execute(f"UPDATE streams SET runner = ?, lease_until = {clock} + ?,"
                                  " status = NULL WHERE id = ?", (runner, seconds, stream_id))
                    self._execute("UPDATE presence SET present = 0 WHERE stream_id = ?",
                                  (stream_id,))
            return self._stream_rows(" WHERE s.runner = ?", (runner,))

    def release_streams(self, runner: str, statuses: dict[int, dict]) -> None:
        """A runner stops: its streams are free for another, with their last status."""
        with self._write():
            for stream_id, status in statuses.items():
                self._execute("UPDATE streams SET runner = NULL, lease_until = NULL,"
                              " status = ? WHERE id = ? AND runner = ?",
                              (json.dumps(status), stream_id, runner))
                self._execute("UPDATE presence SET present = 0 WHERE stream_id = ?",
                              (stream_id,))

    # -- events and presence -----------------------------------------------------------------

    def record_events(self, runner: str, stream_id: int, events: Sequence[NewEvent],
                      presence: Iterable[tuple[str, bool, float, float | None]] = ()
                      ) -> list[int]:
        """Store a stream's events and the presence they change, in one transaction, if this
        runner still holds the stream. A name that is no longer enrolled (deleted meanwhile)
        is not recorded: its event is kept as an unknown face's, without an encoding.

        :param presence: (name, present, at, confidence) of each person whose presence changed
        :return: the events' ids, in order ([] when the runner lost the stream)
        """
        with self._write():
            if not self._one("SELECT 1 FROM streams WHERE id = ? AND runner = ?",
                             (stream_id, runner)):
                return []
            enrolled = self._enrolled({e.name for e in events if e.name}
                                      | {name for name, *_ in presence})
            ids = [self._insert_event(stream_id, event, enrolled) for event in events]
            for name, present, at, confidence in presence:
                if name in enrolled:
                    self._set_presence(stream_id, name, present, at, confidence)
            return ids

    def enrolled(self, names: set[str]) -> set[str]:
        """Those of these names that are enrolled people."""
        with self._lock:
            return self._enrolled(names)

    def _enrolled(self, names: set[str]) -> set[str]:
        found: set[str] = set()
        chunk_names = sorted(names)
        for start in range(0, len(chunk_names), ID_CHUNK):
            chunk = chunk_names[start:start + ID_CHUNK]
            found.update(row[0] for row in self._execute(
                f"SELECT name FROM people WHERE name IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

    def _insert_event(self, stream_id: int, event: NewEvent, enrolled: set[str]) -> int:
        named = event.name is not None and event.name in enrolled
        (event_id,) = self._one(
            "INSERT INTO events (stream_id, kind, track, at, name, confidence, box, extra)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (stream_id, event.kind, event.track, event.at, event.name if named else None,
             event.confidence if named else None, json.dumps(event.box),
             json.dumps(event.extra)))
        if event.name is None and event.encoding is not None:
            self._execute("INSERT INTO event_faces (event_id, encoding, snapshot)"
                          " VALUES (?, ?, ?)",
                          (event_id, encoding_to_blob(event.encoding), event.snapshot))
        return int(event_id)

    def _set_presence(self, stream_id: int, name: str, present: bool, at: float,
                      confidence: float | None) -> None:
        row = self._one("SELECT present FROM presence WHERE name = ? AND stream_id = ?",
                        (name, stream_id))
        if row is None:
            self._execute("INSERT INTO presence (name, stream_id, present, since, last_seen,"
                          " confidence) VALUES (?, ?, ?, ?, ?, ?)",
                          (name, stream_id, int(present), at, at, confidence))
        elif present and not row[0]:  # back in view: a new stay
            self._execute("UPDATE presence SET present = 1, since = ?, last_seen = ?,"
                          " confidence = ? WHERE name = ? AND stream_id = ?",
                          (at, at, confidence, name, stream_id))
        else:
            self._execute("UPDATE presence SET present = ?, last_seen = ?, confidence ="
                          " COALESCE(?, confidence) WHERE name = ? AND stream_id = ?",
                          (int(present), at, confidence, name, stream_id))

    def events(self, since_id: int = 0, stream_id: int | None = None,
               name: str | None = None, unknown: bool = False,
               limit: int = 100, newest: bool = False) -> list[EventRow]:
        """Events after ``since_id``, oldest first (or the newest, newest first), of one
        stream, one person or unknown faces only, if asked."""
        where, parameters = ["e.id > ?"], [since_id]
        if stream_id is not None:
            where.append("e.stream_id = ?")
            parameters.append(stream_id)
        if name is not None:
            where.append("e.name = ?")
            parameters.append(name)
        if unknown:
            where.append("e.name IS NULL")
        with self._lock:
            rows = self._execute(
                f"SELECT {_EVENT_COLUMNS} FROM events e JOIN streams s ON s.id = e.stream_id"
                " LEFT JOIN event_faces f ON f.event_id = e.id"
                f" WHERE {' AND '.join(where)} ORDER BY e.id{' DESC' if newest else ''}"
                " LIMIT ?",
                (*parameters, limit)).fetchall()
        return [EventRow(int(r[0]), int(r[1]), r[2], r[3], int(r[4]), float(r[5]), r[6], r[7],
                         json.loads(r[8]), json.loads(r[9] or "{}"), bool(r[10]))
                for r in rows]

    def latest_event(self) -> int:
        """The last event's id (0 when there is none)."""
        with self._lock:
            (last,) = self._one("SELECT MAX(id) FROM events")
        return int(last or 0)

    def event_face(self, event_id: int) -> tuple[np.ndarray, bytes | None]:
        """An unknown face's mean encoding and snapshot, from its event.

        :raises UnknownEvent: no event of an unknown face has that id
        """
        with self._lock:
            row = self._one("SELECT encoding, snapshot FROM event_faces WHERE event_id = ?",
                            (event_id,))
        if row is None:
            raise UnknownEvent()
        return blob_to_encoding(bytes(row[0])), None if row[1] is None else bytes(row[1])

    def unknown_faces(self, limit: int) -> list[tuple[EventRow, np.ndarray]]:
        """The newest unknown faces that keep an encoding (one per track: where it appeared,
        or its first event kept), newest first."""
        with self._lock:
            rows = self._execute(
                f"SELECT {_EVENT_COLUMNS}, f.encoding FROM events e JOIN streams s"
                " ON s.id = e.stream_id JOIN event_faces f ON f.event_id = e.id WHERE e.id IN"
                " (SELECT MIN(id) FROM events WHERE id IN (SELECT event_id FROM event_faces)"
                " GROUP BY stream_id, track) ORDER BY e.id DESC LIMIT ?", (limit,)).fetchall()
        return [(EventRow(int(r[0]), int(r[1]), r[2], r[3], int(r[4]), float(r[5]), r[6], r[7],
                          json.loads(r[8]), json.loads(r[9] or "{}"), bool(r[10])),
                 blob_to_encoding(bytes(r[11]))) for r in rows]

    def name_unknown_face(self, event_id: int, name: str, source: str,
                          distinct: bool = False) -> tuple[int, int]:
        """Enrol an unknown face from its event ("who is this?"): its track's mean encoding
        becomes one of the person's faces (created if new), the track's events take the
        name and the new face's id (``face_id``, as a runner's named events have it: "not X"
        takes both back), and its encodings and snapshots leave the events (they are the
        person's now).

        :param distinct: refuse a name that looks like another person's (see look_alike)
        :return: (the new face's id, the person's face count)
        :raises UnknownEvent: no event of an unknown face with an encoding has that id
        :raises NameConflict: distinct, and the name looks like another person's
        """
        with self._write():
            row = self._one("SELECT e.stream_id, e.track, f.encoding FROM events e JOIN"
                            " event_faces f ON f.event_id = e.id WHERE e.id = ? AND"
                            " e.name IS NULL", (event_id,))
            if row is None:
                raise UnknownEvent()
            stream_id, track, blob = row
            if distinct:
                self._refuse_look_alike("name", name)
            added = self._insert_face(name, bytes(blob), source)
            self._execute("DELETE FROM event_faces WHERE event_id IN (SELECT id FROM events"
                          " WHERE stream_id = ? AND track = ?)", (stream_id, track))
            for other_id, extra in self._execute(
                    "SELECT id, extra FROM events WHERE stream_id = ? AND track = ?",
                    (stream_id, track)).fetchall():
                named = json.loads(extra or "{}") | {"face_id": added[0]}
                self._execute("UPDATE events SET name = ?, extra = ? WHERE id = ?",
                              (name, json.dumps(named), other_id))
        self._reclaim_events()
        return added

    def correct_event(self, event_id: int,
                      loop_sources: tuple[str, ...]) -> tuple[str, int | None]:
        """"Not X": a named event was wrong. The track's events lose the name (the correction
        is kept with them, as ``corrected_from``), and the face that named it goes if it came
        from the "who is this?" loop (its source begins with one of loop_sources).

        :return: (the name taken back, the id of the face deleted, if one was)
        :raises UnknownEvent: no event with a name has that id
        """
        with self._write():
            row = self._one("SELECT stream_id, track, name, extra FROM events WHERE id = ? AND"
                            " name IS NOT NULL", (event_id,))
            if row is None:
                raise UnknownEvent()
            stream_id, track, name, extra = row
            face_id = json.loads(extra or "{}").get("face_id")
            face = None if face_id is None else self._one(
                "SELECT f.person_id, f.source FROM faces f JOIN people p ON p.id = f.person_id"
                " WHERE f.id = ? AND p.name = ?", (face_id, name))
            for other_id, other_extra in self._execute(
                    "SELECT id, extra FROM events WHERE stream_id = ? AND track = ? AND"
                    " name = ?", (stream_id, track, name)).fetchall():
                corrected = json.loads(other_extra or "{}") | {"corrected_from": name}
                corrected.pop("face_id", None)
                self._execute("UPDATE events SET name = NULL, confidence = NULL, extra = ?"
                              " WHERE id = ?", (json.dumps(corrected), other_id))
            self._execute("UPDATE presence SET present = 0 WHERE name = ? AND stream_id = ?",
                          (name, stream_id))
            removed = None  # (after the correction: a person deleted takes their events along)
            if face is not None and face[1].startswith(loop_sources):
                self._execute("UPDATE files SET outcome = 'deleted', face_id = NULL"
                              " WHERE face_id = ?", (face_id,))
                self._execute("DELETE FROM faces WHERE id = ?", (face_id,))
                if not self._face_count(face[0]):
                    self._execute("DELETE FROM people WHERE id = ?", (face[0],))
                    self._forget_sightings(name)
                removed = int(face_id)
        if removed is not None:
            self._reclaim()
        return name, removed

    def presence(self) -> list[PresenceRow]:
        """Who has been seen on which stream: in view now only while the stream's runner holds
        its lease."""
        clock = self._CLOCK
        with self._lock:
            rows = self._execute(
                "SELECT p.name, p.stream_id, s.name, p.present = 1 AND s.lease_until >="
                f" {clock}, p.since, p.last_seen, p.confidence FROM presence p JOIN streams s"
                " ON s.id = p.stream_id ORDER BY p.name, p.stream_id").fetchall()
        return [PresenceRow(r[0], int(r[1]), r[2], bool(r[3]), float(r[4]), float(r[5]), r[6])
                for r in rows]

    def expire_events(self, before: float) -> int:
        """Delete the events from before a time (seconds since the epoch), a chunk per
        transaction, with their faces; their bytes leave the files as a deletion's do.

        :return: how many were deleted
        """
        deleted = 0
        while True:
            with self._write():
                ids = [row[0] for row in self._execute(
                    "SELECT id FROM events WHERE at < ? ORDER BY id LIMIT ?",
                    (before, ID_CHUNK)).fetchall()]
                if ids:
                    marks = ",".join("?" * len(ids))
                    self._execute(f"DELETE FROM event_faces WHERE event_id IN ({marks})", ids)
                    self._execute(f"DELETE FROM events WHERE id IN ({marks})", ids)
            deleted += len(ids)
            if len(ids) < ID_CHUNK:
                break
        if deleted:
            self._reclaim_events()
        return deleted

    def _forget_sightings(self, name: str) -> None:
        """A person is deleted: so are their events and presence (in the caller's
        transaction)."""
        self._execute("DELETE FROM events WHERE name = ?", (name,))
        self._execute("DELETE FROM presence WHERE name = ?", (name,))

    def _rename_sightings(self, name: str, new_name: str) -> None:
        """A person is renamed or merged: their events and presence follow (where both were
        seen on a stream, the later sighting is kept)."""
        self._execute("UPDATE events SET name = ? WHERE name = ?", (new_name, name))
        both = self._execute("SELECT stream_id FROM presence WHERE name = ? AND stream_id IN"
                             " (SELECT stream_id FROM presence WHERE name = ?)",
                             (name, new_name)).fetchall()
        for (stream_id,) in both:
            (kept,) = self._one("SELECT name FROM presence WHERE stream_id = ? AND name IN"
                                " (?, ?) ORDER BY last_seen DESC LIMIT 1",
                                (stream_id, name, new_name))
            self._execute("DELETE FROM presence WHERE stream_id = ? AND name = ?",
                          (stream_id, name if kept == new_name else new_name))
        self._execute("UPDATE presence SET name = ? WHERE name = ?", (new_name, name))

    def _reclaim_events(self) -> None:
        """Make deleted events and faces leave the backend's files (see ``_reclaim``)."""
