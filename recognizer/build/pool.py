"""Build's worker pool: the per-file work in processes, results in the files' order.

``build`` walks the tree, reads and hashes each file, and skips the ones already
built, in its own process. What is left of a photo (decode, detect, the quality gate, encode
with enrolment's jitters: about 0.2 s of CPU) is what ``run`` spreads over worker processes. A
result is handed back as soon as it and every one before it are done, so the caller records it
at once (an interrupted build keeps it) and in an order that does not depend on which worker
finished first. At most a few files per worker are in flight, so a tree of any size needs
little memory.

Workers are *spawned* (forking a process that has loaded dlib or started threads is unsafe),
with one BLAS thread each so that N workers share N cores instead of fighting over them, and
with Ctrl-C blocked: the process that runs the pool stops it. A worker that dies (killed, out
of memory, a crash in native code) breaks the pool. The files that were in flight then run
again, one at a time, in a new pool: only a file that kills a worker on its own is reported
as crashed, and nothing else is lost.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..errors import WorkersFailed

# The workers' environment. OpenBLAS reads its thread count once, when it is loaded, and a
# spawned worker may load it before any code of ours runs (it imports the parent's __main__
# first), so the count is set in the environment the workers start with.
WORKER_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
# Files in flight per worker: enough to keep the workers busy while a slow file holds back the
# results behind it, few enough that their bytes take little memory.
IN_FLIGHT_PER_WORKER = 4
# Finished items (mostly files skipped as unchanged) held back behind a slow one, per worker.
BACKLOG_PER_WORKER = 64
# Items in a row that each kill a worker on their own before the pool is given up as unable to
# work at all (workers that die as they start, say).
CRASHES_IN_A_ROW = 3

_work: Callable[[Any], Any] | None = None  # a worker's task, set once when the worker starts


class WorkerCrashed(Exception):
    """A worker process died while it worked on this item alone."""


def usable_cores() -> int:
    """How many CPU cores this process may run on (its affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run(work: Callable[[Any], Any], items: Iterable[tuple[Any, Any]],
        workers: int = 1) -> Iterator[tuple[Any, Any]]:
    """Apply work to each item's payload in worker processes; yield the results in order.

    Close the iterator (``contextlib.closing``) to stop the pool early, e.g. on Ctrl-C.

    :param work: a picklable callable (a module-level function, or a partial of one), sent to
        each worker once
    :param items: (key, payload) pairs; a payload of None needs no work and gives None
    :param workers: processes to use; 1 does the work in this process, without a pool
    :return: (key, result) pairs in the order of items; the result is a WorkerCrashed for a
        payload that made a worker die
    :raises WorkersFailed: the workers die whatever they are given
    :raises Exception: whatever work raised, when that item's turn comes
    """
    if workers <= 1:
        return ((key, None if payload is None else work(payload)) for key, payload in items)
    return _in_order(_Pool(work, workers), items, workers)


@contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """Hold back a Ctrl-C until the block ends, then raise it as usual (KeyboardInterrupt).

    For work that must finish once begun, such as recording a file's outcome: a Ctrl-C that
    lands inside a commit cannot tell whether the commit happened. Python runs signal handlers
    in the main thread only, so elsewhere there is nothing to hold back.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):  # (a handler not set from Python)
        yield
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: pressed.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed:
            signal.raise_signal(signal.SIGINT)  # to the handler that was there before


@dataclass
class _Item:
    """An item on its way through the pool."""

    key: Any
    payload: Any
    future: Future | None = None
    alone: bool = False  # it was in flight when a worker died: run it again on its own


def _in_order(pool: _Pool, items: Iterable[tuple[Any, Any]],
              workers: int) -> Iterator[tuple[Any, Any]]:
    """Submit items as room frees up, and yield each result once those before it are out."""
    pending: deque[_Item] = deque()
    try:
        for key, payload in items:
            item = _Item(key, payload)
            if payload is not None:
                item.future = pool.submit(payload)
            pending.append(item)
            while pending and (_ready(pending[0]) or _full(pending, workers)):
                yield _finish(pool, pending)
        while pending:
            yield _finish(pool, pending)
    finally:
        pool.close()


def _ready(item: _Item) -> bool:
    return item.payload is None or item.alone or bool(item.future and item.future.done())


def _full(pending: deque[_Item], workers: int) -> bool:
    in_flight = sum(1 for item in pending if item.payload is not None)
    return (in_flight >= workers * IN_FLIGHT_PER_WORKER
            or len(pending) >= workers * BACKLOG_PER_WORKER)


def _finish(pool: _Pool, pending: deque[_Item]) -> tuple[Any, Any]:
    """The first pending item's result, waiting for it if need be."""
    item = pending[0]
    if item.payload is None:
        result = None
    elif item.alone:
        result = pool.alone(item.payload)
    else:
        try:
            result = item.future.result()
        except BrokenProcessPool:
            pool.restart()
            for suspect in pending:  # every item the dead worker may have been working on
                suspect.alone = suspect.payload is not None and _lost(suspect.future)
            result = pool.alone(item.payload)
    pending.popleft()
    return item.key, result


def _lost(future: Future | None) -> bool:
    """Whether a future died with its pool (rather than giving a result or the work's error)."""
    return (future is None or not future.done() or future.cancelled()
            or isinstance(future.exception(), BrokenProcessPool))


class _Pool:
    """A pool of spawned worker processes, started at its first task and after a worker dies."""

    def __init__(self, work: Callable[[Any], Any], workers: int) -> None:
        self.work = work
        self.workers = workers
        self.executor: ProcessPoolExecutor | None = None
        self.crashes = 0  # items in a row that killed a worker on their own

    def submit(self, payload: Any) -> Future:
        """Queue one payload; a broken pool gives a future that has failed."""
        if self.executor is None:
            self.executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self.work,))
        try:
            with _worker_birth():  # the executor starts a worker, when it needs one, in submit
                return self.executor.submit(_call, payload)
        except BrokenProcessPool as error:
            failed: Future = Future()
            failed.set_exception(error)
            return failed

    def alone(self, payload: Any) -> Any:
        """Run one payload with nothing else in flight: a crash is then its own.

        :raises WorkersFailed: CRASHES_IN_A_ROW payloads in a row have each killed a worker
        """
        try:
            result = self.submit(payload).result()
        except BrokenProcessPool as error:
            self.restart()
            self.crashes += 1
            if self.crashes >= CRASHES_IN_A_ROW:
                raise WorkersFailed() from error
            return WorkerCrashed("a worker died while working on this item")
        self.crashes = 0
        return result

    def restart(self) -> None:
        """Let go of a broken pool; the next task starts a new one."""
        self.close()
        self.executor = None

    def close(self) -> None:
        """Stop the workers once they finish what they are doing; drop the queued tasks."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _worker_birth() -> Iterator[None]:
    """While a worker may be started: WORKER_ENVIRONMENT, and Ctrl-C blocked. A new process
    inherits both, so a worker never sees Ctrl-C, not even before its initializer runs. Here,
    a Ctrl-C that comes meanwhile waits, and is raised once it is unblocked."""
    saved = {name: os.environ.get(name) for name in WORKER_ENVIRONMENT}
    os.environ.update(WORKER_ENVIRONMENT)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _start_worker(work: Callable[[Any], Any]) -> None:
    """A worker's set-up: keep its task, leave Ctrl-C to the parent, exit with the parent."""
    global _work
    _work = work
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    """Exit when the parent does. A parent that is killed (SIGKILL, SIGTERM) cannot stop its
    pool, and a worker would otherwise wait for tasks for ever."""
    parent.join()
    os._exit(1)


def _call(payload: Any) -> Any:
    return _work(payload)
