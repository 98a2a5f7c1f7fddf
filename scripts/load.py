"""Bounded load test: the production gunicorn command at saturation, and its workers' memory.

Starts, on a temporary store, ``OPENBLAS_NUM_THREADS=1 gunicorn -w $(nproc) api:__hug_wsgi__``
on loopback, with a static file server over the shared photos (FACEREC_ALLOW_PRIVATE_NETWORKS=1),
enrols a few people over HTTP, warms up, then drives it with --clients concurrent clients for
--seconds: /recognize by URL and by upload, /people, /health, an occasional enrol-then-delete,
and a few bad requests. Every --sample seconds it reads the RSS (VmRSS) of every gunicorn worker.

Meanwhile a probe, apart from the clients, asks /health, /ready and /metrics in turn every
--probe seconds on a connection of its own, as a load balancer and Prometheus would: their
latency while every worker is recognising (goal: /health p99 under 50 ms).

It prints the requests, the rate, the status counts, the latency p50/p90/p99 (all and per kind),
the unexpected outcomes (anything but the expected status, 429 or 503; must be 0), and each
worker's RSS after the warm-up against the end (medians of the first and last three samples),
with the growth (goal: under 10%). Exit code 1 when there was an unexpected outcome or a worker
grew by more than the goal. The machine may be shared: the numbers are noisy.

    .venv/bin/python scripts/load.py [--seconds 120] [--clients 16] [--warmup 15] [--sample 5]
                                     [--workers N] [--rate-limit R]
"""

import argparse
import contextlib
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import requests

from recognizer.testing import FACES, ROOT, free_port, serving, wait_ready

BIN = Path(sys.executable).parent
GROWTH_GOAL = 10.0  # percent
HEALTH_GOAL = 0.050  # seconds: /health's p99 at saturation
TIMEOUT = 120

# Enrolled at the start, one upload each (force=true: the quality gate is not under test here).
PEOPLE = {
    "obama": "people/obama/obama.jpg",
    "biden": "people/biden/biden.jpg",
    "rose_leslie": "people/rose_leslie/rose_leslie_img1.jpg",
    "kit_harington": "people/kit_harington/john1.jpeg",
    "alex_lacamoire": "people/alex_lacamoire/alex_lacamoire_img1.jpg",
}
# Recognised, by URL or by upload.
PROBES = [
    "people/obama/obama2.jpg", "people/obama/obama3.jpg", "people/obama/obama-480p.jpg",
    "people/biden/biden2.jpg", "people/rose_leslie/rose_leslie_img2.jpg",
    "people/kit_harington/john2.jpeg", "people/alex_lacamoire/alex_lacamoire1.jpg",
    "people/lin_manuel_miranda/lin-manuel-miranda.png", "misc/two_people.jpg",
    "misc/obama_and_biden.jpg",
]
# (kind, weight): the mix of requests.
MIX = [
    ("recognize_url", 34), ("recognize_upload", 16), ("recognize_raw", 10), ("people", 14),
    ("health", 10), ("enroll_delete", 3), ("bad_scheme", 3), ("bad_parameter", 3),
    ("not_found", 2), ("not_an_image", 3), ("missing_image", 2),
]
ALWAYS_ACCEPTABLE = {429, 503}  # the service shedding load is not an error


def worker_pids(master):
    """The pids whose parent is the gunicorn master."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(entry.name))
    return sorted(pids)


def rss_kib(pid):
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Load:
    """The clients: each picks requests from the mix and records (kind, status, seconds)."""

    def __init__(self, base, images_base, seed):
        self.base, self.images_base = base, images_base
        self.photos = {path: (FACES / path).read_bytes() for path in PROBES}
        self.enrol_photo = (FACES / PEOPLE["obama"]).read_bytes()
        self.kinds, weights = zip(*MIX)
        self.cumulative = list(itertools.accumulate(weights))
        self.seed = seed
        self.names = itertools.count()
        self.lock = threading.Lock()
        self.results = []  # (kind, status or exception name, seconds, measured)
        self.measuring = False
        self.stop = threading.Event()

    def probe(self, every):
        """/health, /ready and /metrics in turn, every `every` seconds, apart from the mix."""
        session = requests.Session()
        for path in itertools.cycle(["/health", "/ready", "/metrics"]):
            if self.stop.wait(every):
                return
            kind = "probe " + path
            _, outcome, seconds = self.timed(session, kind, "GET", path)
            with self.lock:
                self.results.append((kind, outcome, seconds, self.measuring))

    def client(self, number):
        chance = random.Random(self.seed * 1000 + number)
        session = requests.Session()
        while not self.stop.is_set():
            kind = chance.choices(self.kinds, cum_weights=self.cumulative)[0]
            for sub_kind, outcome, seconds in self.request(session, kind, chance):
                with self.lock:
                    self.results.append((sub_kind, outcome, seconds, self.measuring))

    def request(self, session, kind, chance):
        """Send one request of a kind (two for enroll_delete): yields (kind, outcome, seconds)."""
        photo = chance.choice(PROBES)
        if kind == "enroll_delete":
            with self.lock:
                name = f"temp-{next(self.names)}"
            yield self.timed(session, "enroll", "POST", "/enroll", data={"name": name,
                             "force": "true"}, files={"image": ("p.jpg", self.enrol_photo)})
            yield self.timed(session, "delete", "DELETE", f"/people/{name}")
            return
        calls = {
            "recognize_url": ("GET", "/recognize",
                              {"params": {"image_url": f"{self.images_base}/{photo}"}}),
            "recognize_upload": ("POST", "/recognize",
                                 {"files": {"image": ("p.jpg", self.photos[photo])}}),
            "recognize_raw": ("POST", "/recognize", {"data": self.photos[photo], "headers": {
                "Content-Type": "image/png" if photo.endswith(".png") else "image/jpeg"}}),
            "people": ("GET", "/people", {}),
            "health": ("GET", "/health", {}),
            "bad_scheme": ("GET", "/recognize",
                           {"params": {"image_url": f"ftp://127.0.0.1/{photo}"}}),
            "bad_parameter": ("GET", "/recognize", {"params": {
                "image_url": f"{self.images_base}/{photo}", "tolerance": "5"}}),
            "not_found": ("GET", "/no/such/route", {}),
            "not_an_image": ("POST", "/recognize", {"data": b"<html>not an image</html>",
                                                     "headers": {"Content-Type": "image/jpeg"}}),
            "missing_image": ("GET", "/recognize",
                              {"params": {"image_url": f"{self.images_base}/missing.jpg"}}),
        }
        method, path, arguments = calls[kind]
        yield self.timed(session, kind, method, path, **arguments)

    def timed(self, session, kind, method, path, **arguments):
        started = time.monotonic()
        try:
            response = session.request(method, self.base + path, timeout=TIMEOUT, **arguments)
            outcome = response.status_code
        except requests.RequestException as error:
            outcome = type(error).__name__
        return kind, outcome, time.monotonic() - started


EXPECTED = {
    "probe /health": 200, "probe /ready": 200, "probe /metrics": 200,
    "recognize_url": 200, "recognize_upload": 200, "recognize_raw": 200, "people": 200,
    "health": 200, "enroll": 201, "delete": 200, "bad_scheme": 400, "bad_parameter": 400,
    "not_found": 404, "not_an_image": 415, "missing_image": 400,
}


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def latency_line(label, seconds):
    return (f"  {label:<17} n={len(seconds):<6} p50 {percentile(seconds, .5) * 1000:7.0f} ms"
            f"  p90 {percentile(seconds, .9) * 1000:7.0f} ms"
            f"  p99 {percentile(seconds, .99) * 1000:7.0f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120, help="measured load (default 120)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--warmup", type=float, default=15, help="load before measuring")
    parser.add_argument("--sample", type=float, default=5, help="seconds between RSS samples")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="gunicorn workers (default: nproc)")
    parser.add_argument("--rate-limit", help="FACEREC_RATE_LIMIT for the service (default:"
                        " the service's own; 0 turns the limit off)")
    parser.add_argument("--probe", type=float, default=0.25,
                        help="seconds between the probe's requests")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="facerec-load-") as tmp, contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        images_port, port = free_port(), free_port()
        images_base = stack.enter_context(serving(
            [sys.executable, "-m", "http.server", images_port, "--bind", "127.0.0.1",
             "--directory", FACES], images_port, tmp / "images.log", ready_path="/SOURCES.md"))
        env = os.environ | {"FACEREC_STORE": str(tmp / "store.sqlite3"),
                            "FACEREC_ALLOW_PRIVATE_NETWORKS": "1", "OPENBLAS_NUM_THREADS": "1",
                            "PYTHONWARNINGS": "ignore"}
        if args.rate_limit is not None:
            env["FACEREC_RATE_LIMIT"] = args.rate_limit
        log_path = tmp / "gunicorn.log"
        log = stack.enter_context(open(log_path, "w"))
        command = [str(BIN / "gunicorn"), "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
                   "--timeout", "60", "api:__hug_wsgi__"]
        gunicorn = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        stack.callback(stop, gunicorn)
        base = f"http://127.0.0.1:{port}"
        wait_ready(gunicorn, f"{base}/health", log_path)
        print(f"gunicorn -w {args.workers} (OPENBLAS_NUM_THREADS=1), {args.clients} clients,"
              f" {args.seconds:.0f} s measured after {args.warmup:.0f} s of warm-up;"
              f" nproc={len(os.sched_getaffinity(0))},"
              f" rate limit {args.rate_limit or 'as the service defaults'}")

        for name, photo in PEOPLE.items():
            with open(FACES / photo, "rb") as image:
                answer = requests.post(f"{base}/enroll", data={"name": name, "force": "true"},
                                       files={"image": image}, timeout=TIMEOUT)
            if answer.status_code != 201:
                raise SystemExit(f"enrolling {name}: {answer.status_code} {answer.text}")
        print(f"enrolled: {', '.join(PEOPLE)}")

        load = Load(base, images_base, args.seed)
        clients = [threading.Thread(target=load.client, args=(n,), daemon=True)
                   for n in range(args.clients)]
        clients.append(threading.Thread(target=load.probe, args=(args.probe,), daemon=True))
        for client in clients:
            client.start()
        time.sleep(args.warmup)

        master = gunicorn.pid
        samples = defaultdict(list)  # pid -> [rss KiB]
        with load.lock:
            load.measuring = True
        started = time.monotonic()
        deadline = started + args.seconds
        while True:
            for pid in worker_pids(master):
                if (rss := rss_kib(pid)) is not None:
                    samples[pid].append(rss)
            if time.monotonic() >= deadline:
                break
            time.sleep(min(args.sample, max(0.0, deadline - time.monotonic())))
        with load.lock:
            load.measuring = False
        elapsed = time.monotonic() - started
        load.stop.set()
        for client in clients:
            client.join(TIMEOUT + 10)
        final_workers = worker_pids(master)
        server_log = log_path.read_text(errors="replace")

    return report(load, elapsed, samples, final_workers, server_log, args.sample)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def report(load, elapsed, samples, final_workers, server_log, every):
    measured = [(kind, outcome, seconds) for kind, outcome, seconds, m in load.results if m]
    statuses = Counter(outcome for _, outcome, _ in measured)
    unexpected = Counter((kind, outcome) for kind, outcome, _ in measured
                         if outcome != EXPECTED[kind] and outcome not in ALWAYS_ACCEPTABLE)
    kinds = Counter(kind for kind, _, _ in measured)
    print(f"\nrequests: {len(measured)} in {elapsed:.1f} s = {len(measured) / elapsed:.2f}/s"
          f"  (by kind: {dict(sorted(kinds.items()))})")
    print(f"statuses: {dict(sorted(statuses.items(), key=str))}")
    print("latency (every request, then by kind):")
    print(latency_line("all", [s for _, _, s in measured]))
    for kind in sorted(kinds):
        print(latency_line(kind, [s for k, _, s in measured if k == kind]))
    answered = [s for k, o, s in measured if k.startswith("recognize") and o == 200]
    print(latency_line("recognize, 200", answered))
    print(f"unexpected outcomes (not the expected status, 429 or 503): {sum(unexpected.values())}"
          + (f" {dict(unexpected)}" if unexpected else ""))
    health = [s for k, _, s in measured if k in ("health", "probe /health")]
    p99 = percentile(health, .99)
    print(f"goal: /health p99 under {HEALTH_GOAL * 1000:.0f} ms while recognitions saturate the"
          f" workers: {'met' if p99 < HEALTH_GOAL else 'NOT met'} ({p99 * 1000:.0f} ms,"
          f" {len(health)} requests)")

    problems = sum(unexpected.values())
    print(f"\nworker RSS (VmRSS every {every:g} s; start = median of the first 3"
          f" samples after warm-up, end = median of the last 3):")
    for pid, values in sorted(samples.items()):
        start, end = statistics.median(values[:3]), statistics.median(values[-3:])
        growth = (end - start) / start * 100
        restarted = "" if pid in final_workers else "  (gone before the end: restarted?)"
        flag = "ok" if growth < GROWTH_GOAL else f"OVER the {GROWTH_GOAL:.0f}% goal"
        print(f"  worker {pid}: start {start / 1024:7.1f} MiB  end {end / 1024:7.1f} MiB  "
              f"peak {max(values) / 1024:7.1f} MiB  growth {growth:+5.1f}%  {flag}"
              f"  ({len(values)} samples){restarted}")
        problems += growth >= GROWTH_GOAL
    new = sorted(set(final_workers) - set(samples))
    if new:
        print(f"  workers started during the run: {new}")
    lines = server_log.splitlines()
    marks = {mark: sum(mark in line for line in lines)
             for mark in ("Traceback", " ERROR ", "WORKER TIMEOUT", "internal_error")}
    print(f"server log: {len(lines)} lines; {marks}")
    problems += marks["Traceback"] + marks["WORKER TIMEOUT"]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
