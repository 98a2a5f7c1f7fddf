"""The stream runner (``hug -f api.py -c streams``, started by ``scripts/serve``): it runs the
streams it holds leases on, each in a thread of its own with ``video.follow`` (tracking,
identity voting, key-frame detection), and tells the world what they see.

Every HEARTBEAT seconds a runner renews its leases (LEASE seconds, by the database's clock),
records its streams' status, and claims streams nobody holds: new ones, released ones, and
those of a runner that died (its leases run out). So each stream runs in exactly one runner
across all processes and hosts, one that dies is replaced within LEASE + HEARTBEAT seconds,
and a stream added or deleted is started or stopped at the next heartbeat. A camera that drops
is opened again after 1, 2, 4, ... seconds (at most MAX_BACKOFF); its status says so.

Each event is stored (with the presence it changes) in one transaction, then handed to the
webhooks this runner delivers (``webhooks``) and to MQTT (``mqtt``); the event feed and other
runners' webhooks read it from the store.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import socket
import threading
import time

import numpy as np

from .. import metrics, video
from ..errors import RecognizerError, StoreUnavailable
from ..store.streams import EventRow, NewEvent, StreamRow
from ..tracking import Track
from . import live, sources
from .mqtt import STATUS_EVERY, Publisher
from .records import Event, iso
from .webhooks import Deliveries

log = logging.getLogger(__name__)

LEASE = 6.0  # seconds a lease lasts unless renewed
HEARTBEAT = 2.0  # seconds between renewals
CLAIM = 4  # streams a runner that holds none may claim at once (one at a time after that)
MAX_BACKOFF = 30.0  # seconds between attempts to open a source, at most
OPEN_TIMEOUT = 10.0  # seconds a source may take to open, and then to give each frame
LIVE_FPS = 10  # annotated frames written a second for live views, at most
EXPIRE_EVERY = 600.0  # seconds between deletions of expired events
RECORD_TRIES = 5  # attempts to store an event while the store is away (a second apart)


class Runner:
    """Runs the streams it holds, until stopped."""

    def __init__(self, service) -> None:
        self.service, self.settings, self.store = service, service.settings, service.store
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stop = threading.Event()
        self.workers: dict[int, StreamWorker] = {}
        self.frames = live.Frames(self.settings.live_folder)
        self.deliveries = Deliveries(self.store, self.settings, self.id)
        self.publisher = None if not self.settings.mqtt_url else Publisher(
            self.settings.mqtt_url, self.settings.mqtt_topic, f"facerec-{self.id}")
        self.published: set[str] = set()  # people whose presence topic this runner has set
        self._lock = threading.Lock()

    def run(self) -> dict:
        """Run until SIGTERM or Ctrl-C; then stop the streams (their tracks leave) and release
        the leases, so that another runner takes over at once."""
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        log.info("stream runner %s started", self.id)
        renewed, expired_at = time.monotonic(), 0.0
        try:
            while not self.stop.is_set():
                if self._heartbeat():
                    renewed = time.monotonic()
                elif time.monotonic() - renewed > LEASE:  # others may have taken them by now
                    self._sync([])
                if time.monotonic() - expired_at > EXPIRE_EVERY:
                    expired_at = time.monotonic()
                    self._expire()
                self.stop.wait(HEARTBEAT)
        except KeyboardInterrupt:
            log.info("interrupted")
        finally:
            self._shut_down()
        return {"runner": self.id, "stopped": True}

    def _heartbeat(self) -> bool:
        """Renew, report and claim; start and stop streams to match. False when the store
        could not be reached."""
        statuses = {stream_id: worker.status() for stream_id, worker in self.workers.items()}
        claim = CLAIM if not self.workers else 1
        try:
            held = self.store.lease_streams(self.id, LEASE, statuses, claim)
            self.deliveries.sync(self.store.lease_webhooks(self.id, LEASE))
            self._forget_deleted_people()
        except StoreUnavailable:
            log.warning("the store is unavailable: leases not renewed")
            return False
        self._sync(held)
        if self.publisher is not None:
            for worker in self.workers.values():
                worker.publish_status()
        return True

    def _sync(self, held: list[StreamRow]) -> None:
        ids = {row.id for row in held}
        for stream_id in set(self.workers) - ids:  # deleted, or lost to another runner
            self.workers.pop(stream_id).close()
            self.frames.remove(stream_id)
        for row in held:
            if row.id not in self.workers:
                self.workers[row.id] = StreamWorker(self, row)

    def _forget_deleted_people(self) -> None:
        """Empty the retained presence topics of people deleted since they were published."""
        if self.publisher is None or not self.published:
            return
        with self._lock:
            gone = self.published - self.store.enrolled(set(self.published))
            self.published -= gone
        for name in gone:
            self.publisher.person(name, None)

    def _expire(self) -> None:
        try:
            deleted = self.store.expire_events(time.time() - self.settings.event_retention)
        except StoreUnavailable:
            return
        if deleted:
            log.info("deleted %d events older than the retention", deleted)

    def _shut_down(self) -> None:
        self.stop.set()
        workers = list(self.workers.values())
        for worker in workers:
            worker.close()
        for worker in workers:
            worker.thread.join(timeout=15)
        try:
            self.store.release_streams(self.id, {w.row.id: w.status(stopped=True)
                                                 for w in workers})
            self.store.release_webhooks(self.id)
        except StoreUnavailable:
            log.warning("the store is unavailable: leases run out in %.0f s", LEASE)
        self.deliveries.close()
        for worker in workers:
            self.frames.remove(worker.row.id)
        self.frames.tidy()
        if self.publisher is not None:
            for worker in workers:
                worker.publish_status(force=True)
            self.publisher.close()
        log.info("stream runner %s stopped", self.id)

    def recorded(self, row: StreamRow, stored: EventRow,
                 presence: list[tuple[str, bool, float, float | None]]) -> None:
        """An event was stored: tell webhooks and MQTT."""
        self.deliveries.notify()
        if self.publisher is None:
            return
        self.publisher.event(Event.of(stored).__native_types__())
        for name, present, at, confidence in presence:
            with self._lock:
                self.published.add(name)
            self.publisher.person(name, {"present": present, "stream": row.name,
                                         "since" if present else "last_seen": iso(at),
                                         "confidence": confidence})


class StreamWorker:
    """One stream, in a thread: open, follow, record; on a drop, open again after a while."""

    def __init__(self, runner: Runner, row: StreamRow) -> None:
        self.runner, self.row = runner, row
        self.stop = threading.Event()
        self.state, self.reconnects, self.last_error = "connecting", 0, None
        self.frames, self.detections, self.counted_at = 0, 0, time.monotonic()
        self.last_frame_at: float | None = None
        self.in_view = 0
        self.names: dict[int, str] = {}  # open tracks' names
        self.tracks_before = self.last_track = 0  # track ids go on across connections
        self.published_at, self.published_state = 0.0, None
        self._wanted_at, self._wanted, self._drawn_at = 0.0, False, 0.0
        self.thread = threading.Thread(target=self._run, name=f"stream-{row.id}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop: the source is closed, and the tracks in view leave."""
        self.stop.set()

    # -- status ------------------------------------------------------------------------------

    def status(self, stopped: bool = False) -> dict:
        """The status the runner records (rates since the last call)."""
        now = time.monotonic()
        seconds, self.counted_at = max(now - self.counted_at, 1e-6), now
        fps, detections = self.frames / seconds, self.detections / seconds
        self.frames = self.detections = 0
        running = self.state == "running" and not stopped
        metrics.stream_status(self.row.id, fps if running else None)
        return {"state": "stopped" if stopped else self.state, "running": running,
                "fps": round(fps, 1) if running else None,
                "detections_per_second": round(detections, 1) if running else None,
                "last_frame_at": iso(self.last_frame_at), "reconnects": self.reconnects,
                "last_error": self.last_error, "faces_in_view": self.in_view if running else 0,
                "runner": {"host": socket.gethostname(), "pid": os.getpid()}}

    def publish_status(self, force: bool = False) -> None:
        """The stream's status to MQTT, when its state changed or every STATUS_EVERY s."""
        now = time.monotonic()
        if force or self.state != self.published_state or \
                now - self.published_at > STATUS_EVERY:
            self.published_at, self.published_state = now, self.state
            status = self.status() if not force else self.status(stopped=True)
            self.runner.publisher.stream_status(self.row.name, status)

    # -- watching ----------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            seen = self._watch()
            if self.stop.is_set():
                break
            self.reconnects += 1
            metrics.stream_reconnected(self.row.id)
            self.state = "reconnecting"
            backoff = 1.0 if seen else min(MAX_BACKOFF, backoff * 2)
            log.info("stream %d (%s): %s; opening again in %.0f s", self.row.id, self.row.name,
                     self.last_error, backoff)
            self.stop.wait(backoff)
        self.state = "stopped"

    def _watch(self) -> bool:
        """Open the source and follow it until it ends; whether it gave frames."""
        settings, relay, frames_before = self.runner.settings, None, self.last_frame_at
        try:
            local, relay = sources.connect(sources.parse(self.row.source),
                                           settings.stream_networks)
            opened = video.open_source(local, timeout=OPEN_TIMEOUT)
            opened = dataclasses.replace(opened, live=True, paced=not opened.live)
            plan = video.choose(opened, self.row.scale, self.row.every)
            self.state, self.last_error, started = "running", None, time.time()
            log.info("stream %d (%s) opened: %dx%d", self.row.id, self.row.name, opened.width,
                     opened.height)
            for event in video.follow(self.runner.service, opened, plan, self.row.tolerance,
                                      self.stop, self._frame, self._extras, network=True):
                if event["event"] != "summary":
                    self._record(event, started)
            self.last_error = "the source ended"
        except RecognizerError as error:
            self.last_error = error.detail or error.message
            if relay is not None and relay.error:
                self.last_error = relay.error
        except Exception as error:  # never a source's URL in the log: its type only
            log.error("stream %d (%s) failed: %s", self.row.id, self.row.name,
                      type(error).__name__)
            self.last_error = f"internal error ({type(error).__name__})"
        finally:
            if relay is not None:
                relay.close()
            self.in_view = 0
            self.tracks_before = self.last_track
            self.names.clear()
        return self.last_frame_at != frames_before

    def _frame(self, index: int, frame: np.ndarray, tracks, key: bool) -> None:
        now = time.monotonic()
        self.frames += 1
        self.detections += key
        self.last_frame_at = time.time()
        self.in_view = len(tracks)
        if now - self._wanted_at > 1.0:
            self._wanted_at, self._wanted = now, self.runner.frames.wanted(self.row.id)
        if self._wanted and now - self._drawn_at >= 1 / LIVE_FPS:
            self._drawn_at = now
            self.runner.frames.publish(self.row.id, video.jpeg(video.annotate(frame, tracks)))

    def _extras(self, track: Track, rgb: np.ndarray | None) -> dict:
        """An unknown track's mean encoding, and with FACEREC_SNAPSHOTS its face's snapshot; a
        named track's nearest face of that person (so that "not X" can find it)."""
        if not track.encodings:
            return {}
        mean = np.mean(track.encodings, axis=0)
        if track.name is not None:
            gallery = self.runner.service.gallery.current()
            return {"face_id": gallery.nearest_face(track.name, mean)}
        extra: dict = {"encoding": mean}
        if self.runner.settings.snapshots and rgb is not None:
            extra["snapshot"] = video.snapshot(rgb, track.box)
        return extra

    def _record(self, event: dict, started: float) -> None:
        """Store one event and the presence it changes, then pass it on."""
        at, track = started + event["time"], self.tracks_before + event["track"]
        self.last_track = max(self.last_track, track)
        extra = {key: event[key] for key in ("duration", "face_id") if event.get(key) is not None}
        new = NewEvent(event["event"], track, at, event["name"], event["confidence"],
                       event["box"], extra, event.get("encoding"), event.get("snapshot"))
        presence = self._presence(new)
        for _ in range(RECORD_TRIES):
            try:
                ids = self.runner.store.record_events(self.runner.id, self.row.id, [new],
                                                      presence)
                break
            except StoreUnavailable:
                self.stop.wait(1.0)
        else:
            log.warning("stream %d: an event was not stored (the store is unavailable)",
                        self.row.id)
            return
        if not ids:  # the stream was deleted, or another runner holds it now
            self.stop.set()
            return
        stored = EventRow(ids[0], self.row.id, self.row.name, new.kind, new.track, at,
                          new.name, new.confidence, new.box, new.extra,
                          new.snapshot is not None and new.name is None)
        metrics.stream_event(self.row.id, new.kind)
        self.runner.recorded(self.row, stored, presence)

    def _presence(self, event: NewEvent) -> list[tuple[str, bool, float, float | None]]:
        """The people whose presence on this stream an event changes: in view while any
        track of theirs is."""
        before = set(self.names.values())
        if event.kind == "leave":
            self.names.pop(event.track, None)
        elif event.name is not None:
            self.names[event.track] = event.name
        else:
            self.names.pop(event.track, None)
        after = set(self.names.values())
        return ([(name, True, event.at, event.confidence) for name in after - before]
                + [(name, False, event.at, None) for name in before - after])
