"""Request parameters and bodies: hug types, which validate and document HTTP and the CLI
alike, and the body parsers for each content type. Every refusal is a stable code, with the
rule in words as its detail."""

from __future__ import annotations

import argparse
import io
import re
import urllib.parse
from typing import Callable

import hug

from .. import clips, limits, uploads
from ..errors import ImageTooLarge, InvalidParameter, UnsupportedMediaType
from ..limits import Bound
from ..names import check_name


class InvalidValue(ValueError, argparse.ArgumentTypeError):
    """A bad value, as ``code: detail``: hug's HTTP validation reports it (``coded_errors``
    splits it), and argparse prints it."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def _bounded(bound: Bound, doc: str) -> hug.types.Type:
    """A hug type for a number within a bound: digits only for whole numbers (no sign,
    space, fraction or exponent)."""

    @hug.type(extend=hug.types.text)
    def number(value):
        if bound.whole:
            if not re.fullmatch(r"[0-9]{1,19}", value) or int(value) not in bound:
                raise InvalidValue("out_of_range", bound.rule)
            return int(value)
        try:
            parsed = float(value)
        except ValueError:
            raise InvalidValue("out_of_range", bound.rule) from None
        if parsed not in bound:
            raise InvalidValue("out_of_range", bound.rule)
        return parsed

    number.__doc__ = f"{doc}: {bound.rule}"
    return number


tolerance = _bounded(limits.TOLERANCE, "A distance; lower is stricter")
top_k = _bounded(limits.TOP_K, "How many candidates to list")
upsample = _bounded(limits.UPSAMPLE, "Times to upsample before detection")
page_number = _bounded(limits.PAGE, "A page of the list")
page_size = _bounded(limits.PAGE_SIZE, "How many people a page lists")
face_id = _bounded(limits.FACE_ID, "A face's id")
build_workers = _bounded(limits.BUILD_WORKERS, "Processes that encode")
video_scale = _bounded(limits.VIDEO_SCALE, "Resize frames by this for detection")
video_every = _bounded(limits.VIDEO_EVERY, "Detect every this many frames")
stream_id = _bounded(limits.FACE_ID, "A stream's id")
webhook_id = _bounded(limits.FACE_ID, "A webhook's id")
event_id = _bounded(limits.FACE_ID, "An event's id")
since_id = _bounded(limits.EVENT_ID, "Events after this id")
event_limit = _bounded(limits.EVENT_LIMIT, "How many events to list")
live_fps = _bounded(limits.LIVE_FPS, "Frames a second, at most")
track_id = _bounded(limits.FACE_ID, "A track's id")
face_limit = _bounded(limits.FACE_LIMIT, "How many of the largest faces to answer for (0: all)")
probability = _bounded(limits.PROBABILITY, "A probability")
zero_based_page = _bounded(limits.ZERO_BASED_PAGE, "A page of the list, the first is 0")
max_shots = _bounded(limits.MAX_SHOTS, "Frames of a video to enrol, at most")


@hug.type(extend=hug.types.text)
def model(value):
    """The face detector: hog or cnn"""
    if value not in ("hog", "cnn"):
        raise InvalidValue("invalid_value", "hog or cnn")
    return value


class _Flag(type(hug.types.smart_boolean)):
    """true or false (also 1/0, yes/no, on/off); on the command line, a flag"""

    __slots__ = ()

    def __call__(self, value):
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
        raise InvalidValue("invalid_value", "true or false")


flag = _Flag()  # a subclass of hug's boolean type: hug makes a --flag of it on the CLI


@hug.type(extend=hug.types.text)
def person_name(value):
    """1-100 letters, digits, spaces and . ' ’ - , _ including a letter or digit"""
    try:
        return check_name(value)
    except InvalidParameter as error:
        raise InvalidValue(error.message, error.detail) from None


# CompreFace's face_plugins (openapi.yaml's FacePlugins schema has this pattern)
PLUGIN_NAMES = re.compile(r" *[A-Za-z0-9_-]{1,40}(?: *, *[A-Za-z0-9_-]{1,40}){0,9} *")


@hug.type(extend=hug.types.text)
def plugin_names(value):
    """1 to 10 names of face plugins, separated by commas, each 1-40 letters, digits, _ or -"""
    if not PLUGIN_NAMES.fullmatch(value):
        raise InvalidValue("invalid_value", "1 to 10 comma-separated names, each 1-40"
                           " letters, digits, _ or -")
    return tuple(name.strip() for name in value.split(","))


@hug.type(extend=hug.types.text)
def stream_name(value):
    """1-64 letters, digits, _ . - beginning with a letter or digit"""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
        raise InvalidValue("invalid_name", stream_name.__doc__)
    return value


@hug.type(extend=hug.types.text)
def session_id(value):
    """A webcam session's id, as POST /sessions gave it"""
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9_-]{16}", value):
        raise InvalidValue("invalid_value", "a session's id, as POST /sessions gave it")
    return value


def event_kinds(value):
    """appear, change and/or leave: a JSON list, or separated by commas"""
    kinds = value if isinstance(value, list) else str(value).split(",")
    kinds = [kind.strip() if isinstance(kind, str) else kind for kind in kinds]
    if not kinds or any(kind not in ("appear", "change", "leave") for kind in kinds):
        raise InvalidValue("invalid_value", event_kinds.__doc__)
    return kinds


def person_names(value):
    """People's names: a JSON list of them, or one name"""
    names = value if isinstance(value, list) else [value]
    if not 1 <= len(names) <= 1000 or not all(isinstance(name, str) for name in names):
        raise InvalidValue("invalid_value", "1 to 1000 names")
    try:
        return [check_name(name) for name in names]
    except InvalidParameter as error:
        raise InvalidValue(error.message, error.detail) from None


@hug.type(extend=hug.types.text)
def text(value):
    """Text"""
    return value


def keep_commas_in_query_strings(api) -> None:
    """A hug startup handler: hug has falcon split query values at commas (``?name=King, Jr.``
    would be a list); keep them whole, as the body parsers do."""
    server = getattr(api.http, "falcon", None)  # (none when a command runs)
    if server is not None:
        server.req_options.auto_parse_qs_csv = False


# -- validation errors: codes and details -------------------------------------------------------

_REQUIRED = re.compile(r"Required parameter '.*' not supplied")


def coded_errors(data: dict) -> dict:
    """hug's validation errors as the service's: each ``{"errors": {field: "code: detail"}}``
    becomes ``{"errors": {field: code}, "detail": {field: detail}}``; hug's own sentences
    become codes."""
    codes, details = {}, {}
    for field, message in data.get("errors", {}).items():
        message = str(message)
        if _REQUIRED.fullmatch(message):
            codes[field] = "missing_parameter"
            continue
        if message == "Invalid text value provided":  # hug's text type, given a list
            codes[field], details[field] = "repeated_parameter", "give it once"
            continue
        code, separator, detail = message.partition(": ")
        if not separator or not re.fullmatch(r"[a-z_]+", code):
            code, detail = "invalid_value", message
        codes[field] = code
        if detail:
            details[field] = detail
    return {"errors": codes} | ({"detail": details} if details else {})


# What hug itself puts among the parameters it validates: the injected service and the
# request and response, when a route takes them.
INJECTED = frozenset({"service", "request", "response", "body"})


def only(accepted: tuple[str, ...]) -> Callable[[dict], dict]:
    """A hug validate= function refusing parameters (query, form or JSON) not in accepted."""

    def refuse_unknown(parameters: dict) -> dict:
        unknown = sorted(set(parameters) - set(accepted) - INJECTED)
        rule = ", ".join(accepted) or "none"
        return {name: f"unknown_parameter: accepted: {rule}" for name in unknown[:10]}

    return refuse_unknown


# -- bodies -----------------------------------------------------------------------------------

# What each JSON body field must be: hug's types would turn true into 1.0 or 5 into "5".
_JSON_TYPES = {
    "image_url": (str,), "image_base64": (str,), "other_image_url": (str,),
    "other_image_base64": (str,), "name": (str,), "model": (str,), "tolerance": (int, float),
    "top_k": (int,), "upsample": (int,), "largest_face": (bool,), "force": (bool,),
    "new_name": (str,), "image": (str,), "other_image": (str,), "video": (str,),
    "max_shots": (int,),
    "source": (str,), "every": (int,), "scale": (int, float), "url": (str,),
    "events": (str, list), "people": (str, list), "unknown": (bool,), "secret": (str,),
    # the CompreFace surface's (recognizer.web.compat)
    "file": (str,), "source_image": (str,), "target_image": (str,), "subject": (str,),
    "api_endpoint": (str,),
}
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")  # JSON's "\ud800" parses, but is no text
_JSON_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number",
                    bool: "true or false", list: "a list"}
IMAGE_TYPES = ("multipart/form-data", "application/json", "application/x-www-form-urlencoded",
               "image/*", "application/octet-stream")
# /enroll also reads a video clip.
ENROLL_TYPES = IMAGE_TYPES + ("video/*",)
FORM_TYPES = ("application/json", "application/x-www-form-urlencoded")


def _strict(parse: Callable) -> Callable:
    """A hug body parser whose malformed input is a 400, not an unexpected error."""

    def parse_or_refuse(body, **params):
        try:
            return parse(body, **params)
        except (ValueError, LookupError, RecursionError):  # bad JSON, bytes, charset, nesting
            raise InvalidParameter("body", "malformed_body") from None

    return parse_or_refuse


def _json_object(body, **params):
    """A JSON body: an object whose known fields have their JSON types (null is a wrong type:
    leave a field out instead) and hold text without lone surrogates."""
    fields = _strict(hug.input_format.json)(body, **params)
    if not isinstance(fields, dict):
        raise InvalidParameter("body", "malformed_body", "a JSON object")
    for name, allowed in _JSON_TYPES.items():
        if name in fields and type(fields[name]) not in allowed:
            raise InvalidParameter(name, "wrong_type", _JSON_TYPE_NAMES[allowed[-1]])
        texts = fields.get(name) if isinstance(fields.get(name), list) else [fields.get(name)]
        if any(isinstance(text, str) and _LONE_SURROGATE.search(text) for text in texts):
            raise InvalidParameter(name, "invalid_value", "text (no lone surrogate escapes)")
    return {name: value if not isinstance(value, bool) else str(value).lower()
            for name, value in fields.items()}


# How image files begin: a "form" that begins so is an image sent by `curl --data-binary`,
# whose default content type is application/x-www-form-urlencoded.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _form(body, charset: str = "utf-8", **params) -> dict:
    """A url-encoded form (the first of a repeated field; an empty field is absent). Not
    hug's parser: it splits every value at its commas, and names and data: URIs have them."""
    text = body.read().decode(charset or "utf-8")
    return dict(reversed(urllib.parse.parse_qsl(text, keep_blank_values=False)))


def _form_or_image(body, **params) -> dict:
    """A url-encoded form, or an image that a client sent as one (curl's default type)."""
    data = body.read()
    if data.startswith(IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return {"image": data}
    return _form(io.BytesIO(data), **params)


def _path_kept(parse: Callable) -> Callable:
    """A body parser refusing a body that names the person: hug would let it replace the
    path's name."""

    def parse_and_check(body, **params):
        fields = parse(body, **params)
        if isinstance(fields, dict) and "name" in fields:
            raise InvalidParameter("name", "only_in_path")
        return fields

    return parse_and_check


def _refuse(accepted: tuple[str, ...]) -> Callable:
    def refuse(body, **params):
        raise UnsupportedMediaType(", ".join(accepted))

    return refuse


class _ByType(dict):
    """Body parsers by content type, for hug, which looks a parser up by exact type: every
    image/* type (and application/octet-stream) goes to the raw image reader, every video/*
    type to the raw video reader if the route has one, and any other type is refused with 415,
    naming the types the route takes."""

    def __init__(self, parsers: dict, accepted: tuple[str, ...],
                 images: Callable | None = None, videos: Callable | None = None) -> None:
        super().__init__(parsers)
        self.images, self.videos, self.refuse = images, videos, _refuse(accepted)

    def get(self, content_type, default=None):
        content_type = (content_type or "").lower()  # media types are case-insensitive
        if self.videos is not None and content_type.startswith("video/"):
            return self.videos
        if self.images is not None and (content_type.startswith("image/")
                                        or content_type == "application/octet-stream"):
            return self.images
        return _without_injected(super().get(content_type)) or self.refuse


def _without_injected(parse: Callable | None) -> Callable | None:
    """A body parser refusing the names of what hug injects (the service, the request): hug
    would let the injected value win, and the caller's would be dropped without a word."""
    if parse is None:
        return None

    def parse_and_check(body, **params):
        fields = parse(body, **params)
        for name in sorted(set(fields) & INJECTED) if isinstance(fields, dict) else ():
            raise InvalidParameter(name, "unknown_parameter")
        return fields

    return parse_and_check


def image_bodies(max_bytes: Callable[[], int], types: tuple[str, ...] = IMAGE_TYPES,
                 max_video_bytes: Callable[[], int] | None = None) -> _ByType:
    """The bodies of the routes that take images: multipart forms, JSON, url-encoded forms and
    raw images (or those of them that types names), none read past what ``max_bytes()``
    allows (read per request: settings may change), base64 included. With
    ``max_video_bytes``, also a video clip: a multipart part ``video``, or a raw ``video/*``
    body (or an ``application/octet-stream`` one that begins as a video file does)."""
    videos = max_video_bytes or (lambda: 0)
    accepted = types if max_video_bytes is None else types + ("video/*",)

    def raw_image(body, content_length=0, **params):
        if max_video_bytes is None:
            return {"image": uploads.read_raw(body, content_length, max_bytes())}
        data = uploads.read_raw(body, content_length, max(max_bytes(), videos()))
        if clips.looks_like_video(data):
            return {"video": data}
        if len(data) > max_bytes():
            raise ImageTooLarge(detail=f"bytes: at most {max_bytes()}")
        return {"image": data}

    def raw_video(body, content_length=0, **params):
        return {"video": uploads.read_raw(body, content_length, videos(), "video")}

    def multipart(body, content_length=0, **params):
        return uploads.read_multipart(body, params.get("boundary"), content_length, max_bytes(),
                                      videos())

    parsers = {"multipart/form-data": multipart, "application/json": _json_object,
               "application/x-www-form-urlencoded": _strict(_form_or_image)}
    return _ByType({kind: parse for kind, parse in parsers.items() if kind in accepted},
                   accepted, images=raw_image if "image/*" in accepted else None,
                   videos=None if max_video_bytes is None else raw_video)


# The bodies of the routes that take fields only (POST /streams, /webhooks): JSON or a form.
FORM_BODIES = _ByType({
    "application/json": _json_object,
    "application/x-www-form-urlencoded": _strict(_form),
}, FORM_TYPES)

# The bodies of POST /people/{name}/rename: JSON or a form, without the path's name.
RENAME_BODIES = _ByType({
    "application/json": _path_kept(_json_object),
    "application/x-www-form-urlencoded": _path_kept(_strict(_form)),
}, FORM_TYPES)


class PathKept:
    """A route's body parsers refusing the fields named like its path parameters (400
    ``only_in_path``): hug would let the body's value replace the path's, so that
    ``POST /events/1/enroll`` with ``{"event_id": 2}`` would enrol event 2."""

    def __init__(self, bodies: dict, names: frozenset[str]) -> None:
        self.bodies, self.names = bodies, names

    def get(self, content_type, default=None):
        parse = self.bodies.get(content_type, default)
        if parse is None:
            return None

        def parse_and_check(body, **params):
            fields = parse(body, **params)
            for name in sorted(set(fields) & self.names) if isinstance(fields, dict) else ():
                raise InvalidParameter(name, "only_in_path")
            return fields

        return parse_and_check
