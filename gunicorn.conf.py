"""gunicorn's settings for this service; gunicorn reads ./gunicorn.conf.py when started here
(scripts/serve runs it behind nginx).

Workers are processes of threads (gthread): a long recognition holds one thread, and /health,
/people and the like answer from the others at once. Live views and event feeds, which stay
open for hours, are served by a second gunicorn of many threads (scripts/serve), never here.
Each worker loads dlib's models and the gallery as it starts, so that its first request is as
fast as the next (/ready says when a worker can recognise). Logs keep URLs, paths and request
lines out (recognizer.web.logs).
"""

worker_class = "gthread"
threads = 8
timeout = 60  # a worker whose main loop stops answering for this long is replaced
graceful_timeout = 20
logger_class = "recognizer.web.logs.PrivateLogger"
control_socket_disable = True  # (by default one in $HOME that every gunicorn shares)


def post_worker_init(worker):
    """Start the worker: settings read, store open, models and gallery loaded, logged. The
    listener of live views and event feeds (``--name facerec-live``) recognises nothing."""
    import api

    api.start_serving(recognises=worker.cfg.proc_name != "facerec-live")
