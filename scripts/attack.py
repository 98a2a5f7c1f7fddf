"""Attack the production server (scripts/serve: nginx in front of gunicorn's threaded workers)
from loopback, and measure how it holds, against a baseline measured in the same run.

1. /health latency: alone, then while 100 slow clients (50 dribbling headers, 50 a body) hold
   connections open, then while 4 clients keep every worker recognising.
2. How long the attack round's images take to be refused: a 3,500-scan progressive JPEG (and
   one padded to 10 MB), a WebP canvas, a float32 TIFF and a 16-bit PNG, with the servers'
   peak resident memory (gunicorn, its workers and their decoders) against its start.
3. model=cnn&upsample=2 on a 1080p photo.

Prints medians and the 95th and 99th percentiles; the figures are in docs/security.md.

    .venv/bin/python scripts/attack.py [--seconds 20] [--workers 2]
"""

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from recognizer.testing import (
    FACES,
    ROOT,
    bombs,
    free_port,
    many_scans,
    padded_to,
    rss_of_tree,
    serving,
)

MB = 1 << 20


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    pick = lambda share: ordered[min(len(ordered) - 1, int(share * len(ordered)))]  # noqa: E731
    return (f"n={len(ordered):>4}  median {statistics.median(ordered) * 1000:7.1f} ms"
            f"  p95 {pick(0.95) * 1000:7.1f} ms  p99 {pick(0.99) * 1000:7.1f} ms"
            f"  max {ordered[-1] * 1000:7.1f} ms")


def probe_health(base: str, seconds: float) -> list[float]:
    """Time /health every 100 ms for a while (a failed probe counts as 10 s)."""
    samples, stop = [], time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            requests.get(f"{base}/health", timeout=10).raise_for_status()
            samples.append(time.perf_counter() - started)
        except requests.RequestException:
            samples.append(10.0)
        time.sleep(0.1)
    return samples


def slow_clients(port: int, count: int, body: bool, stop: threading.Event) -> None:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /recognize HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg"
                     b"\r\nContent-Length: 100000\r\n\r\n" if body
                     else b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        sockets.append(sock)
    while not stop.wait(1):
        for sock in sockets:
            try:
                sock.sendall(b"x" if body else b"X-Slow: 1\r\n")
            except OSError:  # nginx dropped it after its deadline: open another
                sockets.remove(sock)
                sock.close()
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    for sock in sockets:
        sock.close()


def recognising(base: str, stop: threading.Event) -> None:
    photo = (FACES / "people/obama/obama-1080p.jpg").read_bytes()
    while not stop.is_set():
        requests.post(f"{base}/recognize", data=photo, timeout=60,
                      headers={"Content-Type": "image/jpeg"})


def under(loads: list, base: str, seconds: float) -> list[float]:
    """/health's latency while each load runs (each is given the event that stops it)."""
    stop = threading.Event()
    with ThreadPoolExecutor(len(loads)) as pool:
        running = [pool.submit(load, stop) for load in loads]
        time.sleep(2)
        samples = probe_health(base, seconds)
        stop.set()
        for each in running:
            each.result()
    return samples


def refusals(base: str, master: int) -> None:
    cases = {"jpeg_3500_scans": many_scans(3500),
             "jpeg_3500_scans_10MB": padded_to(many_scans(3500), 10 * MB)} | bombs()
    start = rss_of_tree(master)
    print(f"\nrefusals (the servers' resident memory at start: {start / MB:.0f} MB)")
    for name, data in cases.items():
        times, peaks = [], []
        for _ in range(3):
            started = time.perf_counter()
            answer = requests.post(f"{base}/recognize", data=data, timeout=60,
                                   headers={"Content-Type": "application/octet-stream"})
            times.append(time.perf_counter() - started)
            peaks.append(rss_of_tree(master) - start)
        print(f"  {name:<22} {len(data) / 1024:8.0f} KB -> {answer.status_code}"
              f" {list(answer.json()['errors'].values())[0]:<18} median"
              f" {statistics.median(times) * 1000:6.0f} ms, memory +{max(peaks) / MB:.0f} MB")
    photo = (FACES / "people/obama/obama-1080p.jpg").read_bytes()
    started = time.perf_counter()
    answer = requests.post(f"{base}/recognize?model=cnn&upsample=2", data=photo, timeout=60,
                           headers={"Content-Type": "image/jpeg"})
    print(f"  {'cnn, upsample 2, 1080p':<22} {len(photo) / 1024:8.0f} KB -> {answer.status_code}"
          f" {list(answer.json()['errors'].values())[0]:<18}"
          f" {(time.perf_counter() - started) * 1000:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="of /health probing, each")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {"FACEREC_STORE": f"{folder}/store.sqlite3", "PORT": str(port),
               "WORKERS": str(args.workers), "FACEREC_RATE_LIMIT": "0"}
        with serving(["scripts/serve"], port, f"{folder}/serve.log", "/health", env) as base:
            master = int(subprocess.run(["pgrep", "-f", "gunicorn.sock"], capture_output=True,
                                        text=True).stdout.split()[0])
            print(f"scripts/serve, {args.workers} workers; {os.cpu_count()} cores;"
                  f" /health probed every 100 ms for {args.seconds:g} s each\n")
            print("/health alone                 ", percentiles(probe_health(base,
                                                                             args.seconds)))
            slow = under([lambda stop: slow_clients(port, 50, False, stop),
                          lambda stop: slow_clients(port, 50, True, stop)], base, args.seconds)
            print("/health, 100 slow clients     ", percentiles(slow))
            busy = under([lambda stop: recognising(base, stop)] * 4, base, args.seconds)
            print("/health, 4 clients recognising", percentiles(busy))
            refusals(base, master)
    print(f"\n(.venv/bin/python scripts/attack.py --seconds {args.seconds:g}"
          f" --workers {args.workers}; from {ROOT.name})")


if __name__ == "__main__":
    main()
