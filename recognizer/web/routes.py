"""hug's URL router with the service's conventions for every route: validation errors as
codes (``inputs.coded_errors``), parameters the route does not take refused by name, path
parameters taken from the path only (``inputs.PathKept``), and HEAD answered wherever GET
is."""

from __future__ import annotations

import inspect
import re
from typing import Callable

import hug

from . import inputs


class Routes(hug.routing.URLRouter):
    """``hug.http`` with those conventions; chain it as hug's (``routes.get("/people")``). A
    route's own ``validate=`` runs first, before parameters it does not take are refused."""

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
                       "validate": _then(self.route.get("validate"), inputs.only(accepted)),
                       "accept": methods}
        in_path = _path_parameters(self.route.get("urls", ()))
        if in_path and "inputs" in self.route:
            route.route["inputs"] = inputs.PathKept(self.route["inputs"], in_path)
        return hug.routing.URLRouter.__call__(route, api_function)


def _path_parameters(urls: tuple[str, ...]) -> frozenset[str]:
    """The names of the parameters in a route's URL templates."""
    return frozenset(name for url in urls for name in re.findall(r"{(\w+)}", url))


def _then(first: Callable | None, second: Callable) -> Callable:
    """Two hug validate= functions, one after the other: the first's errors, else the
    second's."""
    if first is None:
        return second
    return lambda parameters: first(parameters) or second(parameters)
