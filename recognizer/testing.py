"""Helpers shared by the tests, the benchmarks and the evaluation scripts: where the test photos
are, free ports, and servers started as subprocesses and waited for. Not used by the service."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

import requests

ROOT = Path(__file__).resolve().parents[1]
# The shared test media: people/, misc/, video/, lfw_dev/ (FACEREC_TEST_FACES to move them).
FACES = Path(os.environ.get("FACEREC_TEST_FACES", ROOT.parent / "shared" / "faces")).resolve()


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, log: str | Path | None = None,
               timeout: float = 120) -> None:
    """Poll url until the server answers below 500, or raise with the end of its log.

    :raises RuntimeError: the process exited, or did not answer within timeout seconds
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=5).status_code < 500:
                return
        time.sleep(0.3)
    tail = "" if log is None else "".join(
        Path(log).read_text(errors="replace").splitlines(True)[-20:])
    raise RuntimeError(f"{' '.join(map(str, process.args))} did not come up"
                       f" (exit code {process.poll()}); log:\n{tail}")


@contextlib.contextmanager
def serving(command: Sequence, port: int, log: str | Path, ready_path: str = "/",
            env: dict | None = None, cwd: str | Path = ROOT) -> Iterator[str]:
    """Run a server subprocess, yield its base URL once it answers, and always stop it."""
    with open(log, "w") as output:
        process = subprocess.Popen([str(part) for part in command], cwd=cwd,
                                   env={**os.environ, **(env or {})},
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(process, base + ready_path, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
