"""How long one request spends in each stage of the pipeline (fetch, decode, detection,
encoding, matching), for the callers that report it: the Server-Timing header and the stage
histograms of /metrics (``web.middleware``), CompreFace's ``status=true``. A stage marks itself
with ``stage(name)``; nothing is measured or kept unless a caller collects with ``collect()``,
and each request (each thread, each context) collects its own. Collections nest: a stage adds
to every collection in progress. Pure Python."""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Iterator

_collecting: ContextVar[tuple[dict[str, float], ...]] = ContextVar("facerec_stages", default=())
_open: ContextVar[frozenset[str]] = ContextVar("facerec_open_stages", default=frozenset())


@contextlib.contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Collect the milliseconds spent in each stage marked within the block, by name (a stage
    entered several times adds up)."""
    spent: dict[str, float] = {}
    token = _collecting.set(_collecting.get() + (spent,))
    try:
        yield spent
    finally:
        _collecting.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark a stage: its time is added to the collections in progress, if any. A stage inside
    one of the same name (a caller's "decode" around the service's) is counted once."""
    collections, already = _collecting.get(), _open.get()
    if not collections or name in already:
        yield
        return
    token = _open.set(already | {name})
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = (time.perf_counter() - started) * 1000
        _open.reset(token)
        for spent in collections:
            spent[name] = spent.get(name, 0.0) + elapsed
