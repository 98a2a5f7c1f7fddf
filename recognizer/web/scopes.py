"""Who may call a route, declared beside it: ``requires=scope.read`` (hug's requirements).

A requirement checks the request's API key against the scope the route declares, and its
rate, before the body is read. Every route declares exactly one of :attr:`Scopes.open`,
:attr:`Scopes.read` and :attr:`Scopes.admin` (a test holds every route to it). Admin routes
change data, so a browser may not be made to call them from another site: a request that
its browser marks ``Sec-Fetch-Site: cross-site`` is refused unless its origin is one the
service allows (FACEREC_CORS_ORIGINS). The command line is a local user, and needs no key.

DeepStack's clients send their key as a form field (``api_key``), which only the body holds:
the routes of that surface declare the same scopes from :meth:`Scopes.with_form_key`, whose
requirements let a request with a form body and no header on, to be checked by
:meth:`Scopes.check_form_key` as soon as its body is read (the routes' ``validate=``), before
anything else about it is.
"""

from __future__ import annotations

from typing import Callable

import falcon

from ..access import Gate
from ..errors import Forbidden

DEFERRED = "scope_of_form_key"  # request.context: the scope a form key is still to be checked for


class Scopes:
    """The three requirements a route can declare, over the service's gate."""

    def __init__(self, gate: Callable[[], Gate],
                 origins: Callable[[], tuple[str, ...]] = tuple,
                 proxied: Callable[[], bool] = bool, form_key: str | None = None) -> None:
        """
        :param gate: gives the gate in force (read when a request comes, not at import)
        :param origins: gives the origins allowed to call from a browser on another site
        :param proxied: whether requests come through scripts/serve's proxy (see client)
        :param form_key: the form field a key may also come in (see with_form_key)
        """
        self.open = self._requirement(None, "Open to everyone, with or without a key")
        self.read = self._requirement("read", "Needs a read or admin API key (X-API-Key)")
        self.admin = self._requirement("admin", "Needs an admin API key (X-API-Key)")
        self.frames = self._requirement("read", "Needs a read or admin API key (X-API-Key);"
                                        " not rate limited: one frame at a time per session",
                                        metered=False)
        self._gate, self._origins, self._proxied = gate, origins, proxied
        self.form_key = form_key

    def with_form_key(self, field: str) -> "Scopes":
        """The same scopes for routes whose callers may send the key as a form field instead
        of the header; each such route must take ``request`` and validate with
        ``check_form_key``."""
        return Scopes(self._gate, self._origins, self._proxied, form_key=field)

    def check_form_key(self, parameters: dict) -> dict:
        """A hug ``validate=`` step: check the key a request let on without the header has in
        its form, as the requirement would have checked the header.

        :raises Unauthorized, Forbidden, RateLimited: as Gate.check
        :raises TypeError: the route does not take request, so nothing could be checked
        """
        request = parameters.get("request")
        if not isinstance(request, falcon.Request):
            raise TypeError("a route keyed by a form field must take request")
        scope = request.context.pop(DEFERRED, None)
        if scope is not None:
            presented = parameters.get(self.form_key)
            self._gate().check(scope, presented if isinstance(presented, str) else None,
                               set(request.params), client(request, self._proxied()))
        return {}

    def _requirement(self, scope: str | None, doc: str, metered: bool = True) -> Callable:
        def check(request=None, response=None, context=None, module=None, **kwargs) -> bool:
            if isinstance(request, falcon.Request):  # (hug gives the CLI its argv)
                if scope == "admin" and _cross_site(request, self._origins()):
                    raise Forbidden("cross_site_request")
                key = request.get_header("X-API-Key")
                if (key is None and scope is not None and self.form_key is not None
                        and _form(request.content_type)):
                    request.context[DEFERRED] = scope  # the body may hold it: see check_form_key
                    return True
                self._gate().check(scope, key, set(request.params),
                                   client(request, self._proxied()), metered)
            return True

        check.scope = scope
        check.__doc__ = doc
        check.__name__ = f"scope_{scope or 'open'}{'' if metered else '_unmetered'}"
        return check


def client(request: falcon.Request, proxied: bool) -> str:
    """The caller's address: the connection's, or behind scripts/serve's nginx (which alone
    talks to the service, over a socket of its own) the one nginx saw (X-Real-IP)."""
    if proxied:
        return request.get_header("X-Real-IP") or "-"
    return request.remote_addr or "-"


def _form(content_type: str | None) -> bool:
    """Whether a body of this type is a form, which can hold a key."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind in ("multipart/form-data", "application/x-www-form-urlencoded")


def _cross_site(request: falcon.Request, allowed: tuple[str, ...]) -> bool:
    """Whether a browser sent this request for a page of another site, not one allowed."""
    return ((request.get_header("Sec-Fetch-Site") or "").strip().lower() == "cross-site"
            and request.get_header("Origin") not in allowed)


def declared(requirements) -> list[str | None]:
    """The scopes among a route's requirements (``[]`` when it declares none)."""
    return [check.scope for check in requirements or () if hasattr(check, "scope")]
