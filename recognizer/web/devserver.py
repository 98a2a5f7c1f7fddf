"""hug's development server (``hug -f api.py``, Python's wsgiref) logs each whole request line,
query string and all, and quotes bad ones in its errors: query strings carry image URLs and
their tokens, paths carry person names."""

from __future__ import annotations

import sys
import wsgiref.simple_server

from .logs import scrub


def keep_queries_out_of_request_logs(api=None) -> None:
    """Make the development server log no request line (the service logs each request by
    its route) and scrub its error messages (a hug startup handler: it runs when the API
    starts serving or a command runs, never on import)."""
    handler = wsgiref.simple_server.WSGIRequestHandler
    handler.log_request = _no_request_line
    handler.log_message = _scrubbed


def _no_request_line(handler, code="-", size="-") -> None:
    """The service has logged the request, by its route and status."""


def _scrubbed(handler, format: str, *args) -> None:
    sys.stderr.write(f"{handler.address_string()} - - [{handler.log_date_time_string()}]"
                     f" {scrub(format % args)}\n")
