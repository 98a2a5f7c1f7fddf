"""Recognise faces in video (a file, a webcam, an RTSP or HTTP stream) as a stream of events.

Faster than the naive loop (detect and encode every face of every full-size frame) because:

- faces are **detected** only every few frames, on a resized copy, and **tracked** in between:
  each detection is matched to the face tracks by box overlap;
- a face is **encoded** when its track starts, then at every key frame while it is unknown and
  every second once it is named; a track is identified by the **mean of its recent encodings**
  (frames of a moving face vary the way jitters do), and its name changes only when two
  identifications in a row agree, so names do not flicker;
- the work is **pipelined** over both cores: one thread decodes, two detect key frames ahead of
  the one that tracks and draws (dlib and OpenCV release the GIL).

Files are processed frame by frame, every frame. Live sources (webcams, streams) keep only the
newest frame, so the recogniser never falls behind the camera.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages: quiet

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from . import faces  # noqa: E402
from .errors import VideoUnavailable  # noqa: E402
from .service import FaceService  # noqa: E402

log = logging.getLogger(__name__)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no V4L/FFmpeg chatter

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
DETECT_SIDE = 640  # automatic scale: detect on frames whose longest side is at most this
DETECTIONS_PER_SECOND = 6  # automatic interval: about this many detections per second of video
REIDENTIFY_SECONDS = 1.0  # encode a named face again this often; an unknown one at each key frame
POOLED = 5  # a track is identified by the mean of its last POOLED encodings
MATCH_OVERLAP = 0.3  # a detection continues a track when their boxes overlap this much (IoU)
LEAVE_SECONDS = 0.5  # a track that no detection has continued for this long has left


@dataclass(frozen=True)
class Source:
    """An opened video source."""

    capture: cv2.VideoCapture
    live: bool
    fps: float
    width: int
    height: int


def open_source(source: str) -> Source:
    """Open a video file, a webcam index ("0") or a stream URL (rtsp://, http://, ...).

    A webcam, or a stream whose length is unknown, is live: it keeps only its newest frame.
    A file, or a whole video served over HTTP, is read frame by frame.

    :raises VideoUnavailable: ``no_such_file``, ``not_a_video``, ``camera_unavailable`` or
        ``stream_unavailable``
    """
    if source.isdigit():
        capture, problem = cv2.VideoCapture(int(source)), "camera_unavailable"
    elif source.lower().startswith(LIVE_SCHEMES):
        capture, problem = cv2.VideoCapture(source, cv2.CAP_FFMPEG), "stream_unavailable"
    elif not Path(source).is_file():
        raise VideoUnavailable("no_such_file")
    else:
        capture, problem = cv2.VideoCapture(source, cv2.CAP_FFMPEG), "not_a_video"
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if not capture.isOpened() or width <= 0 or height <= 0:
        capture.release()
        raise VideoUnavailable(problem)
    # a camera, or a stream of unknown length, is live; a file or a video served whole is not
    live = problem == "camera_unavailable" or (
        problem == "stream_unavailable" and capture.get(cv2.CAP_PROP_FRAME_COUNT) <= 0)
    fps = capture.get(cv2.CAP_PROP_FPS)
    return Source(capture, live, fps if 0 < fps <= 240 else 30.0, width, height)


def read_frames(source: Source, stop: threading.Event) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) from a decoding thread. A live source keeps only the newest frame."""
    frames: queue.Queue = queue.Queue(maxsize=1 if source.live else 32)

    def decode() -> None:
        index = 0
        while not stop.is_set():
            ok, frame = source.capture.read()
            item = (index, frame) if ok else None
            if source.live and item is not None:
                _replace(frames, item)
            else:
                _put(frames, item, stop)
            if item is None:
                return
            index += 1

    thread = threading.Thread(target=decode, name="video-decode", daemon=True)
    thread.start()
    try:
        while (item := frames.get()) is not None:
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
        source.capture.release()


def _replace(frames: queue.Queue, item: tuple) -> None:
    """Put item in a one-slot queue, dropping the stale frame that waits there."""
    try:
        frames.get_nowait()
    except queue.Empty:
        pass
    frames.put(item)


def _put(frames: queue.Queue, item: tuple | None, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            frames.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


@dataclass
class Track:
    """One face followed from frame to frame, and who it is.

    A track is identified by the mean of its last few encodings: frames of a moving face vary
    the way jitters do, so the mean is steadier than any one frame. Its name changes only when
    two identifications in a row agree on the new one, so a single odd frame does not flicker.
    """

    id: int
    box: faces.Box
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    encoded_time: float = -1e9
    encodings: deque = field(default_factory=lambda: deque(maxlen=POOLED))
    name: str | None = None
    confidence: float | None = None
    announced: bool = False
    challenger: tuple | None = None  # a different decision waiting for a second one

    def pooled(self, encoding: np.ndarray) -> np.ndarray:
        """Add one encoding; return the mean of the recent ones."""
        self.encodings.append(encoding)
        return np.mean(self.encodings, axis=0)

    def decide(self, name: str | None, confidence: float | None) -> bool:
        """Take one identification; return whether the track's name changed."""
        if not self.announced or name == self.name:
            self.name, self.confidence, self.challenger = name, confidence, None
            return False
        if self.challenger is None or self.challenger[0] != name:
            self.challenger = (name, confidence)
            return False
        self.name, self.confidence, self.challenger = name, confidence, None
        return True


@dataclass(frozen=True)
class Plan:
    """How a video is watched: the detection scale and interval."""

    scale: float
    every: int


def choose(source: Source, scale: float | None, every: int | None) -> Plan:
    """Fill in automatic choices: detect at DETECT_SIDE pixels, DETECTIONS_PER_SECOND times a
    second of video.

    :raises InvalidParameter: a scale or interval out of range
    """
    from .errors import InvalidParameter

    if scale is not None and not 0.1 <= scale <= 4:
        raise InvalidParameter("scale", "must be 0.1 to 4")
    if every is not None and not 1 <= every <= 300:
        raise InvalidParameter("every", "must be 1 to 300")
    auto_scale = min(1.0, DETECT_SIDE / max(source.width, source.height))
    auto_every = max(1, round(source.fps / DETECTIONS_PER_SECOND))
    return Plan(scale or auto_scale, every or auto_every)


class Watcher:
    """Turns frames and their detections into appear / change / leave events."""

    def __init__(self, service: FaceService, fps: float, tolerance: float | None) -> None:
        self.service, self.fps, self.tolerance = service, fps, tolerance
        self.tracks: dict[int, Track] = {}
        self.next_id = 1
        self.seen: set[str] = set()
        self.count = 0

    def update(self, index: int, when: float, rgb: np.ndarray,
               boxes: list[faces.Box]) -> list[dict]:
        """Match a key frame's detections to the tracks, identify, and report the changes."""
        events = []
        unmatched = self._associate(boxes, index, when)
        for box in unmatched:
            self.tracks[self.next_id] = Track(self.next_id, box, index, when, index, when)
            self.next_id += 1
        due = [t for t in self.tracks.values() if t.last_time == when
               and (t.name is None or when - t.encoded_time >= REIDENTIFY_SECONDS)]
        events += self._identify(due, index, when, rgb)
        for track in [t for t in self.tracks.values() if when - t.last_time > LEAVE_SECONDS]:
            events.append(self._leave(track))
        return events

    def finish(self) -> list[dict]:
        """Every track still open leaves at the end of the video."""
        return [self._leave(track) for track in list(self.tracks.values())]

    def _associate(self, boxes: list[faces.Box], index: int, when: float) -> list[faces.Box]:
        """Continue tracks with the detections that overlap them most; return the rest."""
        pairs = sorted(((box.overlap(track.box), i, track.id)
                        for i, box in enumerate(boxes) for track in self.tracks.values()),
                       reverse=True)
        used_boxes, used_tracks = set(), set()
        for overlap, i, track_id in pairs:
            if overlap < MATCH_OVERLAP or i in used_boxes or track_id in used_tracks:
                continue
            track = self.tracks[track_id]
            track.box, track.last_frame, track.last_time = boxes[i], index, when
            used_boxes.add(i)
            used_tracks.add(track_id)
        return [box for i, box in enumerate(boxes) if i not in used_boxes]

    def _identify(self, due: list[Track], index: int, when: float,
                  rgb: np.ndarray) -> list[dict]:
        events = []
        for track, encoding in zip(due, faces.encode(rgb, [t.box for t in due])):
            match = self.service.identify(track.pooled(encoding), self.tolerance, top_k=1)
            track.encoded_time = when
            changed = track.decide(match.name, match.confidence)
            if not track.announced:
                track.announced = True
                events.append(self._event("appear", track, index, when))
            elif changed:
                events.append(self._event("change", track, index, when))
            if track.name:
                self.seen.add(track.name)
        return events

    def _leave(self, track: Track) -> dict:
        del self.tracks[track.id]
        event = self._event("leave", track, track.last_frame, track.last_time)
        event["duration"] = round(track.last_time - track.first_time + 1 / self.fps, 3)
        return event

    def _event(self, kind: str, track: Track, index: int, when: float) -> dict:
        return {"event": kind, "track": track.id, "name": track.name,
                "confidence": track.confidence, "frame": index, "time": round(when, 3),
                "box": asdict(track.box)}


def watch(service: FaceService, source: str, scale: float | None = None,
          every: int | None = None, tolerance: float | None = None,
          output: str | None = None) -> Iterator[dict]:
    """Recognise the faces in a video source; yield events as they happen, then a summary.

    Events: ``appear`` (a new face track, with name or None, confidence, track, frame, time and
    box), ``change`` (a track's identity changed), ``leave`` (with its duration), and last
    ``summary`` (frames, seconds, fps, people seen).

    :param scale: resize frames by this for detection (default: longest side 640)
    :param every: detect every this many frames (default: about 6 times a second)
    :param output: write an annotated copy of the video here (same frames, boxes and names)
    :raises VideoUnavailable: the source cannot be opened or the output not written
    """
    opened = open_source(source)
    chosen = choose(opened, scale, every)
    writer = _writer(output, opened) if output else None
    started, stop = time.monotonic(), threading.Event()
    watcher, frames, index = Watcher(service, opened.fps, tolerance), 0, 0
    try:
        try:
            for index, frame, rgb, boxes in _detected(opened, chosen, service, stop):
                frames += 1
                when = index / opened.fps if not opened.live else time.monotonic() - started
                if boxes is not None:
                    yield from watcher.update(index, when, rgb, boxes)
                if writer is not None:
                    writer.write(_annotate(frame, watcher.tracks.values()))
        except KeyboardInterrupt:  # Ctrl-C ends a live source: close the tracks, summarise
            log.info("interrupted")
        yield from watcher.finish()
    finally:
        stop.set()
        if writer is not None:
            writer.release()
    yield _summary(frames, time.monotonic() - started, watcher)


def _detected(source: Source, chosen: Plan, service: FaceService,
              stop: threading.Event) -> Iterator[tuple]:
    """(index, BGR frame, RGB frame or None, boxes or None) in order; key frames are detected
    by two threads, up to two key frames ahead of the caller."""
    model, upsample = service.settings.model, service.settings.upsample

    def detect(frame: np.ndarray) -> tuple[np.ndarray, list[faces.Box]]:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return rgb, faces.detect_scaled(rgb, chosen.scale, model, upsample)

    pending: deque[tuple[int, np.ndarray, Future | None]] = deque()
    last_key = -chosen.every
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="video-detect") as pool:
        for index, frame in read_frames(source, stop):
            key = index - last_key >= chosen.every  # live sources skip the frames they drop
            last_key = index if key else last_key
            pending.append((index, frame, pool.submit(detect, frame) if key else None))
            while len(pending) > 2 * chosen.every:
                yield _resolve(pending.popleft())
        while pending:
            yield _resolve(pending.popleft())


def _resolve(item: tuple[int, np.ndarray, Future | None]) -> tuple:
    index, frame, future = item
    if future is None:
        return index, frame, None, None
    rgb, boxes = future.result()
    return index, frame, rgb, boxes


def _writer(output: str, source: Source) -> cv2.VideoWriter:
    path = Path(output)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, source.fps, (source.width, source.height))
    if not writer.isOpened():
        source.capture.release()
        raise VideoUnavailable("output_unwritable", field="output")
    return writer


def _annotate(frame: np.ndarray, tracks) -> np.ndarray:
    """Draw each track's box and name (or "unknown") on the frame."""
    for track in tracks:
        box = track.box
        colour = (0, 200, 0) if track.name else (0, 0, 230)
        cv2.rectangle(frame, (box.left, box.top), (box.right, box.bottom), colour, 2)
        label = track.name or "unknown"
        cv2.putText(frame, label, (box.left, max(12, box.top - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, colour, 1, cv2.LINE_AA)
    return frame


def names_by_frame(events: list[dict], frames: int) -> list[set]:
    """For each frame, the names of the faces on screen (None for an unknown face), rebuilt
    from watch's events: a track holds its name from each event to the next."""
    tracks: dict[int, list[dict]] = {}
    for event in events:
        if event["event"] in ("appear", "change", "leave"):
            tracks.setdefault(event["track"], []).append(event)
    on_screen: list[set] = [set() for _ in range(frames)]
    for track_events in tracks.values():
        for current, following in zip(track_events, track_events[1:]):
            end = following["frame"] + (following["event"] == "leave")
            for frame in range(current["frame"], min(end, frames)):
                on_screen[frame].add(current["name"])
    return on_screen


def _summary(frames: int, seconds: float, watcher: Watcher) -> dict:
    return {"event": "summary", "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 2) if seconds > 0 else None,
            "tracks": watcher.next_id - 1, "people": sorted(watcher.seen)}
