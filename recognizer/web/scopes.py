"""Who may call a route, declared beside it: ``requires=scopes.read`` (hug's requirements).

A requirement checks the request's API key against the scope the route declares, and its
rate, before the body is read. Every route declares exactly one of :attr:`Scopes.open`,
:attr:`Scopes.read` and :attr:`Scopes.admin` (a test holds every route to it). The command
line is a local user, and needs no key.
"""

from __future__ import annotations

from typing import Callable

import falcon

from ..access import Gate


class Scopes:
    """The three requirements a route can declare, over the service's gate."""

    def __init__(self, gate: Callable[[], Gate]) -> None:
        """
        :param gate: gives the gate in force (read when a request comes, not at import)
        """
        self.open = self._requirement(None, "Open to everyone, with or without a key")
        self.read = self._requirement("read", "Needs a read or admin API key (X-API-Key)")
        self.admin = self._requirement("admin", "Needs an admin API key (X-API-Key)")
        self._gate = gate

    def _requirement(self, scope: str | None, doc: str) -> Callable:
        def check(request=None, response=None, context=None, module=None, **kwargs) -> bool:
            if isinstance(request, falcon.Request):  # (hug gives the CLI its argv)
                self._gate().check(scope, request.get_header("X-API-Key"), set(request.params),
                                   request.remote_addr or "-")
            return True

        check.scope = scope
        check.__doc__ = doc
        check.__name__ = f"scope_{scope or 'open'}"
        return check


def declared(requirements) -> list[str | None]:
    """The scopes among a route's requirements (``[]`` when it declares none)."""
    return [check.scope for check in requirements or () if hasattr(check, "scope")]
