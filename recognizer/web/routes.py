"""hug's URL router with the service's conventions for every route: validation errors as
codes (``inputs.coded_errors``), parameters the route does not take refused by name, and HEAD
answered wherever GET is."""

from __future__ import annotations

import inspect
from typing import Callable

import hug

from . import inputs


class Routes(hug.routing.URLRouter):
    """``hug.http`` with those conventions; chain it as hug's (``routes.get("/people")``)."""

    def __call__(self, api_function: Callable) -> Callable:
        accepted = tuple(name for name, parameter in
                         inspect.signature(api_function).parameters.items()
                         if name not in inputs.INJECTED
                         and parameter.kind is not parameter.VAR_POSITIONAL)
        methods = tuple(self.route.get("accept", ()))
        if "GET" in methods and "HEAD" not in methods:
            methods += ("HEAD",)
        route = object.__new__(Routes)  # (not where(): it would turn parse_body=False back on)
        route.route = {**self.route, "on_invalid": inputs.coded_errors,
                       "output_invalid": hug.output_format.json,  # whatever the route answers
                       "validate": inputs.only(accepted), "accept": methods}
        return hug.routing.URLRouter.__call__(route, api_function)
