"""gunicorn's settings for this service; gunicorn reads ./gunicorn.conf.py when started here.

The access log (off unless --access-logfile is given) names the path only: the query string of
/recognize and /enroll carries image URLs and the tokens in them. Each worker loads dlib's
models and the gallery as it starts, so that its first request is as fast as the next (/ready
says when a worker can recognise).
"""

access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def post_worker_init(worker):
    """Start the worker: settings read, store open, models and gallery loaded, logged."""
    import api

    api.start_serving()
