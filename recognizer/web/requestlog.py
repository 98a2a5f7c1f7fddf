"""Which request a log line belongs to, and the log's format. Each request has an id: the
client's ``X-Request-ID`` when it is a sane token, otherwise a new one; it is returned in the
response's ``X-Request-ID`` and carried by every log line written while the request is answered
(``%(request_id)s``, "-" outside requests). ``FACEREC_LOG_FORMAT=json`` writes each line as one
JSON object. Neither format adds anything but the message: no URL, image or encoding."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar, Token

_current: ContextVar[str] = ContextVar("facerec_request_id", default="-")
# What a client's id may be: a UUID, a hex digest, nginx's $request_id, a tracing id.
SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s [%(request_id)s] %(message)s"


def begin(given: str | None) -> tuple[str, Token]:
    """Start a request's logging: (its id, the token that ``end`` takes)."""
    request_id = given if given is not None and SANE.fullmatch(given) else uuid.uuid4().hex
    return request_id, _current.set(request_id)


def end(token: Token) -> None:
    """The request is answered: lines after this carry no id."""
    _current.reset(token)


def current() -> str:
    """The id of the request being answered, or "-"."""
    return _current.get()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, pid, request id, message (and the
    exception's traceback when a line carries one, as the text format does)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname,
                "logger": record.name, "pid": record.process,
                "request_id": getattr(record, "request_id", current()),
                "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of a FACEREC_LOG_FORMAT (text or json)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str) -> None:
    """Once a process (a server or a command starting): every record gets the request's id,
    and the root logger writes INFO and up to stderr in the chosen format (unless something
    else, a test runner, set its handlers up already)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "adds_request_id", False):
        def with_request_id(*args, **kwargs) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            record.request_id = _current.get()
            return record

        with_request_id.adds_request_id = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(with_request_id)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(log_format))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
