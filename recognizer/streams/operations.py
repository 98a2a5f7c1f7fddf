"""The live-video operations the HTTP edge calls: streams, events, presence and webhooks, over
the store. Runners (``runner``) do the watching; these only define, read and serve."""

from __future__ import annotations

import re
import secrets
import socket
import unicodedata
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

from .. import limits
from ..config import Settings
from ..matching import Match
from ..errors import (
    DestinationNotAllowed,
    InvalidParameter,
    StreamElsewhere,
    UnknownEvent,
    UrlNotAllowed,
)
from ..fetch import check_url
from ..names import check_name
from ..store import Store
from . import live, sources
from .records import (
    Corrected,
    Event,
    Events,
    Named,
    Presence,
    Sighting,
    Stream,
    StreamDeleted,
    Streams,
    UnknownFace,
    UnknownFaces,
    Webhook,
    WebhookDeleted,
    Webhooks,
    iso,
)

EVENT_KINDS = ("appear", "change", "leave")
UNKNOWN_SCANNED = 500  # unknown tracks looked at for the list of unknown faces, newest first
LOOP_SOURCES = ("event:", "session:")  # faces "who is this?" enrolled
STREAM_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
MIN_SECRET = 16  # characters of a webhook's secret, at least


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class LiveVideo:
    """Streams, their events and who they see, and the webhooks that are told."""

    def __init__(self, settings: Settings, store: Store,
                 identify: Callable[[np.ndarray], Match]) -> None:
        """
        :param identify: who an encoding is now (the service's decision)
        """
        self.settings, self.store, self.identify = settings, store, identify
        self.frames = live.Frames(settings.live_folder)

    # -- streams -----------------------------------------------------------------------------

    def add_stream(self, name: str, source: str, every: int | None = None,
                   scale: float | None = None, tolerance: float | None = None) -> Stream:
        """Define a stream; a runner starts it within a heartbeat (2 s).

        :raises DestinationNotAllowed: the source is malformed, or outside
            FACEREC_STREAM_NETWORKS
        :raises NameTaken: a stream of that name exists
        """
        for bound, field, value in ((limits.VIDEO_EVERY, "every", every),
                                    (limits.VIDEO_SCALE, "scale", scale),
                                    (limits.TOLERANCE, "tolerance", tolerance)):
            if value is not None:
                bound.check(field, value)
        sources.check(sources.parse(source), self.settings.stream_networks)
        return Stream.of(self.store.add_stream(name, source, every, scale, tolerance, _now()))

    def streams(self) -> Streams:
        """Every stream and its status."""
        return Streams([Stream.of(row) for row in self.store.streams()])

    def stream(self, stream_id: int) -> Stream:
        """One stream and its status.

        :raises UnknownStream: no stream has that id
        """
        return Stream.of(self.store.stream(stream_id))

    def delete_stream(self, stream_id: int) -> StreamDeleted:
        """Stop and delete a stream, its events and presence.

        :raises UnknownStream: no stream has that id
        """
        self.store.delete_stream(stream_id)
        return StreamDeleted(stream_id)

    def view(self, stream_id: int, fps: int) -> live.Body:
        """A stream's annotated frames as MJPEG, from this host.

        :raises UnknownStream: no stream has that id
        :raises StreamElsewhere: the stream is not running, or runs on another host
        """
        limits.LIVE_FPS.check("fps", fps)
        row = self.store.stream(stream_id)
        host = (row.runner or "").split(":", 1)[0]
        if row.runner is None:
            raise StreamElsewhere("stream_not_running", "no runner runs it now")
        if host != socket.gethostname():
            raise StreamElsewhere("stream_on_another_host", f"ask {host}")

        def running() -> bool:  # here, still
            try:
                runner = self.store.stream(stream_id).runner
            except Exception:  # deleted, or the store is away: the view ends
                return False
            return runner is not None and runner.split(":", 1)[0] == socket.gethostname()

        return live.mjpeg(self.frames, stream_id, fps, running)

    # -- events ------------------------------------------------------------------------------

    def events(self, since_id: int = 0, stream_id: int | None = None,
               person: str | None = None, unknown: bool = False, limit: int = 100,
               newest: bool = False) -> Events:
        """Events after since_id, oldest first (or the newest ones, newest first), filtered by
        stream, person or unknown faces."""
        self._check_filters(since_id, limit, unknown, person)
        found = self.store.events(since_id, stream_id, person, unknown, limit, newest)
        last = max((row.id for row in found), default=since_id)
        return Events([Event.of(row) for row in found], last)

    def _check_filters(self, since_id: int, limit: int, unknown: bool,
                       person: str | None) -> None:
        limits.EVENT_ID.check("since_id", since_id)
        limits.EVENT_LIMIT.check("limit", limit)
        if unknown and person is not None:
            raise InvalidParameter("unknown", "invalid_value", "not with person")

    def feed(self, last_event_id: str | None = None, since_id: int | None = None,
             stream_id: int | None = None, person: str | None = None,
             unknown: bool = False) -> live.Body:
        """Server-Sent Events of the events as they are stored, after Last-Event-ID (a
        browser's reconnection), since_id, or else from now."""
        if last_event_id is not None:
            text = last_event_id.strip()  # ASCII digits: str.isdigit() also takes "²"
            if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) not in limits.EVENT_ID:
                raise InvalidParameter("last_event_id", "invalid_value", "an event's id")
            since_id = int(text)
        after = self.store.latest_event() if since_id is None else since_id
        self._check_filters(after, 1, unknown, person)

        def read(after_id: int) -> list[dict]:
            return [Event.of(row).__native_types__() for row in
                    self.store.events(after_id, stream_id, person, unknown, 100)]

        return live.event_feed(read, after)

    def snapshot(self, event_id: int) -> bytes:
        """The snapshot of an unknown face's event (FACEREC_SNAPSHOTS=on).

        :raises UnknownEvent: no such event of an unknown face, or it has no snapshot
        """
        _, jpeg = self.store.event_face(event_id)
        if jpeg is None:
            raise UnknownEvent("no_snapshot")
        return jpeg

    def unknown_faces(self, limit: int = 50) -> UnknownFaces:
        """Recent unknown faces, newest first: each face once, with how often it was seen (the
        unknown tracks within the tolerance of each other), and none that is somebody now."""
        limits.EVENT_LIMIT.check("limit", limit)
        groups: list[tuple[np.ndarray, list]] = []
        for row, encoding in self.store.unknown_faces(UNKNOWN_SCANNED):
            if self.identify(encoding).name is not None:
                continue  # enrolled since
            for first, members in groups:
                if np.linalg.norm(first - encoding) <= self.settings.tolerance:
                    members.append(row)
                    break
            else:
                groups.append((encoding, [row]))
        return UnknownFaces([UnknownFace(
            rows[0].id, {"id": rows[0].stream_id, "name": rows[0].stream}, iso(rows[-1].at),
            iso(rows[0].at), len(rows), next((r.id for r in rows if r.snapshot), None),
            [r.id for r in rows]) for _, rows in groups[:limit]])

    def name_unknown(self, event_id: int, name: str) -> Named:
        """"Who is this?": enrol an unknown face from its event, as name; its next appearance
        is named.

        :raises UnknownEvent: no event of an unknown face (that keeps its encoding) has that id
        :raises NameConflict: the name looks like another person's, and names are strict
        """
        name = check_name(name)
        face_id, count = self.store.name_unknown_face(event_id, name, f"event:{event_id}",
                                                      distinct=self.settings.strict_names)
        return Named(event_id, name, face_id, count)

    def correct(self, event_id: int) -> Corrected:
        """"Not X": take a wrong name back from an event's track; the face that gave it goes
        if it came from "who is this?".

        :raises UnknownEvent: no event with a name has that id
        """
        name, deleted = self.store.correct_event(event_id, LOOP_SOURCES)
        return Corrected(event_id, name, deleted)

    def presence(self) -> Presence:
        """Who is in view now, on which stream and since when; and who was seen before."""
        sightings = [Sighting.of(row) for row in self.store.presence()]
        return Presence([s for s in sightings if s.present],
                        [s for s in sightings if not s.present])

    # -- webhooks ----------------------------------------------------------------------------

    def add_webhook(self, url: str, events: list[str] | None = None,
                    people: list[str] | None = None, unknown: bool = True,
                    secret: str | None = None) -> Webhook:
        """Send every event of these kinds, of these people (all, by default) and of unknown
        faces if asked, to a URL; signed with the secret (one is made when none is given,
        and shown this once).

        :raises DestinationNotAllowed: the URL is malformed, or outside
            FACEREC_WEBHOOK_NETWORKS
        """
        check_webhook_url(url, self.settings)
        events = list(dict.fromkeys(events or EVENT_KINDS))
        for kind in events:
            if kind not in EVENT_KINDS:
                raise InvalidParameter("events", "invalid_value", ", ".join(EVENT_KINDS))
        people = None if people is None else [check_name(name) for name in people]
        if secret is not None and (not MIN_SECRET <= len(secret) <= 256
                                   or any(unicodedata.category(ch) == "Cc" for ch in secret)):
            raise InvalidParameter("secret", "invalid_value",  # (PostgreSQL holds no NUL)
                                   f"{MIN_SECRET} to 256 characters, no control characters")
        made = secrets.token_urlsafe(32) if secret is None else None
        row = self.store.add_webhook(url, events, people, unknown, secret or made, _now())
        return Webhook.of(row, secret=made)

    def webhooks(self) -> Webhooks:
        """Every webhook and how its deliveries go."""
        return Webhooks([Webhook.of(row) for row in self.store.webhooks()])

    def webhook(self, webhook_id: int) -> Webhook:
        """One webhook and how its deliveries go.

        :raises UnknownWebhook: no webhook has that id
        """
        return Webhook.of(self.store.webhook(webhook_id))

    def delete_webhook(self, webhook_id: int) -> WebhookDeleted:
        """Delete a webhook.

        :raises UnknownWebhook: no webhook has that id
        """
        self.store.delete_webhook(webhook_id)
        return WebhookDeleted(webhook_id)


def check_webhook_url(url: str, settings: Settings) -> str:
    """Refuse a webhook URL that is malformed or reaches outside FACEREC_WEBHOOK_NETWORKS;
    return the address it resolves to now.

    :raises DestinationNotAllowed: ``invalid_destination`` or ``destination_not_allowed``
    """
    try:
        check_url(url)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except (UrlNotAllowed, ValueError):
        raise DestinationNotAllowed("url", "invalid_destination",
                                    "http:// or https:// with a host, no user or password"
                                    ) from None
    source = sources.Source(url, scheme=parts.scheme, host=parts.hostname or "", port=port)
    try:
        return sources.pin(source, settings.webhook_networks, "FACEREC_WEBHOOK_NETWORKS")
    except DestinationNotAllowed as error:
        raise DestinationNotAllowed("url", error.message, error.detail) from None
