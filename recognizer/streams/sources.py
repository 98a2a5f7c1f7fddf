"""Stream sources: a camera on this host ("0") or a URL (rtsp://, rtsps://, http://, https://,
for RTSP, MJPEG or a video), checked against FACEREC_STREAM_NETWORKS when it is defined and
again, on the address actually connected to, every time it is opened (see ``relay``).

A source's credentials (``rtsp://user:password@camera/...``, or a password in its query) are
stored as given, for connecting, but never logged and never shown: ``masked`` hides them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import DestinationNotAllowed
from ..networks import Blocked, Networks
from .relay import Relay, Target

SCHEMES = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
MAX_SOURCE_LENGTH = 2048
MAX_CAMERA = 63  # /dev/video0 .. /dev/video63


@dataclass(frozen=True)
class Source:
    """A parsed source: a local camera's index, or a URL's parts."""

    text: str
    camera: int | None = None
    scheme: str = ""
    host: str = ""
    port: int = 0

    @property
    def protocol(self) -> str:
        """rtsp or http, whatever the transport's security."""
        return "rtsp" if self.scheme.startswith("rtsp") else "http"


def parse(text: str) -> Source:
    """Parse a source as the API takes it.

    :raises DestinationNotAllowed: ``invalid_destination``, saying what is wrong
    """
    if not isinstance(text, str) or not text or len(text) > MAX_SOURCE_LENGTH:
        raise _invalid(f"a camera index or a URL of at most {MAX_SOURCE_LENGTH} characters")
    if re.fullmatch(r"[0-9]{1,2}", text):
        if int(text) > MAX_CAMERA:
            raise _invalid(f"a camera index is 0 to {MAX_CAMERA}")
        return Source(text, camera=int(text))
    if any(ord(ch) < 33 or ch == "\\" or ord(ch) == 127 for ch in text):
        raise _invalid("no spaces, control characters or backslashes")
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise _invalid("not a URL") from None
    if parts.scheme.lower() not in SCHEMES or not host or "#" in text:
        raise _invalid("rtsp://, rtsps://, http:// or https:// with a host, and no #fragment")
    scheme = parts.scheme.lower()
    return Source(text, scheme=scheme, host=host, port=port or SCHEMES[scheme])


def _invalid(detail: str) -> DestinationNotAllowed:
    return DestinationNotAllowed("source", "invalid_destination", detail)


def masked(text: str) -> str:
    """The source as the API shows it: user and password, and every query value, hidden."""
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
    except ValueError:
        return "***"
    if not parts.scheme:
        return text  # a camera index
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query,
                                                            keep_blank_values=True)],
                      safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def pin(source: Source, networks: Networks, setting: str) -> str:
    """Resolve a URL source's host and return the address to connect to, if the rule allows
    every address it has.

    :param setting: the variable that lists the networks, for the error's detail
    :raises DestinationNotAllowed: ``destination_not_allowed``
    """
    try:
        return networks.resolve(source.host, source.port).strip("[]")
    except Blocked:
        raise DestinationNotAllowed(
            "source", "destination_not_allowed",
            f"it does not resolve to an address {setting} allows ({networks})") from None


def check(source: Source, networks: Networks) -> None:
    """Refuse a URL source outside FACEREC_STREAM_NETWORKS (a camera index is always fine).

    :raises DestinationNotAllowed: see ``pin``
    """
    if source.camera is None:
        pin(source, networks, "FACEREC_STREAM_NETWORKS")


def connect(source: Source, networks: Networks) -> tuple[str, Relay | None]:
    """What FFmpeg opens for a source, with the relay that carries it (None for a camera):
    the URL now points at the relay, which connects only to the checked address.

    :raises DestinationNotAllowed: the source resolves outside the networks now
    """
    if source.camera is not None:
        return str(source.camera), None
    address = pin(source, networks, "FACEREC_STREAM_NETWORKS")
    tls_name = source.host if source.scheme in ("rtsps", "https") else None
    relay = Relay(Target(address, source.port, tls_name, source.protocol))
    parts = urlsplit(source.text)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    local = urlunsplit((source.protocol, f"{userinfo}127.0.0.1:{relay.port}", parts.path,
                        parts.query, ""))
    return local, relay
