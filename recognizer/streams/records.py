"""What the live-video operations return: streams with their status, events, presence and
webhooks, as the JSON answers show them (times in ISO 8601, UTC; no credential, secret or
encoding ever)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..record import Record
from ..store.streams import EventRow, PresenceRow, StreamRow
from ..store.webhooks import WebhookRow
from .sources import masked


def iso(seconds: float | None) -> str | None:
    """A time in seconds since the epoch, as ISO 8601 in UTC to the millisecond."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StreamStatus(Record):
    """How a stream is doing, as its runner last said (every 2 s).

    ``state``: ``starting`` (no runner has taken it yet), ``connecting``, ``running``,
    ``reconnecting`` (the source dropped or cannot be opened: see last_error), or
    ``stopped`` (its runner stopped and no other has taken it yet).
    """

    state: str
    running: bool
    fps: float | None = None
    detections_per_second: float | None = None
    last_frame_at: str | None = None
    reconnects: int = 0
    last_error: str | None = None
    faces_in_view: int = 0
    runner: dict | None = None


@dataclass(frozen=True)
class Stream(Record):
    """A stream's definition (credentials hidden) and its live status."""

    id: int
    name: str
    source: str
    every: int | None
    scale: float | None
    tolerance: float | None
    created_at: str
    status: StreamStatus

    @classmethod
    def of(cls, row: StreamRow) -> "Stream":
        said = row.status or {}
        if row.runner is None:
            state = "stopped" if said else "starting"
            status = StreamStatus(state, False, reconnects=said.get("reconnects", 0),
                                  last_error=said.get("last_error"),
                                  last_frame_at=said.get("last_frame_at"))
        else:
            status = StreamStatus(**{"state": "connecting", "running": False} | said)
        return cls(row.id, row.name, masked(row.source), row.every, row.scale, row.tolerance,
                   row.created_at, status)


@dataclass(frozen=True)
class Streams(Record):
    """Every stream."""

    streams: list[Stream]


@dataclass(frozen=True)
class StreamDeleted(Record):
    """A stream deleted, with its events and presence."""

    id: int
    deleted: bool = True


@dataclass(frozen=True)
class Event(Record):
    """Something a stream saw: a face track's ``appear``, ``change`` (its name changed) or
    ``leave`` (with how long it was in view)."""

    id: int
    event: str
    stream: dict
    track: int
    time: str
    name: str | None
    confidence: float | None
    box: dict
    snapshot: bool
    duration: float | None = None
    corrected_from: str | None = None

    @classmethod
    def of(cls, row: EventRow) -> "Event":
        return cls(row.id, row.kind, {"id": row.stream_id, "name": row.stream}, row.track,
                   iso(row.at), row.name, row.confidence, row.box, row.snapshot,
                   row.extra.get("duration"), row.extra.get("corrected_from"))


@dataclass(frozen=True)
class Events(Record):
    """Events after ``since_id``, oldest first; ask again with ``next_since_id`` for more."""

    events: list[Event]
    next_since_id: int


@dataclass(frozen=True)
class UnknownFace(Record):
    """A face nobody is enrolled as, seen on the streams: its first sighting (the event to
    enrol it from, with "who is this?"), and how often such a face was seen lately."""

    event_id: int
    stream: dict
    time: str
    last_seen: str
    seen: int
    snapshot_event_id: int | None
    event_ids: list[int]


@dataclass(frozen=True)
class UnknownFaces(Record):
    """Recent unknown faces, newest first; the same face seen again counts once."""

    faces: list[UnknownFace]


@dataclass(frozen=True)
class Named(Record):
    """An unknown face enrolled: the person's new face, from the event's track."""

    event_id: int
    name: str
    face_id: int
    face_count: int


@dataclass(frozen=True)
class Corrected(Record):
    """A wrong name taken back from an event's track, and the face that gave it, if it came
    from the "who is this?" loop (deleted)."""

    event_id: int
    name: str
    deleted_face: int | None


@dataclass(frozen=True)
class Sighting(Record):
    """A person on a stream: in view now or not, since when, and when last seen there."""

    name: str
    present: bool
    stream: dict
    since: str
    last_seen: str
    confidence: float | None

    @classmethod
    def of(cls, row: PresenceRow) -> "Sighting":
        return cls(row.name, row.present, {"id": row.stream_id, "name": row.stream},
                   iso(row.since), iso(row.last_seen), row.confidence)


@dataclass(frozen=True)
class Presence(Record):
    """Who is in view now, and everyone seen before: by name, then stream."""

    present: list[Sighting]
    seen: list[Sighting]


@dataclass(frozen=True)
class Webhook(Record):
    """A webhook (its secret never shown after it is made) and its deliveries."""

    id: int
    url: str
    events: list[str]
    people: list[str] | None
    unknown: bool
    created_at: str
    delivery: dict
    secret: str | None = field(default=None)

    @classmethod
    def of(cls, row: WebhookRow, secret: str | None = None) -> "Webhook":
        delivery = {"delivered": row.delivered, "up_to_event": row.cursor,
                    "failed_attempts": row.attempts, "last_error": row.last_error,
                    "next_attempt_at": iso(row.next_attempt) if row.attempts else None}
        return cls(row.id, masked(row.url), list(row.events),
                   None if row.people is None else list(row.people), row.unknown,
                   row.created_at, delivery, secret)


@dataclass(frozen=True)
class Webhooks(Record):
    """Every webhook."""

    webhooks: list[Webhook]


@dataclass(frozen=True)
class WebhookDeleted(Record):
    """A webhook deleted: nothing more is sent to it."""

    id: int
    deleted: bool = True
