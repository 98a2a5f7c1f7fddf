"""How long one request spends in each stage of the pipeline (detection, encoding, matching),
for the callers that report it (CompreFace's ``status=true``). A stage marks itself with
``stage(name)``; nothing is measured or kept unless the caller collects with ``collect()``,
and each request (each thread, each context) collects its own. Pure Python."""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Iterator

_collecting: ContextVar[dict[str, float] | None] = ContextVar("facerec_stages", default=None)


@contextlib.contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Collect the milliseconds spent in each stage marked within the block, by name (a stage
    entered several times adds up)."""
    spent: dict[str, float] = {}
    token = _collecting.set(spent)
    try:
        yield spent
    finally:
        _collecting.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark a stage: its time is added to the collection in progress, if any."""
    spent = _collecting.get()
    if spent is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        spent[name] = spent.get(name, 0.0) + (time.perf_counter() - started) * 1000
