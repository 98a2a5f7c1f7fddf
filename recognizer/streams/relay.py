"""A loopback relay between FFmpeg and a camera, so that the camera's checked address is the only
place FFmpeg can reach.

FFmpeg follows RTSP and HTTP redirects by itself and resolves names by itself. The runner
resolves the camera's name once, checks the address against FACEREC_STREAM_NETWORKS, and gives
FFmpeg a ``rtsp://127.0.0.1:<port>/...`` (or ``http://``) URL of this relay instead, which
connects only to that address. The relay reads what the camera answers: a redirect (an RTSP or
HTTP 3xx, or an RTSP REDIRECT request) ends the connection instead of reaching FFmpeg. For
``rtsps://`` and ``https://`` the relay speaks TLS to the camera (checking its certificate
against the name) and plain text to FFmpeg, so that it can read the answers.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
_HEADERS_MAX = 64 * 1024  # an RTSP or HTTP header block larger than this ends the connection
_STATUS = re.compile(rb"(?:RTSP|HTTP)/\d\.\d\s+(\d{3})")


@dataclass(frozen=True)
class Target:
    """Where the relay connects: the checked address, its port, and for TLS the name."""

    address: str  # an IP address, IPv6 without brackets
    port: int
    tls_name: str | None  # the host name for TLS (SNI and certificate), or None: plain
    protocol: str  # "rtsp" or "http"


class Refused(Exception):
    """The camera answered with a redirect."""


class Relay:
    """Listens on 127.0.0.1, and joins each connection to the target; closed with the stream.

    ``error`` keeps the last reason a connection was ended (a refused redirect), for the
    stream's status.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        self.error: str | None = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="stream-relay", daemon=True).start()

    def close(self) -> None:
        """Stop listening and end every connection."""
        self._closed.set()
        with self._lock:
            for sock in list(self._sockets) + [self._listener]:
                _close(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._join, args=(client,), name="stream-relay-conn",
                             daemon=True).start()

    def _join(self, client: socket.socket) -> None:
        try:
            upstream = self._connect()
        except OSError as error:
            self.error = f"cannot connect: {type(error).__name__}"
            _close(client)
            return
        with self._lock:
            if self._closed.is_set():
                _close(client)
                _close(upstream)
                return
            self._sockets.update((client, upstream))
        threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True,
                         name="stream-relay-up").start()
        inspect = _rtsp_inspector() if self.target.protocol == "rtsp" else _http_inspector()
        self._pump(upstream, client, inspect)

    def _connect(self) -> socket.socket:
        target = self.target
        sock = socket.create_connection((target.address, target.port), CONNECT_TIMEOUT)
        sock.settimeout(None)
        if target.tls_name is None:
            return sock
        context = ssl.create_default_context()
        try:
            tls = context.wrap_socket(sock, server_hostname=target.tls_name)
        except (OSError, ssl.SSLError):
            sock.close()
            raise
        return tls

    def _pump(self, source: socket.socket, sink: socket.socket, inspect) -> None:
        """Copy source to sink until either ends; an inspector sees every byte first."""
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk if inspect is None else inspect(chunk))
        except Refused as refused:
            self.error = str(refused)
            log.warning("stream source refused: %s", refused)
        except OSError:
            pass
        finally:
            with self._lock:
                for sock in (source, sink):
                    self._sockets.discard(sock)
                    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _refuse_redirect(head: bytes) -> None:
    line = head.split(b"\r\n", 1)[0]
    status = _STATUS.match(line)
    if (status and status[1].startswith(b"3")) or line.startswith(b"REDIRECT "):
        raise Refused("the camera answered with a redirect, which is never followed")


def _http_inspector():
    """Checks the status line of the (one) HTTP response on a connection: FFmpeg makes one
    request per connection."""
    state = {"head": b"", "checked": False}

    def inspect(chunk: bytes) -> bytes:
        if not state["checked"]:
            state["head"] += chunk
            if b"\r\n" not in state["head"]:
                if len(state["head"]) > _HEADERS_MAX:
                    raise Refused("the camera's answer has no status line")
                return b""
            _refuse_redirect(state["head"])
            state["checked"] = True
            chunk, state["head"] = state["head"], b""
        return chunk

    return inspect


def _rtsp_inspector():
    """Follows the RTSP conversation: interleaved binary packets ($, channel, length) pass;
    each text message's first line is checked before it passes."""
    pending = bytearray()

    def inspect(chunk: bytes) -> bytes:
        pending.extend(chunk)
        passed = bytearray()
        while pending:
            if pending[0] == 0x24:  # "$": an interleaved RTP/RTCP packet
                if len(pending) < 4:
                    break
                size = 4 + int.from_bytes(pending[2:4], "big")
            else:
                end = pending.find(b"\r\n\r\n")
                if end < 0:
                    if len(pending) > _HEADERS_MAX:
                        raise Refused("the camera's answer has no end of headers")
                    break
                head = bytes(pending[:end])
                _refuse_redirect(head)
                length = re.search(rb"(?im)^content-length:\s*(\d{1,9})\s*$", head)
                size = end + 4 + (int(length[1]) if length else 0)
            if len(pending) < size:
                break
            passed += pending[:size]
            del pending[:size]
        return bytes(passed)

    return inspect
