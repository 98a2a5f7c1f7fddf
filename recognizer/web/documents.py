"""What the service says about itself: its OpenAPI description (openapi.yaml, also as JSON)
and Swagger UI at /docs, from the swagger-ui-py package's files and this project's page."""

from __future__ import annotations

import functools
import importlib.util
import mimetypes
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.yaml"
PAGES = ROOT / "static" / "docs"  # the page and its start-up script (no inline script)
# Swagger UI's files, from the package, without importing it (it would import jinja2)
SWAGGER_UI = Path(importlib.util.find_spec("swagger_ui").submodule_search_locations[0]) / "static"
ASSETS = {"swagger-ui.css": SWAGGER_UI, "swagger-ui-bundle.js": SWAGGER_UI,
          "swagger-ui-standalone-preset.js": SWAGGER_UI, "favicon-32x32.png": SWAGGER_UI,
          "favicon-16x16.png": SWAGGER_UI, "index.html": PAGES, "init.js": PAGES}
# Swagger UI styles its elements inline; scripts come from this service only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'"
       " data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self';"
       " frame-ancestors 'none'")


NOT_FOUND = (b'{"errors": {"path": "not_found"}}', "application/json; charset=utf-8")

# The web app: plain ES modules, a stylesheet and a page, from static/app (no build step).
APP = ROOT / "static" / "app"
APP_ASSET = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(?:js|css|html|svg)")
# The app's own: nothing inline, nothing from elsewhere; the camera for this origin only.
APP_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
                               " img-src 'self' blob: data: https:; media-src 'self' blob:;"
                               " connect-src 'self'; base-uri 'none'; form-action 'none';"
                               " frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def app_file(name: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of one of the web app's files, or None for any other name."""
    if not APP_ASSET.fullmatch(name) or not (APP / name).is_file():
        return None
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return (APP / name).read_bytes(), kind + "; charset=utf-8"


@functools.lru_cache(maxsize=1)
def openapi_text() -> str:
    """openapi.yaml as written."""
    return OPENAPI.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def openapi() -> dict:
    """The OpenAPI description as data."""
    return yaml.safe_load(openapi_text())


def asset(name: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of a file /docs serves, or None for any other name."""
    folder = ASSETS.get(name)
    if folder is None:
        return None
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return (folder / name).read_bytes(), kind + ("; charset=utf-8" if kind.startswith(
        ("text/", "application/javascript")) else "")


def as_is(data: bytes, request=None, response=None) -> bytes:
    """A hug output format that sends bytes as they are (the route sets their type)."""
    return data


as_is.content_type = "application/octet-stream"
