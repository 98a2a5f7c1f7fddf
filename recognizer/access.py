"""Who may call the HTTP API: API keys with scopes, and a rate limit per key. Pure Python.

Keys come from FACEREC_API_KEYS (``key:scope`` entries separated by commas) and/or a key file
(FACEREC_API_KEYS_FILE: one ``key:scope`` per line, ``#`` comments). Each route declares the
scope it needs beside its definition (api.py): a ``read`` key may recognise and list people;
an ``admin`` key may also enrol, rename and delete. Keys are compared in
constant time: every stored key is compared, as a SHA-256 digest, whatever the presented key
looks like.
With no keys at all the service is open, and says so once at start-up.

The rate limit is a token bucket per key (per client address when the service is open):
``rate`` requests a second on average, bursts of up to ``burst``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import Forbidden, RateLimited, Unauthorized

SCOPES = ("read", "admin")
QUERY_KEY_NAMES = frozenset({"api_key", "apikey", "key", "x-api-key", "x_api_key", "token"})
BUCKETS_KEPT = 10_000  # clients remembered by the rate limiter; the least recent are forgotten


@dataclass(frozen=True)
class Key:
    """One API key, kept as its SHA-256 digest, and its scope."""

    digest: bytes
    scope: str

    @property
    def label(self) -> str:
        """A short, non-secret name for the key (for rate-limit buckets)."""
        return "key:" + self.digest.hex()[:12]


def parse_keys(text: str) -> tuple[Key, ...]:
    """Parse ``key:scope`` entries separated by commas or new lines (``#`` starts a comment).

    :raises ValueError: an entry without a key, with an unknown scope, or a key given twice;
        the message never contains the key itself
    """
    keys: dict[bytes, Key] = {}
    entries = [entry.split("#", 1)[0].strip() for line in text.splitlines()
               for entry in line.split(",")]
    for number, entry in enumerate((entry for entry in entries if entry), start=1):
        secret, _, scope = entry.rpartition(":")
        if not secret or scope not in SCOPES:
            raise ValueError(f"entry {number} is not key:read or key:admin")
        digest = _digest(secret)
        if digest in keys:
            raise ValueError(f"entry {number} repeats a key")
        keys[digest] = Key(digest, scope)
    return tuple(keys.values())


def read_key_file(path: Path) -> tuple[Key, ...]:
    """The keys in a key file.

    :raises ValueError: the file cannot be read, or holds a malformed entry
    """
    try:
        return parse_keys(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read the key file: {error.strerror}") from None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class TokenBuckets:
    """A token bucket per client, refilled at ``rate`` tokens a second up to ``burst``."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one token; return 0 if there was one, else the seconds until there is."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if not wait else tokens, now)
            while len(self._buckets) > BUCKETS_KEPT:
                self._buckets.popitem(last=False)
            return wait


class Gate:
    """Decides whether an HTTP request may go ahead: its key, its scope, its rate."""

    def __init__(self, keys: tuple[Key, ...], rate: float, burst: int) -> None:
        self.keys = keys
        self.buckets = TokenBuckets(rate, burst) if rate > 0 else None

    @property
    def open(self) -> bool:
        """True when no keys are configured: anybody may call every endpoint."""
        return not self.keys

    def check(self, needed: str | None, presented: str | None, query: set[str],
              client: str) -> None:
        """Let the request through, or raise.

        :param needed: the scope the route declares, None for an open route
        :param presented: the X-API-Key header, if any
        :param query: the names of the query-string parameters (a key there is refused)
        :param client: the caller's address, the rate-limit bucket when the service is open
        :raises Unauthorized: missing_api_key, invalid_api_key or api_key_in_query
        :raises Forbidden: insufficient_scope
        :raises RateLimited: over the rate limit
        """
        if {name.lower() for name in query} & QUERY_KEY_NAMES:
            raise Unauthorized("api_key_in_query")
        if needed is None:
            return
        label = client
        if not self.open:
            key = self._lookup(presented)
            if needed == "admin" and key.scope != "admin":
                raise Forbidden()
            label = key.label
        if self.buckets is not None and (wait := self.buckets.take(label)) > 0:
            raise RateLimited(math.ceil(wait))

    def _lookup(self, presented: str | None) -> Key:
        if not presented:
            raise Unauthorized("missing_api_key")
        digest, found = _digest(presented), None
        for key in self.keys:  # every key is compared, so the time says nothing about which
            if hmac.compare_digest(key.digest, digest):
                found = key
        if found is None:
            raise Unauthorized("invalid_api_key")
        return found
