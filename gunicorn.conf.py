"""gunicorn's settings for this service; gunicorn reads ./gunicorn.conf.py when started here.

The access log (off unless --access-logfile is given) names the path only: the query string of
/recognize and /enroll carries image URLs and the tokens in them.
"""

access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
