"""hug's development server (``hug -f api.py``, Python's wsgiref) logs each whole request line,
query string and all, and query strings carry image URLs and the tokens in them."""

from __future__ import annotations

import wsgiref.simple_server


def keep_queries_out_of_request_logs(api=None) -> None:
    """Make the development server log the method, path and status only (a hug startup
    handler: it runs when the API starts serving or a command runs, never on import)."""
    wsgiref.simple_server.WSGIRequestHandler.log_request = _log_path_only


def _log_path_only(handler, code="-", size="-") -> None:
    """Log the method, the path without its query, and the status; a request line that did
    not parse (no method or path) is logged as "-"."""
    command = getattr(handler, "command", None) or "-"
    path = (getattr(handler, "path", None) or "-").split("?", 1)[0]
    handler.log_message('"%s %s" %s', command, path.encode("unicode_escape").decode("ascii"),
                        code)
