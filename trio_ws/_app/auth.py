"""Who is asking: bearer tokens, and an auth hook built on them.

An auth hook (``App(auth=...)``, or ``auth=`` on a route) is an async
callable that sees the :class:`~trio_ws.Request` before the handler runs or
the WebSocket upgrades, and returns an :class:`~trio_ws.Identity` to let it
in or a :class:`~trio_ws.Response` to refuse it (401 with
``WWW-Authenticate``, or 403). Rules of this module:

* Pure except for the verifier it is given: finding the token and choosing
  the answer involve no I/O.
* A bearer token comes from ``Authorization: Bearer <token>`` (RFC 6750
  section 2.1) or, because browsers can't set headers on a WebSocket or an
  ``EventSource``, from the ``access_token`` query parameter (section 2.3).
  The header wins when both are there.
* No token, or one the verifier rejects, gets 401 with a ``Bearer``
  challenge (with ``error="invalid_token"`` for a rejected one, section
  3.1); a hook that knows who the client is but refuses them returns 403
  itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .request import Identity, Request
from .response import Response
from .routing import AuthHook

__all__ = ["bearer_auth", "bearer_token"]


def bearer_token(request: Request) -> str | None:
    """The request's bearer token: from ``Authorization: Bearer``, else from ``?access_token=``."""
    authorization = request.header("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.query_param("access_token") or None


def bearer_auth(verify: Callable[[str], Awaitable[Identity | None]], *, realm: str = "trio_ws") -> AuthHook:
    """An auth hook that lets in requests whose bearer token ``verify`` accepts.

    Example::

        async def verify(token: str) -> trio_ws.Identity | None:
            user = TOKENS.get(token)
            return None if user is None else trio_ws.Identity(user, roles={"member"})

        app = trio_ws.App(auth=trio_ws.bearer_auth(verify))

    Args:
        verify: ``async def verify(token) -> Identity | None``: the identity
            the token stands for, or ``None`` to refuse it.
        realm: The realm named in the ``WWW-Authenticate`` challenge.
    """

    async def authenticate(request: Request) -> Identity | Response:
        token = bearer_token(request)
        if token is None:
            return Response.unauthorized(realm=realm, text="Unauthorized: send a bearer token")
        identity = await verify(token)
        if identity is None:
            return Response.unauthorized(
                realm=realm, error="invalid_token", text="Unauthorized: the bearer token was not accepted"
            )
        return identity

    return authenticate
