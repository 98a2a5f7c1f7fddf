"""Untrusted image bytes are decoded in a separate process with hard limits, so that no image
can pin a worker's CPU or memory: a decoder process has a CPU-time limit per image
(RLIMIT_CPU), an address-space limit (RLIMIT_AS) and a wall-clock deadline, after which it is
killed and replaced. Cheap checks come first, before any decoding (``images.precheck``).

Each serving process keeps a few decoder processes (started from a fork server, so that a
new one costs milliseconds) and hands them images one at a time; pixels come back over a
pipe. A decoder that is killed takes only its own image with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from . import images
from .errors import ImageTooComplex, ImageTooLarge, RecognizerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """What decoding one image may cost."""

    cpu_seconds: int = 4  # CPU time (RLIMIT_CPU, per image)
    memory_bytes: int = 1536 << 20  # address space beyond the decoder's own at start
    seconds: float = 10.0  # wall clock, for a machine whose CPUs are busy with other work


class Decoder:
    """One decoder process, used by one thread at a time."""

    def __init__(self, context, budget: Budget) -> None:
        self.budget = budget
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, budget), daemon=True,
                                       name="facerec-decoder")
        self.process.start()
        theirs.close()

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def decode(self, data: bytes, max_pixels: int,
               least_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """(RGB pixels, the image's own size), as ``images.decode_scaled`` gives them.

        :raises ImageTooComplex: the decoder ran out of CPU time or time (it is then gone)
        :raises ImageTooLarge: out of memory, or over the pixel limit
        :raises UnsupportedImage: not an image the service decodes
        """
        try:
            self.connection.send((data, max_pixels, least_side))
            if not self.connection.poll(self.budget.seconds):
                self.stop()
                raise ImageTooComplex(f"time: decoding took over {self.budget.seconds:g} s")
            reply = self.connection.recv()
            if reply[0] == "error":
                raise reply[1]
            _, shape, original = reply
            pixels = np.empty(shape, np.uint8)
            self.connection.recv_bytes_into(memoryview(pixels).cast("B"))
            return pixels, original
        except (EOFError, OSError):  # the decoder died: its limits, or a crash
            self.process.join(1)
            code = self.process.exitcode
            self.stop()
            if code == -signal.SIGXCPU or code == -signal.SIGKILL:
                raise ImageTooComplex(f"cpu: decoding took over {self.budget.cpu_seconds} s"
                                      " of CPU time") from None
            raise ImageTooLarge(detail="memory: decoding needed more than"
                                f" {self.budget.memory_bytes >> 20} MiB") from None

    def stop(self) -> None:
        """Kill the process (a decode over its deadline cannot be stopped any other way)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.connection.close()


class Decoders:
    """A few decoder processes shared by a serving process's threads."""

    def __init__(self, size: int = 2, budget: Budget = Budget()) -> None:
        self.size, self.budget = size, budget
        self._idle: list[Decoder] = []
        self._busy = 0
        self._lock = threading.Condition()
        self._context = None

    def decode(self, data: bytes, max_pixels: int,
               least_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """Decode in a decoder process (see :class:`Decoder`), after ``images.precheck``."""
        images.precheck(data, max_pixels)
        decoder = self._take()
        try:
            return decoder.decode(data, max_pixels, least_side)
        finally:
            self._give(decoder)

    def _take(self) -> Decoder:
        with self._lock:
            while not self._idle and self._busy >= self.size:
                self._lock.wait()
            self._busy += 1
            while self._idle:
                decoder = self._idle.pop()
                if decoder.alive:
                    return decoder
            if self._context is None:
                self._context = multiprocessing.get_context("forkserver")
                self._context.set_forkserver_preload(["recognizer.images"])
        try:
            return Decoder(self._context, self.budget)
        except BaseException:
            with self._lock:
                self._busy -= 1
                self._lock.notify()
            raise

    def _give(self, decoder: Decoder) -> None:
        with self._lock:
            self._busy -= 1
            if decoder.alive:
                self._idle.append(decoder)
            self._lock.notify()

    def close(self) -> None:
        """Stop every idle decoder."""
        with self._lock:
            for decoder in self._idle:
                decoder.stop()
            self._idle.clear()


def _serve(connection: Connection, budget: Budget) -> None:
    """A decoder process: limit itself, then decode what it is sent, one image at a time."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the serving process stops it
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = size + budget.memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            data, max_pixels, least_side = connection.recv()
        except EOFError:
            return
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime) + 1
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (spent + budget.cpu_seconds, hard))
        try:
            pixels, original = images.decode_scaled(data, max_pixels, least_side=least_side)
        except RecognizerError as error:
            connection.send(("error", error))
            continue
        except MemoryError:
            connection.send(("error", ImageTooLarge(
                detail=f"memory: decoding needed more than {budget.memory_bytes >> 20} MiB")))
            continue
        connection.send(("ok", pixels.shape, original))
        connection.send_bytes(memoryview(np.ascontiguousarray(pixels)).cast("B"))
        del pixels
