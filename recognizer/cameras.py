"""Cameras on loopback, made from a video file, for the tests and the streams benchmark: an
MJPEG-over-HTTP camera (as most IP cameras serve) and an RTSP camera (FFmpeg encodes H.264 and
packs it into RTP; a small RTSP server hands the packets to the client, interleaved over its
TCP connection). Not used by the service.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import imageio_ffmpeg


def jpeg_frames(video: Path, quality: int = 80) -> tuple[list[bytes], float]:
    """Every frame of a video as JPEG bytes, and its frame rate."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
                      .tobytes())
    capture.release()
    return frames, fps


class MjpegCamera:
    """Serves a video's frames (or JPEG frames given) at ``/video`` as
    multipart/x-mixed-replace, in real time, from the first frame for each client; after
    ``loops`` passes the response ends (the camera stops). ``frames_served`` counts what it
    sent; ``marked`` keeps when each pass sent frame ``mark`` (a face appearing, say)."""

    def __init__(self, video: Path | None = None, loops: int = 1, fps: float | None = None,
                 frames: list[bytes] | None = None, mark: int | None = None) -> None:
        self.frames, native = (frames, 30.0) if frames is not None else jpeg_frames(video)
        self.fps, self.loops, self.mark = fps or native, loops, mark
        self.marked: list[float] = []
        self.frames_served = 0
        self.connections = 0
        self.stopped = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/video":
                    self.send_error(404)
                    return
                camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                camera._serve(self.wfile)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _serve(self, output) -> None:
        started, sent = time.monotonic(), 0
        try:
            for _ in range(self.loops):
                for index, frame in enumerate(self.frames):
                    if self.stopped.is_set():
                        return
                    delay = started + sent / self.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if index == self.mark:
                        self.marked.append(time.time())
                    output.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(frame)).encode() + b"\r\n\r\n" + frame + b"\r\n")
                    sent += 1
                    self.frames_served += 1
        except OSError:
            pass

    def close(self) -> None:
        """Stop serving: every client's response ends."""
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "MjpegCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RtspCamera:
    """An RTSP server at ``rtsp://127.0.0.1:<port>/live`` that plays a video (``loops`` times,
    in real time, H.264) to each client over its TCP connection (interleaved; a client asking
    for UDP is told to use TCP), then ends the session.

    :param redirect: answer DESCRIBE with 302 to this URL instead (a camera that redirects)
    :param credentials: (user, password) the camera asks for (Basic authentication)
    """

    def __init__(self, video: Path, loops: int = 1, redirect: str | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.video, self.loops, self.redirect = video, loops, redirect
        self.credentials = credentials
        self.sessions = 0
        self.requests: list[str] = []
        self.stopped = threading.Event()
        camera = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                camera._session(self.connection, self.rfile)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _session(self, connection: socket.socket, reader) -> None:
        streamer = None
        try:
            while not self.stopped.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                method, headers = request
                self.requests.append(method)
                answer, streamer = self._answer(method, headers, connection, streamer)
                connection.sendall(answer)
                if method == "PLAY" and streamer is not None:
                    self.sessions += 1
                    streamer.play(connection)
                    return
                if method == "TEARDOWN":
                    return
        except OSError:
            return
        finally:
            if streamer is not None:
                streamer.stop()

    def _answer(self, method: str, headers: dict, connection, streamer):
        cseq = headers.get("cseq", "0")
        base = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n"
        if self.credentials and method != "OPTIONS" and not _authorised(headers,
                                                                         self.credentials):
            return (f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\nWWW-Authenticate: Basic"
                    ' realm="camera"\r\n\r\n').encode(), streamer
        if method == "OPTIONS":
            return (base + "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN,"
                    " GET_PARAMETER\r\n\r\n").encode(), streamer
        if method == "DESCRIBE" and self.redirect:
            return (f"RTSP/1.0 302 Found\r\nCSeq: {cseq}\r\nLocation: {self.redirect}\r\n\r\n"
                    ).encode(), streamer
        if method == "DESCRIBE":
            streamer = streamer or _Streamer(self.video, self.loops)
            sdp = streamer.sdp()
            return (base + f"Content-Base: {self.url}/\r\nContent-Type: application/sdp\r\n"
                    f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp, streamer
        if method == "SETUP":
            if "TCP" not in headers.get("transport", ""):
                return f"RTSP/1.0 461 Unsupported Transport\r\nCSeq: {cseq}\r\n\r\n".encode(), \
                    streamer
            return (base + "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                    "Session: 4242;timeout=60\r\n\r\n").encode(), streamer
        if method in ("PLAY", "GET_PARAMETER", "TEARDOWN"):
            return (base + "Session: 4242\r\n\r\n").encode(), streamer
        return f"RTSP/1.0 405 Method Not Allowed\r\nCSeq: {cseq}\r\n\r\n".encode(), streamer

    def close(self) -> None:
        """Stop: every session ends."""
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "RtspCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_request(reader) -> tuple[str, dict] | None:
    """One RTSP request's method and headers (lower-case names); None at the end."""
    line = reader.readline(4096)
    while line in (b"\r\n", b"\n"):
        line = reader.readline(4096)
    if not line:
        return None
    method = line.split(b" ", 1)[0].decode("ascii", "replace")
    headers = {}
    while (header := reader.readline(4096)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        reader.read(length)
    return method, headers


def _authorised(headers: dict, credentials: tuple[str, str]) -> bool:
    import base64

    expected = base64.b64encode(":".join(credentials).encode()).decode()
    return headers.get("authorization", "") == f"Basic {expected}"


class _Streamer:
    """FFmpeg encoding the video to RTP packets on a UDP port of loopback, forwarded to the
    RTSP client as interleaved packets once it plays."""

    def __init__(self, video: Path, loops: int) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.5)
        self.folder = tempfile.mkdtemp(prefix="rtsp-camera-")
        sdp_file = Path(self.folder) / f"{secrets.token_hex(4)}.sdp"
        port = self.udp.getsockname()[1]
        self.process = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re",
             "-stream_loop", str(loops - 1), "-i", str(video), "-an", "-c:v", "libx264",
             "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p",
             "-f", "rtp", "-sdp_file", str(sdp_file), f"rtp://127.0.0.1:{port}?pkt_size=1400"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (sdp_file.exists() and sdp_file.stat().st_size) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.sdp_text = sdp_file.read_text() if sdp_file.exists() else ""

    def sdp(self) -> bytes:
        """The session's description, with the track's control URL."""
        text = re.sub(r"m=video \d+", "m=video 0", self.sdp_text)
        text = re.sub(r"c=IN IP4 \S+", "c=IN IP4 0.0.0.0", text)
        return (text.rstrip("\n").replace("\n", "\r\n") + "\r\na=control:trackID=0\r\n").encode()

    def play(self, connection: socket.socket) -> None:
        """Forward RTP packets until FFmpeg ends (the video is over) or the client goes."""
        while True:
            try:
                packet = self.udp.recv(65536)
            except socket.timeout:
                if self.process.poll() is not None:
                    return
                continue
            connection.sendall(b"$\x00" + len(packet).to_bytes(2, "big") + packet)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        self.udp.close()
        for path in Path(self.folder).iterdir():
            path.unlink()
        Path(self.folder).rmdir()
