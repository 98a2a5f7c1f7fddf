"""Benchmark /recognize against the face_recognition tutorial's way (scripts/naive_api.py).

Both services get the same images, from a local static server, and the same six people,
enrolled from the same photos: into our store through the Python API, and into the naive
service's .npz with face_recognition. Every server is started and stopped here.

1. Latency: hug's single-process development server for each, requests alternating between the
   two image by image, one warm-up round and then --rounds rounds. Median per image and overall,
   and the ratio naive/ours, measured in the same run.
2. Throughput: --clients concurrent clients for --seconds against our service under gunicorn
   (one worker per core, OPENBLAS_NUM_THREADS=1) and against the naive single-process server.
3. Names: for every image, whether both services name the same set of people (unknown faces
   are left out of the comparison and counted).
4. The floor of each image, measured in this process: HOG at the size the service detects at,
   split over the cores (its single-thread time / cores), plus one encoding (no jitter) per
   face. Our latency is printed against it.

The images: four photos of the shared set, and a 12 MP photo made here by upscaling the group
photo misc/obama_and_biden.jpg to 4096x2925 (Lanczos, JPEG quality 90): labelled "upscaled".

    .venv/bin/python scripts/bench_api.py [--rounds 5] [--seconds 20]
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import numpy as np
import requests

import recognizer
from recognizer import Settings, errors, faces  # faces imports face_recognition quietly
from recognizer.testing import FACES, free_port, serving

BIN = Path(sys.executable).parent
# One enrolment photo per person, under <faces>/people/.
ENROL = {
    "obama": "obama/obama.jpg",
    "biden": "biden/biden.jpg",
    "kit_harington": "kit_harington/john1.jpeg",
    "rose_leslie": "rose_leslie/rose_leslie_img1.jpg",
    "alex_lacamoire": "alex_lacamoire/alex_lacamoire_img1.jpg",
    "lin_manuel_miranda": "lin_manuel_miranda/lin-manuel-miranda.png",
}
IMAGES = ("people/obama/obama-1080p.jpg", "people/obama/obama2.jpg", "misc/two_people.jpg",
          "misc/kit_with_rose.jpg")
UPSCALED = ("misc/obama_and_biden.jpg", "group-12mp-upscaled.jpg", (4096, 2925))
TIMEOUT = 120


# -- setup: machine, enrolment, servers ----------------------------------------------------


def machine_line():
    """nproc, the CPU model and dlib's BLAS state, for the header."""
    cores = len(os.sched_getaffinity(0))
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import dlib

    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    return (f"machine: nproc={cores}, {model}; dlib {dlib.__version__} "
            f"BLAS={faces.blas_enabled()}; OPENBLAS_NUM_THREADS={threads} for the dev servers, "
            f"1 for gunicorn")


def enrol_ours(store, people_dir):
    """Enrol each person's photo into our store; returns the names the quality gate refused
    (enrolled anyway with force=True)."""
    service = recognizer.FaceService(recognizer.Settings(store=str(store)))
    forced = []
    try:
        for name, relative in ENROL.items():
            picture = service.picture_from_path(people_dir / relative)
            try:
                service.enroll(name, picture)
            except errors.UnusableFace as error:
                if error.message in ("no_face", "multiple_faces"):
                    raise
                service.enroll(name, picture, force=True)
                forced.append(f"{name} ({error.message})")
    finally:
        service.store.close()
    return forced


def write_npz(path, people_dir):
    """The naive service's known faces: the tutorial's first encoding of each photo.

    :return: names whose photo did not give exactly one face
    """
    import face_recognition  # already imported, quietly, by recognizer.faces

    names, encodings, odd = [], [], []
    for name, relative in ENROL.items():
        image = face_recognition.load_image_file(people_dir / relative)
        found = face_recognition.face_encodings(image)
        if len(found) != 1:
            odd.append(f"{name} ({len(found)} faces)")
        if found:
            names.append(name)
            encodings.append(found[0])
    np.savez(path, names=np.array(names), encodings=np.array(encodings))
    return odd


def image_server(faces_dir, tmp):
    """A static file server (python http.server) over the shared photos, on loopback."""
    port = free_port()
    command = [sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1",
               "--directory", faces_dir]
    return serving(command, port, tmp / "images.log", ready_path="/" + IMAGES[0])


def dev_server(api_file, env, tmp, label):
    """hug's single-process development server for api_file, bound to loopback."""
    port = free_port()
    command = [BIN / "hug", "-f", api_file, "-ho", "127.0.0.1", "-p", port]
    return serving(command, port, tmp / f"{label}.log", env=env)


def gunicorn_server(env, tmp, workers):
    """Our service under gunicorn, one worker per core, OpenBLAS at one thread per worker."""
    port = free_port()
    command = [BIN / "gunicorn", "-w", workers, "-b", f"127.0.0.1:{port}", "--timeout", TIMEOUT,
               "api:__hug_wsgi__"]
    env = {**env, "OPENBLAS_NUM_THREADS": "1"}
    return serving(command, port, tmp / "gunicorn.log", ready_path="/health", env=env)


# -- requests ----------------------------------------------------------------------------------


def recognize(session, base, image_url):
    """One GET /recognize: (seconds, the JSON answer or None, an error string or None)."""
    started = time.perf_counter()
    try:
        response = session.get(f"{base}/recognize?image_url={quote(image_url, safe='')}",
                               timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            return seconds, None, f"HTTP {response.status_code} {response.text[:200]}"
        return seconds, response.json(), None
    except (requests.RequestException, ValueError) as error:
        return time.perf_counter() - started, None, type(error).__name__


def names_of(answer):
    """(named people as a sorted tuple, unknown faces, all faces) in a /recognize answer."""
    found = [face.get("name") for face in answer["faces"]]
    named = tuple(sorted(name for name in found if name))
    return named, len(found) - len(named), len(found)


# -- latency -----------------------------------------------------------------------------------


def latency(services, images, rounds):
    """Alternate the services image by image; the first round warms up and is not kept.

    :return: {service: {image: [(seconds, answer, error), ...]}}
    """
    results = {label: {image: [] for image in images} for label in services}
    sessions = {label: requests.Session() for label in services}
    order = list(services)
    for round_ in range(rounds + 1):
        for image, url in images.items():
            for label in order:
                outcome = recognize(sessions[label], services[label], url)
                if round_:
                    results[label][image].append(outcome)
        order.reverse()  # neither service always goes first
    return results


def median_of(outcomes):
    """Median seconds of the successful outcomes (nan if none)."""
    times = [seconds for seconds, _, error in outcomes if error is None]
    return statistics.median(times) if times else float("nan")


def mean_of(outcomes):
    """Mean seconds of the successful outcomes (nan if none)."""
    times = [seconds for seconds, _, error in outcomes if error is None]
    return statistics.fmean(times) if times else float("nan")


def print_latency(results, rounds, floors):
    """Per image and overall: median seconds of each service, naive/ours, the floor and
    ours/floor; then the goals."""
    print(f"\nlatency: hug dev server, one process each, requests alternating, {rounds} rounds "
          f"after 1 warm-up round (median seconds)")
    print(f"{'image':<32} {'ours':>8} {'naive':>8} {'naive/ours':>11} {'floor':>8}"
          f" {'ours/floor':>11} {'errors':>7}")
    ratios, over_floor = [], []
    for image in results["ours"]:
        ours, naive = results["ours"][image], results["naive"][image]
        errors_ = sum(error is not None for _, _, error in ours + naive)
        ratios.append(median_of(naive) / median_of(ours))
        over_floor.append(median_of(ours) / floors[image])
        print(f"{image:<32} {median_of(ours):>8.3f} {median_of(naive):>8.3f} "
              f"{ratios[-1]:>10.2f}x {floors[image]:>8.3f} {over_floor[-1]:>10.2f}x"
              f" {errors_:>7}")
    ours = [o for outcomes in results["ours"].values() for o in outcomes]
    naive = [o for outcomes in results["naive"].values() for o in outcomes]
    ratio = median_of(naive) / median_of(ours)
    print(f"{'all images':<32} {median_of(ours):>8.3f} {median_of(naive):>8.3f} "
          f"{ratio:>10.2f}x")
    mean_ours, mean_naive = mean_of(ours), mean_of(naive)
    print(f"{'all images, mean (not median)':<32} {mean_ours:>8.3f} {mean_naive:>8.3f} "
          f"{mean_naive / mean_ours:>10.2f}x")
    geometric = statistics.geometric_mean(ratios)
    print(f"goal: every image at least 1.5x faster than naive: "
          f"{'met' if min(ratios) >= 1.5 else 'NOT met'} (lowest {min(ratios):.2f}x)")
    print(f"goal: geometric mean of naive/ours at least 4x: "
          f"{'met' if geometric >= 4 else 'NOT met'} ({geometric:.2f}x)")
    print(f"goal: every image within 1.5x of its floor: "
          f"{'met' if max(over_floor) <= 1.5 else 'NOT met'} (highest {max(over_floor):.2f}x)")
    for label, outcomes in (("ours", ours), ("naive", naive)):
        for error, count in Counter(e for _, _, e in outcomes if e).items():
            print(f"  {label} error x{count}: {error}")


# -- throughput --------------------------------------------------------------------------------


def client(base, urls, offset, deadline, outcomes):
    """Cycle through the images from offset until the deadline; append (seconds, ok)."""
    session = requests.Session()
    index = offset
    while time.monotonic() < deadline:
        seconds, _, error = recognize(session, base, urls[index % len(urls)])
        outcomes.append((seconds, error is None))
        index += 1


def run_clients(base, urls, clients, seconds):
    """clients threads until the deadline; requests under way then are finished and counted.

    :return: (outcomes, elapsed seconds until the last client finished)
    """
    outcomes = []
    started = time.monotonic()
    threads = [threading.Thread(target=client,
                                args=(base, urls, i, started + seconds, outcomes))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.monotonic() - started


def warm_up(base, urls, clients):
    """One request per client, all at once, not counted (gunicorn's workers load dlib's models
    at their first recognition)."""
    threads = [threading.Thread(target=recognize, args=(requests.Session(), base, url))
               for url in (urls * clients)[:clients]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def throughput(base, urls, clients, seconds):
    """Warm up, then measure.

    :return: (requests/s, errors, median s, p90 s)
    """
    warm_up(base, urls, clients)
    outcomes, elapsed = run_clients(base, urls, clients, seconds)
    times = sorted(s for s, ok in outcomes if ok)
    errors_ = sum(not ok for _, ok in outcomes)
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else float("nan")
    median = statistics.median(times) if times else float("nan")
    return len(times) / elapsed, errors_, median, p90


def print_throughput_row(label, row):
    """One line of the throughput table."""
    rate, errors_, median, p90 = row
    print(f"{label:<42} {rate:>7.2f} {errors_:>7} {median:>9.3f} {p90:>8.3f}")


# -- names -------------------------------------------------------------------------------------


def print_names(results):
    """Per image: the people each service named (most common answer over the rounds), faces
    and unknown faces, and whether the named sets agree."""
    defaults = Settings()
    print(f"\nsame names (ours: tolerance {defaults.tolerance} + ratio test {defaults.ratio};"
          " naive: first encoding within 0.6)")
    disagreements = 0
    for image in results["ours"]:
        answers = {}
        for label in ("ours", "naive"):
            seen = Counter(names_of(a) for _, a, error in results[label][image] if not error)
            answers[label] = seen.most_common(1)[0][0] if seen else ((), 0, 0)
            if len(seen) > 1:
                print(f"  {image}: {label} answered differently across rounds: {dict(seen)}")
        agree = answers["ours"][0] == answers["naive"][0]
        disagreements += not agree
        for label in ("ours", "naive"):
            named, unknown, total = answers[label]
            print(f"  {image:<30} {label:<5} faces {total}, unknown {unknown}, "
                  f"named {', '.join(named) or '-'}")
        print(f"  {image:<30} {'agree' if agree else 'DISAGREE'}")
    print(f"images where the named people differ: {disagreements} of {len(results['ours'])}")


# -- the floor ---------------------------------------------------------------------------------


def floors(paths, rounds):
    """{image: seconds}: HOG at the service's detection size on one thread, divided by the
    cores, plus one encoding without jitter per face; medians of rounds runs, in this process
    (images decoded as the service decodes a request's)."""
    settings = recognizer.Settings()
    cores = len(os.sched_getaffinity(0))
    found = {}
    for name, path in paths.items():
        picture = recognizer.pictures.from_bytes(settings, path.read_bytes())
        scale = min(1.0, settings.detect_max_side / max(picture.pixels.shape[:2]))
        detect, encode = [], []
        for _ in range(rounds + 1):
            started = time.perf_counter()
            boxes = faces.detect_scaled(picture.pixels, scale)
            detect.append(time.perf_counter() - started)
            started = time.perf_counter()
            faces.encode(picture.pixels, boxes)
            encode.append(time.perf_counter() - started)
        found[name] = (statistics.median(detect[1:]) / cores + statistics.median(encode[1:]))
    return found


def upscaled(faces_dir, tmp):
    """The 12 MP photo: the group photo upscaled (Lanczos), as a phone would send it."""
    from PIL import Image

    source, name, size = UPSCALED
    with Image.open(faces_dir / source) as photo:
        photo.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(tmp / name, quality=90)
    return tmp / name


# -- main --------------------------------------------------------------------------------------


def bench(args, tmp):
    """Enrol, start the servers, run the three comparisons and print them."""
    people_dir = args.faces / "people"
    store, npz = tmp / "store.sqlite3", tmp / "known.npz"
    forced, odd = enrol_ours(store, people_dir), write_npz(npz, people_dir)
    print(f"enrolled {len(ENROL)} people, one photo each: {', '.join(ENROL)}")
    print(f"  ours: quality gate overridden (force) for: {', '.join(forced) or 'none'}; "
          f"naive .npz: photos without exactly one face: {', '.join(odd) or 'none'}")
    ours_env = {"FACEREC_STORE": str(store), "FACEREC_ALLOW_PRIVATE_NETWORKS": "1"}
    served = tmp / "faces"
    served.mkdir()
    for relative_ in IMAGES:
        (served / relative_).parent.mkdir(parents=True, exist_ok=True)
        (served / relative_).write_bytes((args.faces / relative_).read_bytes())
    made = upscaled(args.faces, served)
    relative = [*IMAGES, made.name]
    with image_server(served, tmp) as files, \
            dev_server("scripts/naive_api.py", {"NAIVE_KNOWN": str(npz)}, tmp, "naive") as naive:
        images = {Path(r).name: f"{files}/{r}" for r in relative}
        print(f"images: {', '.join(IMAGES)} (from {args.faces}), and {made.name}: "
              f"{UPSCALED[0]} upscaled to {UPSCALED[2][0]}x{UPSCALED[2][1]} (12 MP; upscaled, "
              f"not a real 12 MP photo); served by http.server")
        with dev_server("api.py", ours_env, tmp, "ours") as ours:
            results = latency({"ours": ours, "naive": naive}, images, args.rounds)
        floor = floors({Path(r).name: served / r for r in relative}, args.rounds)
        print_latency(results, args.rounds, floor)
        print_names(results)
        urls = list(images.values())
        workers = len(os.sched_getaffinity(0))
        print(f"\nthroughput: {args.clients} clients for {args.seconds:g} s each, cycling "
              f"through the {len(urls)} images (after one warm-up request per client)")
        print(f"{'server':<42} {'req/s':>7} {'errors':>7} {'median s':>9} {'p90 s':>8}")
        # the rate limit off: this measures what the workers can do, not the limiter
        with gunicorn_server(ours_env | {"FACEREC_RATE_LIMIT": "0"}, tmp, workers) as ours:
            mine = throughput(ours, urls, args.clients, args.seconds)
        print_throughput_row(f"ours: gunicorn -w {workers}", mine)
        theirs = throughput(naive, urls, args.clients, args.seconds)
        print_throughput_row("naive: hug dev server, 1 process", theirs)
    ratio = mine[0] / theirs[0]
    print(f"ours/naive throughput: {ratio:.2f}x; goal of at least 5x: "
          f"{'met' if ratio >= 5 else 'NOT met'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=FACES)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    args.faces = args.faces.resolve()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench_api.") as tmp:
        bench(args, Path(tmp))


if __name__ == "__main__":
    main()
