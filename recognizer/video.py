"""Recognise faces in video (a file, a webcam, an RTSP or HTTP stream) as a stream of events.

Faster than the naive loop (detect and encode every face of every full-size frame) because:

- faces are **detected** only every few frames, on a resized copy, and **tracked** in between
  (``tracking``): a face is encoded when its track starts, then at every key frame while it is
  unknown and every second once it is named, and named by the mean of its recent encodings;
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages: quiet

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from . import faces, limits  # noqa: E402
from .annotated import AnnotatedVideo  # noqa: E402
from .errors import VideoUnavailable  # noqa: E402
from .service import FaceService  # noqa: E402
from .tracking import Watcher  # noqa: E402

log = logging.getLogger(__name__)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no V4L/FFmpeg chatter

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
DETECT_SIDE = 640  # automatic scale: detect on frames whose longest side is at most this
DETECTIONS_PER_SECOND = 6  # automatic interval: about this many detections per second of video


@dataclass(frozen=True)
class Source:
    """An opened video source.

    :ivar live: keep only the newest frame (a camera, or a stream of unknown length)
    :ivar paced: read no faster than the source's frame rate (a file played as a camera)
    """

    capture: cv2.VideoCapture
    live: bool
    fps: float
    width: int
    height: int
    paced: bool = False


def open_source(source: str, timeout: float | None = None) -> Source:
    """Open a video file, a webcam index ("0") or a stream URL (rtsp://, http://, ...).

    A webcam, or a stream whose length is unknown, is live: it keeps only its newest frame.
    A file, or a whole video served over HTTP, is read frame by frame.

    :param timeout: seconds a stream may take to open, and then to give each frame
    :raises VideoUnavailable: ``no_such_file``, ``not_a_video``, ``camera_unavailable`` or
        ``stream_unavailable``
    """
    waits = [] if timeout is None else [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(timeout * 1000),
                                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(timeout * 1000)]
    if source.isdigit():
        capture, problem = cv2.VideoCapture(int(source)), "camera_unavailable"
    elif source.lower().startswith(LIVE_SCHEMES):
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, waits)
        problem = "stream_unavailable"
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
        index, started = 0, time.monotonic()
        try:
            while not stop.is_set():
                if source.paced and (ahead := started + index / source.fps
                                     - time.monotonic()) > 0:
                    stop.wait(ahead)
                ok, frame = source.capture.read()
                if not ok:
                    return
                if source.live:
                    _replace(frames, (index, frame))
                else:
                    _put(frames, (index, frame), stop)
                index += 1
        finally:  # the end, or a stop: the reader is told either way, and loses no frame
            _put(frames, None, stop)  # (before a stop, when the reader is behind)
            if stop.is_set():
                _replace(frames, None)

    thread = threading.Thread(target=decode, name="video-decode", daemon=True)
    thread.start()
    try:
        while (item := frames.get()) is not None:
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
        source.capture.release()


def _replace(frames: queue.Queue, item: tuple | None) -> None:
    """Put item in the queue, dropping the oldest frame waiting there if it is full."""
    while True:
        try:
            frames.put_nowait(item)
            return
        except queue.Full:
            try:
                frames.get_nowait()
            except queue.Empty:
                pass


def _put(frames: queue.Queue, item: tuple | None, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            frames.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


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
    if scale is not None:
        limits.VIDEO_SCALE.check("scale", scale)
    if every is not None:
        limits.VIDEO_EVERY.check("every", every)
    auto_scale = min(1.0, DETECT_SIDE / max(source.width, source.height))
    auto_every = max(1, round(source.fps / DETECTIONS_PER_SECOND))
    return Plan(scale or auto_scale, every or auto_every)


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
    writer = _writer(output, opened, source) if output else None
    on_frame = None if writer is None else (
        lambda index, frame, tracks, key: writer.write(annotate(frame, tracks)))
    try:
        yield from follow(service, opened, chosen, tolerance, threading.Event(), on_frame,
                          network="://" in source)
    finally:
        if writer is not None:
            writer.close()


def follow(service: FaceService, opened: Source, chosen: Plan, tolerance: float | None,
           stop: threading.Event, on_frame: Callable | None = None,
           extras: Callable | None = None, network: bool = False) -> Iterator[dict]:
    """The events of an opened source until it ends or ``stop`` is set (or Ctrl-C): the tracks
    still open then leave, and a summary comes last.

    :param on_frame: called with (index, BGR frame, tracks, whether it was a key frame) for
        every frame, in order
    :param extras: adds fields to each event (see ``tracking.Watcher``)
    :param network: the source is a stream (for the error when it gives no frame)
    :raises VideoUnavailable: the source gave no frame at all
    """
    started, halt = time.monotonic(), _Halt(stop)
    watcher, frames, index, when = Watcher(service, opened.fps, tolerance, extras), 0, 0, 0.0
    try:
        try:
            for index, frame, rgb, boxes in _detected(opened, chosen, service, halt):
                frames += 1
                when = index / opened.fps if not opened.live else time.monotonic() - started
                if boxes is not None:
                    yield from watcher.update(index, when, rgb, boxes)
                if on_frame is not None:
                    on_frame(index, frame, watcher.tracks.values(), boxes is not None)
        except KeyboardInterrupt:  # Ctrl-C ends a live source: close the tracks, summarise
            log.info("interrupted")
        if not frames:  # opened, but nothing could be read: not a success
            raise VideoUnavailable("stream_unavailable" if opened.live or network
                                   else "not_a_video", detail="no frame could be read")
        when = index / opened.fps if not opened.live else time.monotonic() - started
        yield from watcher.finish(index, when)
    finally:
        halt.set()
    yield _summary(frames, time.monotonic() - started, watcher)


class _Halt:
    """Stops one reading of a source: when the caller's event is set, or this one's (which
    leaves the caller's alone)."""

    def __init__(self, outer: threading.Event) -> None:
        self.outer, self.inner = outer, threading.Event()

    def is_set(self) -> bool:
        return self.outer.is_set() or self.inner.is_set()

    def set(self) -> None:
        self.inner.set()

    def wait(self, timeout: float) -> bool:
        return self.outer.wait(timeout) or self.inner.is_set()


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


def _writer(output: str, source: Source, location: str) -> AnnotatedVideo:
    """The annotated copy's writer, with the source's audio when the source is a file."""
    audio = location if Path(location).is_file() else None
    try:
        return AnnotatedVideo(output, source.width, source.height, source.fps, audio)
    except VideoUnavailable:
        source.capture.release()
        raise


def annotate(frame: np.ndarray, tracks) -> np.ndarray:
    """Draw each track's box and name (or "unknown") on the frame."""
    for track in tracks:
        box = track.box
        colour = (0, 200, 0) if track.name else (0, 0, 230)
        cv2.rectangle(frame, (box.left, box.top), (box.right, box.bottom), colour, 2)
        label = track.name or "unknown"
        cv2.putText(frame, label, (box.left, max(12, box.top - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, colour, 1, cv2.LINE_AA)
    return frame


def jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """A BGR frame as JPEG bytes."""
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def snapshot(rgb: np.ndarray, box: faces.Box, side: int = 160) -> bytes | None:
    """A small JPEG of one face: its box and a margin around it, at most side pixels across
    (None when the box is outside the frame)."""
    height, width = rgb.shape[:2]
    margin = (box.bottom - box.top) // 4
    crop = rgb[max(0, box.top - margin):min(height, box.bottom + margin),
               max(0, box.left - margin):min(width, box.right + margin)]
    if crop.size == 0:
        return None
    scale = min(1.0, side / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)),
                                 max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return jpeg(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), 85)


def _summary(frames: int, seconds: float, watcher: Watcher) -> dict:
    return {"event": "summary", "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 2) if seconds > 0 else None,
            "tracks": watcher.next_id - 1, "people": sorted(watcher.seen)}
