"""Helpers shared by the tests, the benchmarks and the evaluation scripts: where the test photos
are, free ports, and servers started as subprocesses and waited for. Not used by the service."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import requests
from PIL import Image

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


# -- hostile images: the attack round's payloads, made at run time ------------------------------


def many_scans(scans: int, side: int = 3000) -> bytes:
    """A flat grey progressive JPEG whose last scan is repeated: each scan costs a pass over
    the whole image to decode (about 12 s for 3,500 at 3000 x 3000), in about 116 KB."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last = data.rfind(b"\xff\xda")
    return data[:-2] + data[last:-2] * (scans - data.count(b"\xff\xda")) + b"\xff\xd9"


def padded_to(jpeg: bytes, size: int) -> bytes:
    """A JPEG grown to a file size with comment segments."""
    comment = b"\xff\xfe" + (65533).to_bytes(2, "big") + b"\0" * 65531
    return jpeg[:2] + comment * ((size - len(jpeg)) // len(comment)) + jpeg[2:]


def bombs() -> dict[str, bytes]:
    """Small files that decode to gigabytes: a huge WebP canvas, a float32 TIFF and a 16-bit
    PNG (each flat, so each compresses to almost nothing)."""
    made = {}
    for name, image, options in (
            ("webp", Image.new("L", (6324, 6324)), {"format": "WEBP", "lossless": True}),
            ("tiff", Image.fromarray(np.zeros((6000, 6000), np.float32)),
             {"format": "TIFF", "compression": "tiff_adobe_deflate"}),
            ("png", Image.fromarray(np.zeros((6000, 6000), np.uint16)), {"format": "PNG"})):
        buffer = io.BytesIO()
        image.save(buffer, **options)
        made[name] = buffer.getvalue()
    return made


def rss_of_tree(root_pid: int) -> int:
    """The resident memory of a process and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total
