"""Who may call the HTTP API: API keys with scopes, and a rate limit per key. Pure Python.

Keys come from FACEREC_API_KEYS (``key:scope`` entries separated by commas) and/or a key file
(FACEREC_API_KEYS_FILE: one ``key:scope`` per line, ``#`` comments). Each route declares the
scope it needs beside its definition (api.py): a ``read`` key may recognise and list people;
an ``admin`` key may also enrol, rename and delete. Keys are compared in
constant time: every stored key is compared, as a SHA-256 digest, whatever the presented key
looks like.
With no keys at all the service is open, and says so once at start-up.

The rate limit is a token bucket per key (per client address when the service is open):
``rate`` requests a second on average, bursts of up to ``burst``. The buckets live in a small
SQLite file in shared memory, so that every worker process of a host spends from the same
ones. A wrong key spends from the caller's address's own bucket (``failures`` at once, refilled
at ``FAILURES_RATE``): guessing keys soon gets 429, not 401. (No key at all spends nothing
there: browsers ask for /favicon.ico on their own.)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import sqlite3
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
FAILURES_RATE = 0.1  # failed authentications an address may make, after its burst, a second


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
    """A token bucket per client, refilled at ``rate`` tokens a second up to ``burst``, in
    this process's memory."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, spend: bool = True) -> float:
        """Spend one token (unless not spend); return 0 if there was one, else the seconds
        until there is."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            tokens, wait = _refill(tokens, now - then, self.rate, self.burst)
            self._buckets[client] = (tokens - 1 if not wait and spend else tokens, now)
            while len(self._buckets) > BUCKETS_KEPT:
                self._buckets.popitem(last=False)
            return wait


class SharedTokenBuckets:
    """The same buckets in a SQLite file, shared by every process of a host that opens it (the
    workers of a gunicorn): each take is one short transaction."""

    def __init__(self, path: str, kind: str, rate: float, burst: int) -> None:
        self.kind, self.rate, self.burst = kind, rate, burst
        self._db = sqlite3.connect(path, timeout=5, isolation_level=None,
                                   check_same_thread=False)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)  # which keys and addresses are active: the owner's only
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "busy_timeout=5000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE IF NOT EXISTS buckets (client TEXT PRIMARY KEY,"
                         " tokens REAL NOT NULL, at REAL NOT NULL)")
        self._lock = threading.Lock()
        self._takes = 0

    def take(self, client: str, spend: bool = True) -> float:
        """As TokenBuckets.take, for every process at once."""
        client, now = f"{self.kind}:{client}", time.monotonic()  # one clock for the host
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT tokens, at FROM buckets WHERE client = ?",
                                       (client,)).fetchone()
                tokens, wait = _refill(*(row or (float(self.burst), now)), self.rate,
                                       self.burst, now)
                self._db.execute("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                                 (client, tokens - 1 if not wait and spend else tokens, now))
                self._takes += 1
                if self._takes % 1000 == 0:  # forget clients whose buckets are full again
                    self._db.execute("DELETE FROM buckets WHERE at < ?",
                                     (now - self.burst / self.rate - 60,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return wait


def _refill(tokens: float, then_or_elapsed: float, rate: float, burst: int,
            now: float | None = None) -> tuple[float, float]:
    """(tokens after refilling, seconds to wait for one: 0 when there is one)."""
    elapsed = then_or_elapsed if now is None else now - then_or_elapsed
    tokens = min(float(burst), tokens + max(0.0, elapsed) * rate)
    return tokens, 0.0 if tokens >= 1 else (1 - tokens) / rate


def buckets(state: str, kind: str, rate: float, burst: int):
    """Token buckets in a shared file (state), or in this process's memory (state empty)."""
    if state:
        return SharedTokenBuckets(state, kind, rate, burst)
    return TokenBuckets(rate, burst)


class Gate:
    """Decides whether an HTTP request may go ahead: its key, its scope, its rate."""

    def __init__(self, keys: tuple[Key, ...], rate: float, burst: int, state: str = "",
                 failures: int = 10) -> None:
        """
        :param state: the shared file of the host's rate limits ("" keeps them in memory)
        :param failures: failed authentications an address may make at once (0: no limit)
        """
        self.keys = keys
        self.buckets = buckets(state, "rate", rate, burst) if rate > 0 else None
        self.failures = (buckets(state, "failures", FAILURES_RATE, failures) if failures
                         else None)

    @property
    def open(self) -> bool:
        """True when no keys are configured: anybody may call every endpoint."""
        return not self.keys

    def scope_of(self, presented: str | None) -> str:
        """What a key may do: ``admin``, ``read``, or ``open`` when no keys are configured
        (anything); ``none`` for a missing or unknown key."""
        if self.open:
            return "open"
        try:
            return self._lookup(presented).scope
        except Unauthorized:
            return "none"

    def check(self, needed: str | None, presented: str | None, query: set[str],
              client: str, metered: bool = True) -> None:
        """Let the request through, or raise.

        :param needed: the scope the route declares, None for an open route
        :param presented: the X-API-Key header, if any
        :param query: the names of the query-string parameters (a key there is refused)
        :param client: the caller's address, the rate-limit bucket when the service is open
        :param metered: spend from the rate limit (a webcam session's frames do not: one at a
            time per session bounds them)
        :raises Unauthorized: missing_api_key, invalid_api_key or api_key_in_query
        :raises Forbidden: insufficient_scope
        :raises RateLimited: over the rate limit, or too many failed authentications lately
            from this address
        """
        if {name.lower() for name in query} & QUERY_KEY_NAMES:
            raise Unauthorized("api_key_in_query")
        if needed is None:
            return
        label = client
        if not self.open:
            if self.failures and (wait := self.failures.take(client, spend=False)) > 0:
                raise RateLimited(math.ceil(wait))
            try:
                key = self._lookup(presented)
            except Unauthorized as refused:
                # a wrong key is a guess; none at all is not (a browser's own /favicon.ico)
                if (refused.message == "invalid_api_key" and self.failures
                        and (wait := self.failures.take(client)) > 0):
                    raise RateLimited(math.ceil(wait)) from None
                raise
            if needed == "admin" and key.scope != "admin":
                raise Forbidden()
            label = key.label
        if metered and self.buckets is not None and (wait := self.buckets.take(label)) > 0:
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
