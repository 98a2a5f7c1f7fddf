"""Other face services' APIs over this one: CompreFace's (``compreface``) and DeepStack's
(``deepstack``), so that their clients can switch by changing a URL. Each is a surface: a URL
prefix of its own, under which the routes (``recognizer.web.compat``) read that API's
parameters and answer in its JSON, made here from the service's records, and every error the
service gives, whatever raised it, is reshaped into that API's error body. Pure Python."""

from __future__ import annotations

from types import ModuleType

from . import compreface, deepstack
from .error_bodies import is_error

SURFACES = (compreface, deepstack)


def surface_of(path: str) -> ModuleType | None:
    """The surface whose URL space a path is in (its module), or None: the service's own."""
    for surface in SURFACES:
        if path.startswith(surface.PREFIX):
            return surface
    return None


def reshaped_error(path: str, status: int, body: object) -> tuple[int, dict] | None:
    """The error answer (status, body) in the shape of the surface a path is in; None for the
    service's own paths, and for answers that are not errors."""
    surface = surface_of(path)
    if surface is None or status < 400 or not is_error(body):
        return None
    return surface.error(status, body)
