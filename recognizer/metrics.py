"""The service's Prometheus metrics (``GET /metrics``): requests, latencies, the pipeline's
stages, faces per image, the gallery's size, and the streams' frame rates, reconnections and
events. Under gunicorn every process writes its own values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, set up by gunicorn.conf.py
or scripts/serve) and any worker's /metrics adds them up; without it (hug's development server,
the CLI, tests) each process counts for itself. prometheus_client is imported, and the metrics
made, at their first use, never on import."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a health check (1 ms) to a crowd photo on a busy host (tens of seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
FACE_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)


_made: list[SimpleNamespace] = []
_making = threading.Lock()


def _metrics() -> SimpleNamespace:
    """The metrics, made at the first call (once, whichever thread comes first)."""
    if not _made:
        with _making:
            if not _made:
                _made.append(_make())
    return _made[0]


def _make() -> SimpleNamespace:
    from prometheus_client import Counter, Gauge, Histogram

    return SimpleNamespace(
        requests=Counter("facerec_http_requests", "HTTP requests answered, by method, route"
                         " template and status", ["method", "route", "status"]),
        latency=Histogram("facerec_http_request_duration_seconds", "Time to answer an HTTP"
                          " request, by route template", ["route"], buckets=LATENCY_BUCKETS),
        stages=Histogram("facerec_stage_duration_seconds", "Time a request spent in a stage of"
                         " the pipeline (fetch, decode, detect, encode, match)", ["stage"],
                         buckets=STAGE_BUCKETS),
        faces=Histogram("facerec_faces_per_image", "Faces found in an image by /recognize",
                        buckets=FACE_BUCKETS),
        reencoded=Counter("facerec_faces_reencoded", "Faces encoded again with jitters because"
                          " their decision was near a boundary"),
        people=Gauge("facerec_gallery_people", "People enrolled, as the answering worker's"
                     " gallery has them", multiprocess_mode="livemostrecent"),
        gallery_faces=Gauge("facerec_gallery_faces", "Faces enrolled, as the answering worker's"
                            " gallery has them", multiprocess_mode="livemostrecent"),
        fps=Gauge("facerec_stream_fps", "Frames a second a stream is read at (0 while it is"
                  " not running)", ["stream"], multiprocess_mode="livemostrecent"),
        reconnects=Counter("facerec_stream_reconnects", "Times a stream's source was opened"
                           " again after it dropped or ended", ["stream"]),
        events=Counter("facerec_stream_events", "Events a stream recorded, by kind (appear,"
                       " change, leave)", ["stream", "kind"]),
    )


def request_done(method: str, route: str, status: str, seconds: float,
                 stages: dict[str, float]) -> None:
    """Count an answered request, its latency and its stages (milliseconds, by name)."""
    found = _metrics()
    found.requests.labels(method, route, status).inc()
    found.latency.labels(route).observe(seconds)
    for name, milliseconds in stages.items():
        found.stages.labels(name).observe(milliseconds / 1000)


def faces_found(count: int, reencoded: int = 0) -> None:
    """Count the faces /recognize found in one image, and how many it encoded again."""
    found = _metrics()
    found.faces.observe(count)
    if reencoded:
        found.reencoded.inc(reencoded)


def stream_status(stream_id: int, fps: float | None) -> None:
    """A stream's frame rate now (None or 0 when it is not running)."""
    _metrics().fps.labels(str(stream_id)).set(fps or 0.0)


def stream_reconnected(stream_id: int) -> None:
    """A stream's source is being opened again."""
    _metrics().reconnects.labels(str(stream_id)).inc()


def stream_event(stream_id: int, kind: str) -> None:
    """A stream recorded an event."""
    _metrics().events.labels(str(stream_id), kind).inc()


def exposition(people: int | None = None, faces: int | None = None) -> bytes:
    """Every metric in Prometheus' text format: all processes' under gunicorn (multiprocess
    mode), else this process's. The gallery's size is set first when given."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

    found = _metrics()
    if people is not None:
        found.people.set(people)
        found.gallery_faces.set(faces or 0)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def process_gone(pid: int) -> None:
    """Forget a process's gauges (its counters and histograms still count): gunicorn's
    child_exit, and scripts/serve when a stream runner stops."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
