"""The annotated copy of a watched video, in a form browsers play: H.264 with AAC audio in MP4
(or Matroska, QuickTime), VP9 with Opus in WebM. Frames go to the FFmpeg that the
imageio-ffmpeg package ships (OpenCV's own writer has no H.264), and the audio is taken from
the source file when it has any."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from .errors import VideoUnavailable

# Container by file suffix: (video codec and its options, audio codec).
FORMATS = {
    ".mp4": (["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"],
             "aac"),
    ".m4v": (["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"],
             "aac"),
    ".mov": (["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"], "aac"),
    ".mkv": (["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"], "aac"),
    ".webm": (["-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "33", "-deadline", "realtime",
               "-cpu-used", "8", "-row-mt", "1"], "libopus"),
}


class AnnotatedVideo:
    """Writes BGR frames of one size and rate to a playable video file, with the audio of
    ``audio_from`` (a local file) if it has an audio stream."""

    def __init__(self, output: str | Path, width: int, height: int, fps: float,
                 audio_from: str | None = None) -> None:
        """
        :raises VideoUnavailable: ``output_unwritable``: not a known suffix (see FORMATS), a
            folder that does not exist, or FFmpeg cannot start
        """
        import imageio_ffmpeg

        path = Path(output)
        if path.suffix.lower() not in FORMATS or not path.parent.is_dir():
            raise VideoUnavailable("output_unwritable", field="output",
                                   detail="a .mp4, .m4v, .mov, .mkv or .webm file in a folder"
                                   " that exists")
        video, audio = FORMATS[path.suffix.lower()]
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-nostdin", "-y",
                   "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
                   "-r", f"{fps:.6g}", "-i", "pipe:0"]
        if audio_from is not None:
            command += ["-i", audio_from, "-map", "0:v:0", "-map", "1:a:0?", "-c:a", audio]
        command += [*video, "-pix_fmt", "yuv420p", "-shortest", str(path)]
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                             stderr=subprocess.PIPE)
        except OSError:
            raise VideoUnavailable("output_unwritable", field="output") from None
        self._shape = (height, width, 3)

    def write(self, frame: np.ndarray) -> None:
        """Add one frame.

        :raises VideoUnavailable: ``output_unwritable``: FFmpeg stopped (a full disk, say)
        """
        if frame.shape != self._shape:
            raise ValueError(f"a frame of {frame.shape}, not {self._shape}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, ValueError):
            self.close()
            raise VideoUnavailable("output_unwritable", field="output") from None

    def close(self) -> None:
        """Finish the file.

        :raises VideoUnavailable: ``output_unwritable``: FFmpeg could not finish it
        """
        if self._process.stdin.closed:
            return
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        if self._process.wait() != 0:
            raise VideoUnavailable("output_unwritable", field="output")
