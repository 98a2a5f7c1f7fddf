"""Time the recognition pipeline's stages on the shared photos, against full-size detection.

For each detection size (the longest side HOG sees), prints how many faces it finds across the
photos, how many of the faces found at full size it finds too (box overlap over 50%), and the
median time per photo, with the ratio to detecting on the full-size image (the face_recognition
tutorial's way) measured in the same run. Then the median time to encode one face, and
whether dlib uses BLAS.

    .venv/bin/python scripts/bench_pipeline.py [--faces ../shared/faces] [--repeat 3]
"""

import argparse
import statistics
import time
from pathlib import Path

from recognizer import faces, images
from recognizer.testing import FACES

SIZES = (320, 480, 640, 800, 1024, 1280)


def median_time(function, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--upsample", type=int, default=1)
    args = parser.parse_args()

    photos = sorted(args.faces.glob("people/*/*")) + sorted(args.faces.glob("misc/*"))
    decoded = [images.decode(p.read_bytes(), 100_000_000) for p in photos]
    print(f"{len(photos)} photos from {args.faces}, upsample={args.upsample}, "
          f"dlib BLAS={faces.blas_enabled()}")
    print(f"{'max side':>9} {'faces':>6} {'of full':>8} {'median s/photo':>15} {'speed-up':>9}")
    rows, reference = {}, {}
    for size in (None, *SIZES):
        found, kept, per_photo = 0, 0, []
        for index, pixels in enumerate(decoded):
            side = size or max(pixels.shape[:2])
            seconds, boxes = median_time(
                lambda: faces.detect(pixels, upsample=args.upsample, max_side=side), args.repeat)
            reference.setdefault(index, boxes)
            found += len(boxes)
            kept += sum(any(a.overlap(b) > 0.5 for b in boxes) for a in reference[index])
            per_photo.append(seconds)
        rows[size] = (found, kept, statistics.median(per_photo))
    baseline = rows[None][2]
    for size, (found, kept, seconds) in rows.items():
        label = "full" if size is None else str(size)
        print(f"{label:>9} {found:>6} {kept:>8} {seconds:>15.3f} {baseline / seconds:>8.2f}x")

    pixels = decoded[[p.name for p in photos].index("obama.jpg")]
    boxes = faces.detect(pixels)
    seconds, _ = median_time(lambda: faces.encode(pixels, boxes), max(args.repeat, 20))
    print(f"encode one face: median {seconds * 1000:.1f} ms")


if __name__ == "__main__":
    main()
