"""Untrusted video clips (an enrolment's upload, a local file) decoded into sampled RGB frames,
by FFmpeg (the one imageio-ffmpeg ships) in a process of its own with hard limits, so that no
clip can pin a worker's CPU or memory, or make FFmpeg read anything but the clip.

- The bytes stay in memory: FFmpeg reads them from an anonymous in-memory file (memfd), which
  it can seek in (an MP4's index is often at its end), and writes frames to a pipe.
- Only the containers (MP4/QuickTime, Matroska/WebM) and video codecs that phones, cameras
  and browsers record are read; only the ``file`` protocol is allowed (no network, no
  playlists reaching out), an MP4's references to other files (drefs) stay off (FFmpeg's
  default), and the process may write no file (RLIMIT_FSIZE 0).
- CPU time (RLIMIT_CPU), address space (RLIMIT_AS) and wall-clock time are bounded (``Budget``),
  as are the seconds read (``limits.VIDEO_SECONDS``), the frames kept (``SAMPLE_FPS`` a second)
  and their size (``MAX_SIDE``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from .errors import InvalidParameter, UnsupportedVideo, VideoTooComplex, VideoTooLarge

log = logging.getLogger(__name__)
SAMPLE_FPS = 5  # frames looked at per second of video
MAX_SIDE = 960  # frames are shrunk to at most this many pixels across (never enlarged)
FORMATS = "mov,matroska,webm"  # FFmpeg's demuxers: MP4, QuickTime, 3GP; Matroska, WebM
CODECS = "h264,hevc,vp8,vp9,av1,mpeg4,mjpeg,prores"
# How a video file begins: an ISO media box (MP4, QuickTime, 3GP: "ftyp", or an old file's
# "moov", "mdat", "wide", "free", "skip") at byte 4, or Matroska's EBML header.
_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
_EBML = b"\x1a\x45\xdf\xa3"
# ISO media brands of still images (AVIF, HEIF/HEIC), which are not clips.
_STILL_BRANDS = (b"avif", b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis")


@dataclass(frozen=True)
class Budget:
    """What decoding one clip may cost."""

    cpu_seconds: int = 30  # CPU time (RLIMIT_CPU)
    memory_bytes: int = 2 << 30  # address space (RLIMIT_AS)
    seconds: float = 90.0  # wall clock, frames read by the caller included


@dataclass(frozen=True)
class Clip:
    """A clip's bytes (decoded only when used), where it came from, and their SHA-256."""

    data: bytes
    source: str
    digest: str


def from_request(video: object, max_bytes: int, *images: object) -> Clip:
    """The clip of an HTTP request: an uploaded file (a multipart part named ``video``, or a
    raw ``video/*`` body); no image besides.

    :param images: the request's image fields (image_url, image, image_base64)
    :raises InvalidParameter: ``several_images`` (an image too), ``not_a_video_upload``
    :raises VideoTooLarge: over max_bytes
    """
    if any(image is not None for image in images):
        raise InvalidParameter("video", "several_images", "give a video or an image, not both")
    if not isinstance(video, bytes):
        raise InvalidParameter("video", "not_a_video_upload",
                               "a multipart file, or a raw video/* body")
    return _clip(video, max_bytes, "video")


def from_path(path: str | Path, max_bytes: int) -> Clip:
    """A local clip (CLI only); its source is a hash of its bytes.

    :raises InvalidParameter: ``no_such_file``, ``not_a_file``, ``unreadable`` (field ``path``)
    :raises VideoTooLarge: over max_bytes
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise InvalidParameter("path", "not_a_file" if path.exists() else "no_such_file")
        if path.stat().st_size > max_bytes:
            raise VideoTooLarge(f"bytes: at most {max_bytes}", "path")
        return _clip(path.read_bytes(), max_bytes, "path")
    except OSError:
        raise InvalidParameter("path", "unreadable") from None


def _clip(data: bytes, max_bytes: int, field: str) -> Clip:
    if len(data) > max_bytes:
        raise VideoTooLarge(f"bytes: at most {max_bytes}", field)
    digest = hashlib.sha256(data).hexdigest()
    return Clip(data, f"sha256:{digest}", digest)


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its number among the samples, its time in the clip, RGB pixels."""

    index: int
    time: float
    pixels: np.ndarray


def looks_like_video(data: bytes) -> bool:
    """Whether bytes begin as an MP4/QuickTime or Matroska/WebM file does (not as an AVIF or
    HEIF still image, which are ISO media files too)."""
    if data[4:8] == b"ftyp" and data[8:12] in _STILL_BRANDS:
        return False
    return data[4:8] in _BOXES or data[:4] == _EBML


def frames(data: bytes, max_seconds: float, budget: Budget = Budget()) -> Iterator[Frame]:
    """Decode a clip's first max_seconds into SAMPLE_FPS frames a second, at most MAX_SIDE
    pixels across, as they come.

    :raises UnsupportedVideo: not a clip in a container and codec read here, or no frame in it
    :raises VideoTooComplex: decoding took more CPU time, memory or time than the budget
    """
    if not looks_like_video(data):
        raise UnsupportedVideo()
    memory = os.memfd_create("facerec-clip", os.MFD_CLOEXEC)
    try:
        _write_all(memory, data)
        yield from _decoded(memory, max_seconds, budget)
    finally:
        os.close(memory)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]
    os.lseek(descriptor, 0, os.SEEK_SET)


def _decoded(memory: int, max_seconds: float, budget: Budget) -> Iterator[Frame]:
    process = subprocess.Popen(_command(memory, max_seconds, budget), pass_fds=(memory,),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    watchdog, messages = threading.Timer(budget.seconds, expire), bytearray()
    watchdog.start()
    reader = threading.Thread(target=_drain, args=(process.stderr, messages), daemon=True)
    reader.start()
    count = 0
    try:
        while (pixels := _read_ppm(process.stdout)) is not None:
            yield Frame(count, round(count / SAMPLE_FPS, 3), pixels)
            count += 1
        process.wait()
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        reader.join(5)
    _check(process.returncode, count, expired.is_set(), bytes(messages), budget)


def _check(code: int, count: int, expired: bool, messages: bytes, budget: Budget) -> None:
    """Raise the error a finished FFmpeg's exit code and frame count amount to."""
    if expired:
        raise VideoTooComplex(f"time: decoding took over {budget.seconds:g} s")
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        raise VideoTooComplex(f"cpu: decoding took over {budget.cpu_seconds} s of CPU time")
    if b"Cannot allocate memory" in messages or code in (-signal.SIGSEGV, -signal.SIGABRT):
        raise VideoTooComplex(f"memory: decoding needed more than {budget.memory_bytes >> 20}"
                              " MiB")
    if not count:
        raise UnsupportedVideo()


def _drain(stream: BinaryIO, into: bytearray) -> None:
    """Keep the last few kilobytes of FFmpeg's messages (never logged: they may name things
    in the clip)."""
    for line in stream:
        into += line
        del into[:-8192]
    stream.close()


def _command(memory: int, max_seconds: float, budget: Budget) -> list[str]:
    import imageio_ffmpeg

    scale = (f"fps={SAMPLE_FPS},scale='min({MAX_SIDE},iw)':'min({MAX_SIDE},ih)'"
             ":force_original_aspect_ratio=decrease")
    limits = [] if shutil.which("prlimit") is None else [
        "prlimit", f"--cpu={budget.cpu_seconds}", f"--as={budget.memory_bytes}", "--fsize=0",
        "--core=0", "--"]
    if not limits:
        log.warning("prlimit (util-linux) is missing: a clip is decoded with a deadline only")
    return limits + [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-threads", "2", "-protocol_whitelist", "file", "-format_whitelist", FORMATS,
        "-codec_whitelist", CODECS, "-t", f"{max_seconds:g}",
        "-i", f"/proc/self/fd/{memory}", "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", scale,
        "-frames:v", str(int(max_seconds * SAMPLE_FPS) + 1), "-f", "image2pipe",
        "-c:v", "ppm", "pipe:1"]


def _read_ppm(stream: BinaryIO) -> np.ndarray | None:
    """The next binary PPM (P6, 8-bit) frame of a stream as RGB pixels, or None at its end."""
    header = b""
    while header.count(b"\n") < 3:
        byte = stream.read(1)
        if not byte or len(header) > 32:
            return None
        header += byte
    fields = header.split()
    if len(fields) != 4 or fields[0] != b"P6" or fields[3] != b"255":
        return None
    width, height = int(fields[1]), int(fields[2])
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        return None
    data = stream.read(width * height * 3)
    if len(data) != width * height * 3:
        return None
    return np.frombuffer(data, np.uint8).reshape(height, width, 3).copy()
