"""What every request and response goes through, as one falcon middleware: a body over the
limit is refused before it is read, a path parameter can't be replaced from the query, CORS
for the origins allowed, every response hardened, and one log line that says what happened
without saying to whom, carrying the request's id (``X-Request-ID``), with the time spent in
each stage (``Server-Timing``) and counted for /metrics; and an error answered under another API's prefix (CompreFace's,
DeepStack's: ``recognizer.compat``) is reshaped into that API's error body."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from typing import Callable

import falcon
import hug

from .. import compat, metrics, timing
from ..config import Settings
from ..errors import HostNotAllowed, ImageTooLarge, RecognizerError
from ..uploads import body_limit
from . import requestlog
from .inputs import INJECTED

log = logging.getLogger("facerec.api")
# What a browser may send and read across origins (FACEREC_CORS_ORIGINS).
CORS_HEADERS = {"Access-Control-Allow-Headers": "X-API-Key, Content-Type",
                "Access-Control-Expose-Headers": "Retry-After",
                "Access-Control-Max-Age": "600"}
# The routes whose answers say how long each stage of the pipeline took (Server-Timing).
TIMED = frozenset({"/recognize", "/enroll", "/verify", "/detect"})
# How long an error answered before its body was read may wait for the rest of it (drain_body).
DRAIN_SECONDS = 5.0


def refuse(response: falcon.Response, status: str, body: dict,
           headers: dict[str, str] | None = None) -> None:
    """Answer now with a JSON error body; the endpoint (if any is left) does not run."""
    response.status = status
    response.content_type = "application/json; charset=utf-8"
    response.body = json.dumps(body)
    for name, value in (headers or {}).items():
        response.set_header(name, value)
    response.complete = True


def error_headers(error: RecognizerError) -> dict[str, str]:
    """The headers an error's answer carries: Retry-After when rate limited."""
    retry_after = getattr(error, "retry_after", None)
    return {} if retry_after is None else {"Retry-After": str(retry_after)}


def reshape_error(request: falcon.Request, response: falcon.Response) -> None:
    """An error answered under another API's prefix (recognizer.compat), in that API's shape:
    whatever gave it (a route, a requirement, validation, this middleware), it was made in the
    service's shape, and its client reads another."""
    if response.status[:1] not in "45" or compat.surface_of(request.path) is None:
        return
    raw = response.body if response.body is not None else response.data
    try:
        body = json.loads(raw) if raw else None
    except ValueError:  # (not JSON: nothing to reshape)
        return
    reshaped = compat.reshaped_error(request.path, int(response.status[:3]), body)
    if reshaped is not None:
        response.status = falcon.get_http_status(reshaped[0])
        response.data = None
        response.body = json.dumps(reshaped[1])


def drain_body(request: falcon.Request, limit: int) -> None:
    """Read and drop what is left of the body of a request answered with an error, under
    gunicorn, so that the connection stays usable: gunicorn drops at most 64 KiB of a body the
    application left unread and then closes the connection, after an answer that announced
    keep-alive, so the client's next request on it fails (``Remote end closed connection``),
    and behind nginx's kept-alive upstream connections it became someone else's 502. A body
    over the limit (refused by its length) is left, and so is one still coming after
    DRAIN_SECONDS: gunicorn closes those connections, as it should."""
    sock = request.env.get("gunicorn.socket")
    if sock is None:
        return
    try:
        length = request.content_length
    except falcon.HTTPInvalidHeader:  # (answered 400 already; gunicorn closes such a request)
        return
    chunked = request.get_header("Transfer-Encoding") is not None
    if not (length or chunked) or (length or 0) > limit:
        return
    deadline, drained = time.monotonic() + DRAIN_SECONDS, 0
    prior = sock.gettimeout()
    try:
        while drained <= limit:  # (gunicorn's wsgi.input ends where the body ends)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            chunk = request.stream.read(65536)
            if not chunk:
                return
            drained += len(chunk)
    except (OSError, ValueError, falcon.HTTPError):  # (a timeout, a broken body: gunicorn closes)
        return
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(prior)


def host_allowed(header: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header (its port aside) names one of the allowed hosts ("*": any)."""
    host = header.strip().lower()
    host = host[:host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    return "*" in allowed or host in allowed


class Edge:
    """The falcon middleware of the HTTP API."""

    def __init__(self, api: hug.API, status_of: Callable[[RecognizerError], str],
                 settings: Callable[[], Settings],
                 body_only: frozenset[tuple[str, str]] = frozenset()) -> None:
        """
        :param status_of: the HTTP status of a domain error (api.py's table)
        :param settings: gives the settings in force (read per request, never at import)
        :param body_only: the (method, route) whose parameters are taken from the body only
        """
        self.api, self.status_of, self.settings = api, status_of, settings
        self.body_only = body_only

    def process_request(self, request: falcon.Request, response: falcon.Response) -> None:
        """Before anything is read: a body over the limit is refused by its declared length,
        and a CORS preflight from an allowed origin is answered."""
        request.context["started"] = time.monotonic()
        request.context["request_id"], token = requestlog.begin(
            request.get_header("X-Request-ID"))
        request.context["stages"] = stages = contextlib.ExitStack()
        stages.callback(requestlog.end, token)
        request.context["spent"] = stages.enter_context(timing.collect())
        settings = self.settings()
        limit = body_limit(settings.max_image_bytes, settings.max_video_bytes)
        try:
            length = request.content_length or 0
        except falcon.HTTPInvalidHeader:
            refuse(response, falcon.HTTP_400, {"errors": {"content_length": "invalid_value"},
                                               "detail": {"content_length": "a whole number"}})
            return
        injected = sorted(set(request.params) & INJECTED)
        if not host_allowed(request.get_header("Host") or "", settings.allowed_hosts):
            error = HostNotAllowed()
            refuse(response, self.status_of(error), error.as_body())
        elif injected:  # what hug would inject in its place: refused, not silently dropped
            refuse(response, falcon.HTTP_400, {"errors": {injected[0]: "unknown_parameter"}})
        elif length > limit:
            error = ImageTooLarge(detail=f"bytes: a body of at most {limit}")
            refuse(response, self.status_of(error), error.as_body())
        elif (request.method == "OPTIONS" and request.get_header("Origin") in
              settings.cors_origins and request.get_header("Access-Control-Request-Method")):
            response.status = falcon.HTTP_204
            response.set_header("Access-Control-Allow-Methods",
                                ", ".join(self.methods_of(request.path)))
            response.set_headers(CORS_HEADERS)
            response.complete = True

    def process_resource(self, request: falcon.Request, response: falcon.Response, resource,
                         params: dict) -> None:
        """hug lets a query parameter replace a path parameter of the same name, so that
        ``DELETE /people/alice?name=bob`` would delete bob: refuse such a request instead. And
        refuse a query string where the route takes its parameters from the body only."""
        repeated = sorted(set(params) & set(request.params))
        if repeated and not response.complete:
            refuse(response, falcon.HTTP_400, {"errors": {repeated[0]: "only_in_path"}})
        elif (request.method, request.uri_template) in self.body_only and request.params \
                and not response.complete:  # a camera's password or a secret: never in a URL
            refuse(response, falcon.HTTP_400, {"errors": {sorted(request.params)[0]:
                                                          "only_in_body"}})

    def process_response(self, request: falcon.Request, response: falcon.Response, resource,
                         succeeded: bool) -> None:
        """Every response: not cached, not sniffed, CORS for allowed origins; falcon's own 405
        in the service's JSON shape; then the log line."""
        response.set_header("Cache-Control", "no-store")
        response.set_header("X-Content-Type-Options", "nosniff")
        origin = request.get_header("Origin")
        if origin is not None and origin in self.settings().cors_origins:
            response.set_header("Access-Control-Allow-Origin", origin)
            response.set_header("Access-Control-Expose-Headers", "Retry-After")
            response.append_header("Vary", "Origin")
        if response.status == falcon.HTTP_405 or request.method not in falcon.COMBINED_METHODS:
            allowed = response.get_header("Allow") or ", ".join(self.methods_of(request.path))
            refuse(response, falcon.HTTP_405, {"errors": {"method": "method_not_allowed"}},
                   {"Allow": allowed})
        reshape_error(request, response)
        if response.status[:1] in "45":
            settings = self.settings()
            drain_body(request, body_limit(settings.max_image_bytes, settings.max_video_bytes))
        try:
            self._account(request, response)
        finally:  # the request's id and stage timings end with it, whatever happened
            with contextlib.suppress(KeyError):
                request.context["stages"].close()

    def _account(self, request: falcon.Request, response: falcon.Response) -> None:
        """The request's id and timings in the answer, its log line and its metrics."""
        seconds = time.monotonic() - request.context.get("started", time.monotonic())
        spent = request.context.get("spent", {})
        response.set_header("X-Request-ID", request.context.get("request_id", "-"))
        if request.uri_template in TIMED:
            response.set_header("Server-Timing", server_timing(spent, seconds))
        method = request.method.encode("unicode_escape").decode("ascii")[:16]
        log.info("%s %s %s %.0fms", method, request.uri_template or "-", response.status,
                 seconds * 1000)
        if request.method in falcon.COMBINED_METHODS:  # (a made-up method is no label)
            metrics.request_done(request.method, request.uri_template or "unmatched",
                                 response.status[:3], seconds, spent)

    def methods_of(self, path: str) -> list[str]:
        """The methods the routes take at a path, and OPTIONS."""
        methods = {"OPTIONS"}
        for routes in self.api.http.routes.values():
            for template, by_method in routes.items():
                if re.fullmatch(re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template)), path):
                    methods.update(by_method)
        return sorted(methods)


def server_timing(spent: dict[str, float], seconds: float) -> str:
    """A Server-Timing header: each stage's milliseconds, then the total."""
    stages = [f"{name};dur={milliseconds:.1f}" for name, milliseconds in spent.items()]
    return ", ".join([*stages, f"total;dur={seconds * 1000:.1f}"])
