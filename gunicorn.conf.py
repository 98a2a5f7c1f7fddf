"""gunicorn's settings for this service; gunicorn reads ./gunicorn.conf.py when started here
(scripts/serve runs it behind nginx).

Workers are processes of threads (gthread): a long recognition holds one thread, and /health,
/people and the like answer from the others at once (a worker computes one recognition per core
at a time, and its other recognitions wait without holding the GIL: recognizer.service). Live views and event feeds, which stay
open for hours, are served by a second gunicorn of many threads (scripts/serve), never here.
Each worker loads dlib's models and the gallery as it starts, so that its first request is as
fast as the next (/ready says when a worker can recognise). Logs keep URLs, paths and request
lines out (recognizer.web.logs).

Every process of the server (and, under scripts/serve, the live listener and the stream runner)
writes its metrics to PROMETHEUS_MULTIPROC_DIR, and any worker's /metrics adds them up. When it
is not set, a folder is made for this server here, before any worker starts, and removed when
the server stops; a process that ends has its gauges forgotten (recognizer.metrics).
"""

import os
import shutil
import tempfile

worker_class = "gthread"
threads = 16
timeout = 60  # a worker whose main loop stops answering for this long is replaced
graceful_timeout = 20
logger_class = "recognizer.web.logs.PrivateLogger"
control_socket_disable = True  # (by default one in $HOME that every gunicorn shares)


def post_worker_init(worker):
    """Start the worker: settings read, store open, models and gallery loaded, logged. The
    listener of live views and event feeds (``--name facerec-live``) recognises nothing."""
    import api

    api.start_serving(recognises=worker.cfg.proc_name != "facerec-live")


def _metrics_folder() -> None:
    """Give this server a folder of its own for the workers' metrics, unless it has one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="facerec-metrics-", dir=base)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    os.environ["_FACEREC_OWN_METRICS_DIR"] = folder  # removed by on_exit (not a setting)


_metrics_folder()


def child_exit(server, worker):
    """A worker ended: its gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """The server stops: remove the metrics folder it made for itself."""
    folder = os.environ.get("_FACEREC_OWN_METRICS_DIR")
    if folder and folder == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(folder, ignore_errors=True)
