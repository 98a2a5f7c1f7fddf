"""Time `watch` on a video against the naive loop, in the same run, and compare their names.

The naive loop is the face_recognition tutorial's: every frame at full size goes through
face_locations (HOG, upsample 1) and face_encodings, and each face takes the name of the nearest
known face within 0.6. `watch` is recognizer.video with its automatic choices. Both see the same
enrolled people (by default Lin-Manuel Miranda and Alex Lacamoire, from ../shared/faces/people).
Prints the frames per second of each (median of --repeat runs for watch), the ratio, the clip's
own frame rate, and how often the two name the same people on the same frame.

    .venv/bin/python scripts/bench_video.py [VIDEO] [--repeat 3] [--naive-repeat 1]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from recognizer import FaceService, Settings
from recognizer.testing import FACES

PEOPLE = ("lin_manuel_miranda", "alex_lacamoire")


def enrol(service: FaceService, people: Path) -> dict[str, list[np.ndarray]]:
    """Enrol every photo of each person; return their encodings for the naive loop."""
    for name in PEOPLE:
        for photo in sorted((people / name).iterdir()):
            service.enroll(name, service.picture_from_path(photo), force=True)
    return service.store.encodings()


def naive(video: str, known: dict[str, list[np.ndarray]]) -> tuple[float, list[set]]:
    """The tutorial's loop; returns (frames per second, names per frame)."""
    import cv2
    import face_recognition

    names = [name for name, rows in known.items() for _ in rows]
    encodings = np.array([row for rows in known.values() for row in rows])
    capture, per_frame = cv2.VideoCapture(video), []
    started = time.perf_counter()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        locations = face_recognition.face_locations(rgb)
        found = set()
        for encoding in face_recognition.face_encodings(rgb, locations):
            distances = face_recognition.face_distance(encodings, encoding)
            best = int(np.argmin(distances))
            found.add(names[best] if distances[best] <= 0.6 else None)
        per_frame.append(found)
    return len(per_frame) / (time.perf_counter() - started), per_frame


def ours(service: FaceService, video_path: str) -> tuple[float, list[set], dict, float]:
    """watch(); returns (frames per second, names per frame, summary, CPU seconds used)."""
    from recognizer import tracking, video

    cpu, wall = time.process_time(), time.perf_counter()
    events = list(video.watch(service, video_path))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    summary = events[-1]
    per_frame = tracking.names_by_frame(events, summary["frames"])
    return summary["frames"] / wall, per_frame, summary, cpu / wall


def agreement(a: list[set], b: list[set]) -> tuple[float, int, int]:
    """(share of frames naming the same people, frames only a names someone, only b)."""
    named = [({n for n in x if n}, {n for n in y if n}) for x, y in zip(a, b)]
    same = sum(x == y for x, y in named)
    return same / len(named), sum(bool(x - y) for x, y in named), sum(bool(y - x) for x, y in named)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", default=str(FACES / "video/short_hamilton_clip.mp4"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of watch (median)")
    parser.add_argument("--naive-repeat", type=int, default=1, help="runs of the naive loop")
    args = parser.parse_args()
    import cv2

    capture = cv2.VideoCapture(args.video)
    clip_fps, frames = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    with tempfile.TemporaryDirectory() as folder:
        service = FaceService(Settings(store=str(Path(folder) / "store.sqlite3")))
        known = enrol(service, FACES / "people")
        print(f"{Path(args.video).name}: {frames} frames at {clip_fps:.2f} fps; {os.cpu_count()}"
              f" cores; enrolled {', '.join(f'{n} ({len(r)})' for n, r in known.items())}")
        naive_runs = [naive(args.video, known) for _ in range(args.naive_repeat)]
        our_runs = [ours(service, args.video) for _ in range(args.repeat)]
    naive_fps = statistics.median(fps for fps, _ in naive_runs)
    our_fps = statistics.median(run[0] for run in our_runs)
    print(f"naive loop: {naive_fps:6.2f} fps  ({naive_fps / clip_fps:.2f}x real time)")
    print(f"watch:      {our_fps:6.2f} fps  ({our_fps / clip_fps:.2f}x real time,"
          f" {statistics.median(run[3] for run in our_runs):.2f} cores busy)")
    print(f"speed-up:   {our_fps / naive_fps:.2f}x")
    same, naive_only, ours_only = agreement(naive_runs[0][1], our_runs[0][1])
    print(f"names agree on {same:.1%} of frames; naive alone names someone on {naive_only},"
          f" watch alone on {ours_only}")
    print(f"watch saw: {our_runs[0][2]['people']} in {our_runs[0][2]['tracks']} tracks")


if __name__ == "__main__":
    main()
