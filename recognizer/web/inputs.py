"""Request parameters and bodies: hug types, which validate and document HTTP and the CLI
alike, and the body parsers for each content type."""

from __future__ import annotations

import argparse
import re
from typing import Callable

import hug

from .. import limits, uploads
from ..errors import InvalidParameter
from ..limits import Bound
from ..names import check_name


class InvalidValue(ValueError, argparse.ArgumentTypeError):
    """A bad value: hug's HTTP validation and argparse both print just this message."""


def _bounded(bound: Bound, doc: str) -> hug.types.Type:
    """A hug type for a number within a bound: digits only for whole numbers (no sign,
    space, fraction or exponent)."""

    @hug.type(extend=hug.types.text)
    def number(value):
        if bound.whole:
            if not re.fullmatch(r"[0-9]{1,19}", value) or int(value) not in bound:
                raise InvalidValue(f"must be {bound.rule}")
            return int(value)
        try:
            parsed = float(value)
        except ValueError:
            raise InvalidValue(f"must be {bound.rule}") from None
        if parsed not in bound:
            raise InvalidValue(f"must be {bound.rule}")
        return parsed

    number.__doc__ = f"{doc}, {bound.rule}"
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
model = hug.types.one_of(("hog", "cnn"))


@hug.type(extend=hug.types.text)
def person_name(value):
    """1-100 letters, digits, spaces and ._'- including a letter or digit"""
    try:
        return check_name(value)
    except InvalidParameter as error:
        raise InvalidValue(error.message) from None


# -- bodies -----------------------------------------------------------------------------------

# What each JSON body field must be: hug's types would turn true into 1.0 or 5 into "5".
_JSON_TYPES = {
    "image_url": (str,), "name": (str,), "model": (str,), "tolerance": (int, float),
    "top_k": (int,), "upsample": (int,), "largest_face": (bool,), "force": (bool,),
    "new_name": (str,),
}
_JSON_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number",
                    bool: "true or false"}


def _strict(parse: Callable) -> Callable:
    """A hug body parser whose malformed input is a 400, not an unexpected error."""

    def parse_or_refuse(body, **params):
        try:
            return parse(body, **params)
        except (ValueError, LookupError, RecursionError):  # bad JSON, bytes, charset, nesting
            raise InvalidParameter("body", "malformed_body") from None

    return parse_or_refuse


def _json_object(body, **params):
    """A JSON body: an object whose known fields have their JSON types."""
    fields = _strict(hug.input_format.json)(body, **params)
    if not isinstance(fields, dict):
        raise InvalidParameter("body", "malformed_body")
    for name, allowed in _JSON_TYPES.items():
        if name in fields and type(fields[name]) not in allowed:
            raise InvalidParameter(name, f"must be {_JSON_TYPE_NAMES[allowed[-1]]}")
    return fields


def _path_kept(parse: Callable) -> Callable:
    """A body parser refusing a body that names the person: hug would let it replace the
    path's name."""

    def parse_and_check(body, **params):
        fields = parse(body, **params)
        if isinstance(fields, dict) and "name" in fields:
            raise InvalidParameter("name", "only_in_path")
        return fields

    return parse_and_check


class _ByType(dict):
    """Body parsers by content type, for hug, which looks a parser up by exact type: every
    image/* type goes to the raw image reader, and unknown types (with no fallback to hug's
    defaults) are left unread."""

    def __init__(self, parsers: dict, images: Callable | None = None) -> None:
        super().__init__(parsers)
        self.images = images

    def get(self, content_type, default=None):
        if self.images is not None and content_type and content_type.startswith("image/"):
            return self.images
        return super().get(content_type)


def image_bodies(max_bytes: Callable[[], int]) -> _ByType:
    """The bodies of the routes that take an image: multipart forms, JSON, url-encoded forms
    and raw images, none read past ``max_bytes()`` (read per request: settings may change)."""

    def raw_image(body, content_length=0, **params):
        return {"image": uploads.read_raw(body, content_length, max_bytes())}

    def multipart(body, content_length=0, **params):
        return uploads.read_multipart(body, params.get("boundary"), content_length, max_bytes())

    return _ByType({"multipart/form-data": multipart, "application/json": _json_object,
                    "application/x-www-form-urlencoded": _strict(hug.input_format.urlencoded)},
                   images=raw_image)


# The bodies of POST /people/{name}/rename: JSON or a form, without the path's name.
RENAME_BODIES = _ByType({
    "application/json": _path_kept(_json_object),
    "application/x-www-form-urlencoded": _path_kept(_strict(hug.input_format.urlencoded)),
})
