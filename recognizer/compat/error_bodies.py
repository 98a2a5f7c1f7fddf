"""The service's error bodies (``{"errors": {field: code}, "detail": {field: words}}``), read
for the surfaces that answer errors in another shape. Pure Python."""

from __future__ import annotations


def is_error(body: object) -> bool:
    """Whether a JSON answer is one of the service's error bodies."""
    return isinstance(body, dict) and isinstance(body.get("errors"), dict)


def message(body: dict) -> str:
    """The errors in words, ``field: code (detail)`` for each field, separated by "; "."""
    details = body.get("detail", {})
    return "; ".join(f"{field}: {code}" + (f" ({details[field]})" if field in details else "")
                     for field, code in body["errors"].items())


def first_code(body: dict) -> str:
    """The code of the first error ("" when there is none)."""
    return next(iter(body["errors"].values()), "")
