"""Webcam sessions: a browser sends its camera's frames one at a time, and each answer gives the
faces in view with their names, from the same tracker as the streams (``tracking.Watcher``):
names are voted on, so they do not flicker, and a known face is encoded again only once a
second, not at every frame.

A session's tracks live in the process that opened it; under ``scripts/serve`` every session
of a host is in one process (the live listener, which nginx sends ``/sessions`` to), and a
session id names its host. A session left alone for IDLE_SECONDS is closed and its memory
freed. At most ``max_sessions`` are open in a process, and frames are worked on by as many
threads at once as there are cores.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import SessionBusy, SessionElsewhere, TooManySessions, UnknownSession
from .pictures import Picture
from .record import Record

IDLE_SECONDS = 60.0  # a session without a frame for this long is closed
DETECT_SIDE = 640  # frames are detected at most this many pixels across
NOMINAL_FPS = 10.0  # (a track's first duration is one frame of this)


@dataclass(frozen=True)
class Opened(Record):
    """A session: its id (send frames to /sessions/{id}/frames), and how long it lives idle."""

    id: str
    idle_seconds: float


@dataclass(frozen=True)
class TrackView(Record):
    """One face in view: its track, box (in the frame's pixels), and who it is."""

    track: int
    box: dict
    name: str | None
    confidence: float | None


@dataclass(frozen=True)
class FrameAnswer(Record):
    """The faces in view after a frame, and what changed (appear, change, leave events)."""

    frame: int
    faces: list[TrackView]
    events: list[dict]
    image: dict
    milliseconds: float


@dataclass(frozen=True)
class Closed(Record):
    """A session closed, its tracks forgotten."""

    id: str
    closed: bool = True


@dataclass
class Session:
    """One browser's tracker (a ``tracking.Watcher``)."""

    watcher: object
    started: float = field(default_factory=time.monotonic)
    used: float = field(default_factory=time.monotonic)
    frames: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def face_source(session_id: str) -> str:
    """The source of a face enrolled from a session's track: ``session:`` and a digest of the
    session's id, never the id itself (whoever has it may send the session frames, or close
    it)."""
    return "session:" + hashlib.sha256(session_id.encode()).hexdigest()[:16]


class Sessions:
    """The webcam sessions of this process."""

    def __init__(self, service, max_sessions: int = 16) -> None:
        self.service, self.max_sessions = service, max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._working = threading.Semaphore(os.cpu_count() or 1)

    def open(self) -> Opened:
        """Open a session.

        :raises TooManySessions: as many are open as this process takes
        """
        from .tracking import Watcher  # (dlib's models load with it)

        with self._lock:
            self._close_idle()
            if len(self._sessions) >= self.max_sessions:
                raise TooManySessions(self.max_sessions)
            session_id = f"{socket.gethostname()}.{secrets.token_urlsafe(12)}"
            self._sessions[session_id] = Session(Watcher(self.service, NOMINAL_FPS, None))
        return Opened(session_id, IDLE_SECONDS)

    def frame(self, session_id: str, picture: Picture) -> FrameAnswer:
        """Track the faces of the next frame.

        :raises UnknownSession: closed, or idle too long
        :raises SessionElsewhere: the session lives on another host
        :raises SessionBusy: still working on the previous frame (send one at a time)
        """
        from . import faces

        session = self._session(session_id)
        if not session.lock.acquire(blocking=False):
            raise SessionBusy()
        try:
            started = time.perf_counter()
            with self._working:
                rgb = np.ascontiguousarray(picture.pixels)
                height, width = rgb.shape[:2]
                scale = min(1.0, DETECT_SIDE / max(width, height))
                boxes = faces.detect_scaled(rgb, scale, "hog", 0)[:self.service.settings.max_faces]
                now = time.monotonic()
                events = session.watcher.update(session.frames, now - session.started, rgb,
                                                boxes)
            session.frames += 1
            session.used = now
            return FrameAnswer(session.frames - 1, [
                TrackView(track.id, asdict(track.box), track.name, track.confidence)
                for track in session.watcher.tracks.values() if track.announced],
                events, {"width": width, "height": height},
                round((time.perf_counter() - started) * 1000, 1))
        finally:
            session.lock.release()

    def encoding(self, session_id: str, track_id: int) -> np.ndarray:
        """The mean of a track's recent encodings (to enrol it: "who is this?").

        :raises UnknownSession: no such session here, or no such track in view
        :raises SessionElsewhere: the session lives on another host
        """
        session = self._session(session_id)
        track = session.watcher.tracks.get(track_id)
        if track is None or not track.encodings:
            raise UnknownSession("unknown_track", "not in view now")
        return np.mean(track.encodings, axis=0)

    def close(self, session_id: str) -> Closed:
        """Close a session."""
        self._session(session_id)
        with self._lock:
            self._sessions.pop(session_id, None)
        return Closed(session_id)

    def _session(self, session_id: str) -> Session:
        host = session_id.rsplit(".", 1)[0]
        with self._lock:
            self._close_idle()
            session = self._sessions.get(session_id)
        if session is not None:
            return session
        if host != socket.gethostname():
            raise SessionElsewhere(f"ask {host}")
        raise UnknownSession("unknown_session", "closed, or idle too long: open another")

    def _close_idle(self) -> None:
        now = time.monotonic()
        for session_id in [key for key, one in self._sessions.items()
                           if now - one.used > IDLE_SECONDS]:
            del self._sessions[session_id]
