"""Time build on a folder-per-person tree: one process against a pool of worker processes.

Each run is the real command line, ``hug -f api.py -c build TREE --workers N``, into a new
empty store, timed from start to exit, so imports and the pool's start-up count. Runs take
turns (1, N, 1, N, ...) so that a change in the machine's load hits both alike; each run's
line shows the load average when it started, and the CPU time it used (all its processes).
Prints each configuration's median wall time, files per second and speed-up over one process,
the baseline measured in the same run. The baseline is build as a user runs it: with
``--workers 1``, in one process whose BLAS keeps its default threads; ``--one-blas-thread``
adds one-process runs with OPENBLAS_NUM_THREADS=1, to show what those threads are worth.

    .venv/bin/python scripts/bench_build.py [--tree ../shared/faces/lfw_dev] [--limit N]
        [--workers N] [--repeats 3] [--one-blas-thread]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recognizer import faces
from recognizer.build import IMAGE_SUFFIXES, pool
from recognizer.testing import FACES, ROOT


def build(tree: Path, workers: int, store: Path, environ: dict) -> tuple[float, float, dict]:
    """Wall and CPU seconds the command line takes to build tree into a new store; its summary.
    """
    command = [sys.executable, "-m", "hug", "-f", "api.py", "-c", "build", str(tree),
               "--workers", str(workers)]
    environ = os.environ | {"FACEREC_STORE": str(store), "PYTHONWARNINGS": "ignore"} | environ
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode:
        sys.exit(f"build failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, cpu, json.loads(done.stdout)["summary"]


def _children_cpu() -> float:
    """CPU seconds of the child processes waited for so far (and of theirs: the workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def limited(tree: Path, limit: int | None, scratch: Path) -> tuple[Path, int]:
    """The tree, or a copy of its first limit photos (in build's order); and its photo count."""
    photos = [path for path in sorted(tree.glob("*/*")) if path.suffix.lower() in IMAGE_SUFFIXES]
    if limit is None or limit >= len(photos):
        return tree, len(photos)
    copy = scratch / "tree"
    for path in photos[:limit]:
        (copy / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy / path.parent.name / path.name)
    return copy, limit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=FACES / "lfw_dev")
    parser.add_argument("--limit", type=int, help="build only the tree's first N files")
    parser.add_argument("--workers", type=int, default=pool.usable_cores())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one-blas-thread", action="store_true",
                        help="also time one process with OPENBLAS_NUM_THREADS=1")
    args = parser.parse_args()

    configs = {"1 process": (1, {}), f"{args.workers} workers": (args.workers, {})}
    if args.one_blas_thread:
        configs["1 process, 1 BLAS thread"] = (1, {"OPENBLAS_NUM_THREADS": "1"})
    with tempfile.TemporaryDirectory() as scratch:
        tree, count = limited(args.tree, args.limit, Path(scratch))
        print(f"{count} files in {args.tree}; os.cpu_count()={os.cpu_count()}, usable cores="
              f"{pool.usable_cores()}; dlib BLAS={faces.blas_enabled()}, OPENBLAS_NUM_THREADS="
              f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; {args.repeats} runs each")
        times = {name: [] for name in configs}
        summaries = {}
        for run in range(args.repeats):
            for name, (workers, environ) in configs.items():
                store = Path(scratch) / f"store-{run}-{workers}-{len(environ)}.sqlite3"
                load = os.getloadavg()[0]
                seconds, cpu, summaries[name] = build(tree, workers, store, environ)
                times[name].append(seconds)
                print(f"  run {run + 1}: {name:<26} {seconds:6.1f} s, {cpu:6.1f} s CPU, load "
                      f"{load:4.2f}  {summaries[name]}", flush=True)
    report(times, count)
    if len({json.dumps(summary, sort_keys=True) for summary in summaries.values()}) > 1:
        print("the configurations' outcomes differ:", summaries)


def report(times: dict[str, list[float]], count: int) -> None:
    """Median wall time, files per second and speed-up over the first configuration."""
    baseline = statistics.median(next(iter(times.values())))
    print(f"{'':<26} {'median s':>9} {'files/s':>8} {'speed-up':>9}   runs (s)")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        runs = ", ".join(f"{value:.1f}" for value in seconds)
        print(f"{name:<26} {median:>9.1f} {count / median:>8.2f} {baseline / median:>8.2f}x"
              f"   {runs}")


if __name__ == "__main__":
    main()
