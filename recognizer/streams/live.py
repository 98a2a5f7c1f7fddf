"""How live frames and events reach a viewer.

**Frames.** A runner and the server's workers are different processes. A runner writes each of
its streams' latest annotated frame as one JPEG file, replaced atomically, in a folder in shared
memory (``Settings.live_folder``, owner-only); a live view reads it from there. Frames are drawn
and written only while somebody watches: each view touches ``<id>.want`` every second, and the
runner writes frames while that file is fresh. So a view is answered by the host that runs the
stream; on another host it gets 421 and the host's name.

**Responses that stay open.** A live view (MJPEG) and the event feed (Server-Sent Events) are
bodies that hand out their next part when the server asks for it (``read``). They are served
by a listener of their own under ``scripts/serve`` (see ``docs/streams.md``), so that viewers
never hold a recognition worker.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

WANTED_SECONDS = 5.0  # a stream's frames are drawn this long after a view last asked
RESEND_SECONDS = 5.0  # an unchanged frame is sent again this often (finds closed views)
FEED_POLL = 0.25  # seconds between the event feed's looks at the store
FEED_HEARTBEAT = 15.0  # seconds of silence after which the feed sends a comment
BOUNDARY = "facerec-frame"


class Frames:
    """The folder of the streams' latest frames on this host."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def _ready(self) -> None:
        self.folder.mkdir(mode=0o700, exist_ok=True)

    def wanted(self, stream_id: int) -> bool:
        """Whether a view asked for this stream's frames lately."""
        try:
            return time.time() - (self.folder / f"{stream_id}.want").stat().st_mtime \
                < WANTED_SECONDS
        except OSError:
            return False

    def want(self, stream_id: int) -> None:
        """Ask the runner for this stream's frames (for the next WANTED_SECONDS)."""
        self._ready()
        path = self.folder / f"{stream_id}.want"
        path.touch(mode=0o600)
        os.utime(path)

    def publish(self, stream_id: int, jpeg: bytes) -> None:
        """Replace a stream's latest frame."""
        self._ready()
        temporary = self.folder / f".{stream_id}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(jpeg)
        os.replace(temporary, self.folder / f"{stream_id}.jpg")

    def latest(self, stream_id: int) -> tuple[int, bytes] | None:
        """(its modification time in ns, the JPEG) of a stream's latest frame, if any."""
        try:
            with open(self.folder / f"{stream_id}.jpg", "rb") as file:
                return os.fstat(file.fileno()).st_mtime_ns, file.read()
        except OSError:
            return None

    def remove(self, stream_id: int) -> None:
        """Forget a stream's frame (it stopped here)."""
        for suffix in ("jpg", "want"):
            try:
                (self.folder / f"{stream_id}.{suffix}").unlink()
            except OSError:
                pass

    def tidy(self) -> None:
        """Remove the folder if nothing is left in it (a runner stops)."""
        try:
            self.folder.rmdir()
        except OSError:
            pass


class Body:
    """A response body made part by part: the server calls ``read`` until it returns b""."""

    def __init__(self, parts: Callable[[], bytes | None]) -> None:
        self._parts = parts
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            return b""
        part = self._parts()
        if part is None:
            self.closed = True
            return b""
        return part

    def close(self) -> None:
        self.closed = True


def mjpeg(frames: Frames, stream_id: int, fps: int, running: Callable[[], bool]) -> Body:
    """A live view: the stream's latest frame as each part of a multipart/x-mixed-replace
    body, at most ``fps`` a second; it ends when the stream stops running here."""
    state = {"seen": None, "sent_at": 0.0, "checked_at": time.monotonic(), "wanted_at": 0.0}

    def next_part() -> bytes | None:
        while True:
            now = time.monotonic()
            if now - state["wanted_at"] > 1.0:
                frames.want(stream_id)
                state["wanted_at"] = now
            if now - state["checked_at"] > 2.0:
                if not running():
                    return None
                state["checked_at"] = now
            found = frames.latest(stream_id)
            if found and (found[0] != state["seen"] or now - state["sent_at"] > RESEND_SECONDS):
                state["seen"], state["sent_at"] = found[0], now
                return (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length:"
                        f" {len(found[1])}\r\n\r\n").encode() + found[1] + b"\r\n"
            time.sleep(1 / fps)

    return Body(next_part)


def event_feed(read: Callable[[int], list[dict]], after: int) -> Body:
    """Server-Sent Events: each event after ``after`` as it is stored, with its id (so that a
    browser resumes with Last-Event-ID), and a comment after FEED_HEARTBEAT s of silence.

    :param read: gives the events (as the API shows them) after an id, oldest first
    """
    state = {"after": after, "spoke": time.monotonic(), "started": False}

    def next_part() -> bytes:
        if not state["started"]:
            state["started"] = True
            return b"retry: 2000\n\n"
        while True:
            events = read(state["after"])
            if events:
                state["after"], state["spoke"] = events[-1]["id"], time.monotonic()
                return "".join(f"id: {event['id']}\nevent: {event['event']}\ndata:"
                               f" {json.dumps(event)}\n\n" for event in events).encode()
            if time.monotonic() - state["spoke"] > FEED_HEARTBEAT:
                state["spoke"] = time.monotonic()
                return b": still here\n\n"
            time.sleep(FEED_POLL)

    return Body(next_part)
