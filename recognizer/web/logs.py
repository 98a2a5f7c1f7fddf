"""gunicorn's logger, keeping the service's promise about logs: no URL, query, path or request
line in them (they carry image URLs, tokens and person names), and no control characters
(a request line of ``/people/x%0AFORGED`` must not write a forged line). gunicorn's access log
is left out: the service logs each request itself, by route template (``/people/{name}``).
With FACEREC_LOG_FORMAT=json, gunicorn's own lines are JSON objects too (``requestlog``)."""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

# What is scrubbed from gunicorn's messages: quoted text (request lines, header values and
# URIs appear quoted in its errors), then URLs and paths, then any control character left.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_URLS = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*|(?<![\w.])/\S*", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def scrub(message: object) -> str:
    """A log message with quoted text, URLs and paths replaced, and control characters
    escaped."""
    text = _URLS.sub("<path>", _QUOTED.sub("'…'", str(message)))
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


class PrivateLogger(Logger):
    """gunicorn's Logger with every error message scrubbed and no access log."""

    def setup(self, cfg):
        super().setup(cfg)
        from ..config import Settings
        from .requestlog import formatter

        if Settings.from_env().log_format == "json":
            for handler in self.error_log.handlers:
                handler.setFormatter(formatter("json"))

    def critical(self, msg, *args, **kwargs):
        super().critical(scrub(msg % args if args else msg), **kwargs)

    def error(self, msg, *args, **kwargs):
        super().error(scrub(msg % args if args else msg), **kwargs)

    def warning(self, msg, *args, **kwargs):
        super().warning(scrub(msg % args if args else msg), **kwargs)

    def info(self, msg, *args, **kwargs):
        super().info(scrub(msg % args if args else msg), **kwargs)

    def debug(self, msg, *args, **kwargs):
        super().debug(scrub(msg % args if args else msg), **kwargs)

    def exception(self, msg, *args, **kwargs):
        # the traceback of an error handling a request holds its URI: the type of error only
        super().error(scrub(msg % args if args else msg))

    def access(self, resp, req, environ, request_time):
        """No access log here: the service's own line names the route, not the path."""
