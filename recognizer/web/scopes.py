"""Who may call a route, declared beside it: ``requires=scope.read`` (hug's requirements).

A requirement checks the request's API key against the scope the route declares, and its
rate, before the body is read. Every route declares exactly one of :attr:`Scopes.open`,
:attr:`Scopes.read` and :attr:`Scopes.admin` (a test holds every route to it). Admin routes
change data, so a browser may not be made to call them from another site: a request that
its browser marks ``Sec-Fetch-Site: cross-site`` is refused unless its origin is one the
service allows (FACEREC_CORS_ORIGINS). The command line is a local user, and needs no key.
"""

from __future__ import annotations

from typing import Callable

import falcon

from ..access import Gate
from ..errors import Forbidden


class Scopes:
    """The three requirements a route can declare, over the service's gate."""

    def __init__(self, gate: Callable[[], Gate],
                 origins: Callable[[], tuple[str, ...]] = tuple,
                 proxied: Callable[[], bool] = bool) -> None:
        """
        :param gate: gives the gate in force (read when a request comes, not at import)
        :param origins: gives the origins allowed to call from a browser on another site
        :param proxied: whether requests come through scripts/serve's proxy (see client)
        """
        self.open = self._requirement(None, "Open to everyone, with or without a key")
        self.read = self._requirement("read", "Needs a read or admin API key (X-API-Key)")
        self.admin = self._requirement("admin", "Needs an admin API key (X-API-Key)")
        self._gate, self._origins, self._proxied = gate, origins, proxied

    def _requirement(self, scope: str | None, doc: str) -> Callable:
        def check(request=None, response=None, context=None, module=None, **kwargs) -> bool:
            if isinstance(request, falcon.Request):  # (hug gives the CLI its argv)
                if scope == "admin" and _cross_site(request, self._origins()):
                    raise Forbidden("cross_site_request")
                self._gate().check(scope, request.get_header("X-API-Key"), set(request.params),
                                   client(request, self._proxied()))
            return True

        check.scope = scope
        check.__doc__ = doc
        check.__name__ = f"scope_{scope or 'open'}"
        return check


def client(request: falcon.Request, proxied: bool) -> str:
    """The caller's address: the connection's, or behind scripts/serve's nginx (which alone
    talks to the service, over a socket of its own) the one nginx saw (X-Real-IP)."""
    if proxied:
        return request.get_header("X-Real-IP") or "-"
    return request.remote_addr or "-"


def _cross_site(request: falcon.Request, allowed: tuple[str, ...]) -> bool:
    """Whether a browser sent this request for a page of another site, not one allowed."""
    return ((request.get_header("Sec-Fetch-Site") or "").strip().lower() == "cross-site"
            and request.get_header("Origin") not in allowed)


def declared(requirements) -> list[str | None]:
    """The scopes among a route's requirements (``[]`` when it declares none)."""
    return [check.scope for check in requirements or () if hasattr(check, "scope")]
