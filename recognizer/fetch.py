"""Fetch an image over http(s) so that a URL can reach only the public internet.

The host is resolved once per connection, every address it resolves to is checked, and the
connection goes to the checked address (the "pin"), so alternate spellings of an IP, DNS
rebinding and redirects to internal hosts all meet the same check. Proxies and .netrc from the
environment are ignored, redirects are followed by hand (at most 3, each re-checked), and the
body is read under a byte cap and a total deadline.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import parse_url

from .errors import FetchFailed, ImageTooLarge, UrlNotAllowed
from .networks import ALWAYS_DENIED, DENIED, PRIVATE, Address, Blocked, Networks  # noqa: F401

log = logging.getLogger(__name__)
# urllib3 logs each request line, query string included, at DEBUG: image URLs carry tokens.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

MAX_URL_LENGTH = 2048
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024


class _BlockedAddress(requests.ConnectionError):
    """The host resolved to an address the policy forbids."""


def _rule(allow_private: bool | Networks) -> Networks:
    return allow_private if isinstance(allow_private, Networks) else Networks.for_images(
        allow_private)


def address_allowed(address: Address, allow_private: bool | Networks = False) -> bool:
    """Whether the service may connect to this address.

    :param allow_private: also allow loopback and private ranges (development and tests), or
        the rule to apply (``networks.Networks``)
    """
    return _rule(allow_private).allows(address)


def resolve(host: str, port: int, allow_private: bool | Networks) -> str:
    """Resolve host and return the address to connect to, if every address it has is allowed.

    :raises _BlockedAddress: the name does not resolve, or resolves to a forbidden address
    """
    try:
        return _rule(allow_private).resolve(host, port)
    except Blocked as error:
        raise _BlockedAddress(str(error)) from None


class _Deadline:
    """Shuts down every socket of one fetch when its total deadline passes, so that a server
    dripping its TLS handshake or headers cannot hold the request past it."""

    def __init__(self, seconds: float) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._expired = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self._expired:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_running = threading.local()  # the _Deadline of the fetch running on this thread


class _DeadlineConnection:
    def _new_conn(self):
        sock = super()._new_conn()
        deadline = getattr(_running, "deadline", None)
        if deadline is not None:
            deadline.watch(sock)
        return sock


class _HTTPConnection(_DeadlineConnection, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """Connect to the checked address, keeping the Host header, SNI and certificate name."""

    def __init__(self, allow_private: bool | Networks) -> None:
        super().__init__(max_retries=0)
        self.allow_private = allow_private

    def init_poolmanager(self, *args, **kwargs):
        """Connections whose sockets the fetch's deadline can shut down."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        """Swap the hostname for its checked address; requests calls this for every connection."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        host, port = host_params["host"], host_params["port"]
        scheme = host_params["scheme"]
        request.headers = CaseInsensitiveDict(request.headers or {})
        request.headers["Host"] = parse_url(request.url).netloc  # the name, not the pinned IP
        if scheme == "https":
            pool_kwargs["assert_hostname"] = host
            pool_kwargs["server_hostname"] = host
        host_params["host"] = resolve(host, port or (443 if scheme == "https" else 80),
                                      self.allow_private)
        return host_params, pool_kwargs


def check_url(url: str) -> None:
    """Refuse URLs that are not plain http(s) to a named host.

    :raises UrlNotAllowed: wrong scheme, userinfo, no host, control characters, too long
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UrlNotAllowed()
    if any(ord(ch) < 33 or ch == "\\" or ord(ch) == 127 for ch in url):
        raise UrlNotAllowed()
    try:
        parts = parse_url(url)
    except ValueError:
        raise UrlNotAllowed() from None
    if parts.scheme not in ("http", "https") or not parts.host or parts.auth is not None:
        raise UrlNotAllowed()
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:  # an empty userinfo too ("http://@host/"), which parse_url drops
        raise UrlNotAllowed()


def fetch(url: str, *, max_bytes: int, timeout: float,
          allow_private: bool | Networks = False) -> bytes:
    """Download the body at url, following at most 3 redirects.

    :param max_bytes: largest body accepted
    :param timeout: total deadline in seconds, for all hops and the whole body
    :raises UrlNotAllowed: the URL itself is refused (no network access happens)
    :raises FetchFailed: any network outcome that yields no body
    :raises ImageTooLarge: the body is over max_bytes
    """
    check_url(url)
    deadline = time.monotonic() + timeout
    _running.deadline = watchdog = _Deadline(timeout)
    try:
        with session(allow_private) as pinned:
            for _hop in range(MAX_REDIRECTS + 1):
                body, location = _get(pinned, url, max_bytes, deadline)
                if location is None:
                    return body
                url = urljoin(url, location)
                try:
                    check_url(url)
                except UrlNotAllowed:
                    raise FetchFailed() from None
    finally:
        watchdog.cancel()
        _running.deadline = None
    log.info("fetch refused: more than %d redirects", MAX_REDIRECTS)
    raise FetchFailed()


def session(allow_private: bool | Networks) -> requests.Session:
    """A requests session that connects only where the rule allows, to the checked address."""
    pinned = requests.Session()
    pinned.trust_env = False  # no proxies, no .netrc from the environment
    adapter = PinnedAdapter(allow_private)
    pinned.mount("http://", adapter)
    pinned.mount("https://", adapter)
    return pinned


def _get(session, url: str, max_bytes: int, deadline: float) -> tuple[bytes, str | None]:
    """One hop: the body, or the redirect location."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchFailed()
    headers = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "facerec/1"}
    try:
        with session.get(url, headers=headers, stream=True, allow_redirects=False,
                         timeout=(min(3.0, remaining), min(5.0, remaining))) as response:
            if response.is_redirect:
                return b"", response.headers["location"]
            if response.status_code != 200:
                log.info("fetch failed: upstream status %d", response.status_code)
                raise FetchFailed()
            return _read_body(response, max_bytes, deadline), None
    except (requests.RequestException, Urllib3Error, OSError, ValueError) as error:
        log.info("fetch failed: %s", type(error).__name__)
        raise FetchFailed() from None


def _read_body(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """Read the raw body under the byte cap and the deadline; refuse encoded bodies."""
    if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise FetchFailed()
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageTooLarge("image_url", f"bytes: at most {max_bytes}")
    chunks, total = [], 0
    while True:
        if time.monotonic() > deadline:
            raise FetchFailed()
        chunk = response.raw.read1(_CHUNK, decode_content=False)
        if not chunk:
            if time.monotonic() > deadline:  # the deadline shut the socket: a cut-off body
                raise FetchFailed()
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise ImageTooLarge("image_url", f"bytes: at most {max_bytes}")
        chunks.append(chunk)
