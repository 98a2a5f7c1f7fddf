"""How many live streams one machine follows, and how soon a webhook hears of a face.

A stream runner runs as scripts/serve runs it (``facerec streams``, a process of its own, on
a SQLite store in a temporary folder) against MJPEG cameras on loopback that serve the
Hamilton clip (640x360, 30 fps) again and again, with Lin-Manuel Miranda enrolled.

- **Capacity.** For N = 1, 2, ... streams: after a warm-up, the runner's own status for each
  stream over --seconds: key frames recognised (detected and identified) a second, and frames
  followed (tracked between them) a second. The largest N at which every stream keeps at least
  5 recognised frames a second is the capacity. The baseline, in the same run: the naive way,
  every frame detected and identified (``every`` = 1), which is what a loop over
  ``/recognize`` would do, swept the same way.
- **Delay.** One camera shows 2 s of an empty scene, then 2 s of Lin-Manuel Miranda's close-up
  (the clip's frames 100-159), again and again. The camera notes when his first frame goes out;
  a webhook receiver notes when the track's first event arrives, and when the first event that
  names him does. p50 and p95 over --cycles, with the stream alone and beside N - 1 others.

    .venv/bin/python scripts/bench_streams.py [--max-streams 6] [--seconds 20] [--cycles 20]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from recognizer import FaceService, Settings
from recognizer.cameras import MjpegCamera, jpeg_frames
from recognizer.testing import FACES, ROOT

LIN = "Lin-Manuel Miranda"
CLIP = FACES / "video" / "short_hamilton_clip.mp4"
GOAL = 5.0  # recognised frames a second every stream must keep


class Receiver:
    """A webhook receiver: (arrival time, event) of each delivery."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrivals.append((time.time(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def statuses(service: FaceService, ids: list[int], seconds: float) -> dict[int, list[dict]]:
    """Each stream's status as its runner records it (every 2 s), for a while."""
    seen: dict[int, list[dict]] = {stream_id: [] for stream_id in ids}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(2.0)
        for stream_id in ids:
            status = service.store.stream(stream_id).status or {}
            if status.get("state") == "running" and status.get("fps") is not None:
                seen[stream_id].append(status)
    return seen


def capacity(service: FaceService, clip: list[bytes], count: int, every: int | None,
             seconds: float) -> tuple[float, float]:
    """(worst stream's median recognised frames a second, its median fps) for count streams."""
    cameras = [MjpegCamera(frames=clip, loops=10_000) for _ in range(count)]
    ids = [service.live.add_stream(f"bench-{count}-{every}-{n}", camera.url, every=every).id
           for n, camera in enumerate(cameras)]
    try:
        statuses(service, ids, 8.0)  # connect and settle
        seen = statuses(service, ids, seconds)
    finally:
        for stream_id in ids:
            service.live.delete_stream(stream_id)
        for camera in cameras:
            camera.close()
    worst = min(ids, key=lambda i: statistics.median(
        [s["detections_per_second"] for s in seen[i]] or [0]))
    return (statistics.median([s["detections_per_second"] for s in seen[worst]] or [0]),
            statistics.median([s["fps"] for s in seen[worst]] or [0]))


def delays(service: FaceService, clip: list[bytes], others: int,
           cycles: int) -> tuple[list[float], list[float]]:
    """Seconds from his first frame to the track's first event, and to the first naming him."""
    empty = cv2.imencode(".jpg", np.full((360, 640, 3), 96, np.uint8))[1].tobytes()
    frames = [empty] * 60 + clip[100:160]
    receiver = Receiver()
    hook = service.live.add_webhook(receiver.url, ["appear", "change"])
    face_camera = MjpegCamera(frames=frames, loops=cycles + 2, mark=60)
    busy = [MjpegCamera(frames=clip, loops=10_000) for _ in range(others)]
    ids = [service.live.add_stream("bench-delay", face_camera.url).id]
    ids += [service.live.add_stream(f"bench-busy-{n}", camera.url).id
            for n, camera in enumerate(busy)]
    try:
        deadline = time.monotonic() + 4.0 * (cycles + 2) + 30
        while len(face_camera.marked) < cycles + 1 and time.monotonic() < deadline:
            time.sleep(1.0)
        time.sleep(4.0)
    finally:
        for stream_id in ids:
            service.live.delete_stream(stream_id)
        service.live.delete_webhook(hook.id)
        for camera in [face_camera, *busy]:
            camera.close()
    first, named = [], []
    marks = face_camera.marked[1:]  # the first cycle includes connecting
    for start, end in zip(marks, marks[1:] + [float("inf")]):
        during = [(at, event) for at, event in receiver.arrivals
                  if event["stream"]["id"] == ids[0] and start <= at < end]
        if during:
            first.append(during[0][0] - start)
        naming = [at for at, event in during if event["name"] == LIN]
        if naming:
            named.append(naming[0] - start)
    return first, named


def percentiles(values: list[float]) -> str:
    if not values:
        return "none arrived"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s (n={len(ordered)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-streams", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cycles", type=int, default=20)
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    env = {**os.environ, "FACEREC_STORE": str(folder / "store.sqlite3"),
           "FACEREC_STREAM_NETWORKS": "127.0.0.0/8", "FACEREC_WEBHOOK_NETWORKS": "127.0.0.0/8",
           "OPENBLAS_NUM_THREADS": "1"}
    service = FaceService(Settings.from_env(env))
    people = FACES / "people" / "lin_manuel_miranda"
    service.enroll(LIN, service.picture_from_path(people / "lin-manuel-miranda.png"))
    clip, _ = jpeg_frames(CLIP)
    runner = subprocess.Popen([str(Path(sys.executable).parent / "facerec"), "streams"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    print(f"{os.cpu_count()} cores; 640x360 MJPEG cameras at 30 fps on loopback; goal: every "
          f"stream >= {GOAL:g} recognised frames/s")
    try:
        held = {}
        for label, every in (("baseline, every frame (every=1)", 1), ("ours", None)):
            held[label] = 0
            for count in range(1, options.max_streams + 1):
                recognised, fps = capacity(service, clip, count, every, options.seconds)
                print(f"{label}: {count} stream(s): the worst keeps {recognised:.1f} recognised"
                      f" frames/s, {fps:.1f} of 30 frames/s followed")
                if recognised < GOAL:
                    break
                held[label] = count
        naive, ours = held.values()
        print(f"capacity: {ours} streams (baseline {naive}; {ours / max(naive, 1):.1f}x)")
        for others in sorted({0, max(ours - 1, 0)}):
            first, named = delays(service, clip, others, options.cycles)
            print(f"delay with {others + 1} stream(s): face to its first webhook:"
                  f" {percentiles(first)}; to the first naming him: {percentiles(named)}")
    finally:
        runner.terminate()
        runner.wait(30)


if __name__ == "__main__":
    main()
