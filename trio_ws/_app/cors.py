"""Cross-origin requests (CORS) for HTTP routes, from the same ``allowed_origins`` as WebSockets.

A browser sends ``Origin`` with a cross-origin request and reads the answer
only if the server says that origin may. Rules of this module:

* Pure: each function takes header values and returns a decision or headers.
* One list decides for HTTP and WebSockets alike: ``Options.allowed_origins``.
  The page's own origin (same host as the request) is always allowed; a
  listed origin may send credentials (cookies, ``Authorization``); ``"*"``
  lets every origin read, without credentials (browsers refuse
  ``Access-Control-Allow-Origin: *`` with credentials, and so should we).
* An origin that is not allowed is refused with 403 before the handler runs,
  as for a WebSocket: a cross-site ``POST`` must not take effect just
  because its answer can't be read.
* A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is
  answered by the server itself, with the path's methods, the headers the
  browser asked for, and ``Access-Control-Max-Age``; handlers never see it.
* Every answer to a route carries ``Vary: Origin``, since what it says (or
  whether it is 403) depends on the origin; a cache must not mix them up.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from .._printable import printable
from .response import Response

__all__ = [
    "CrossOrigin",
    "cross_origin",
    "forbidden",
    "is_preflight",
    "preflight_response",
    "response_headers",
]

# How long a browser may cache a preflight's answer, in seconds.
_MAX_AGE = "600"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class CrossOrigin(enum.Enum):
    """What ``Origin`` a request came with, as far as CORS is concerned."""

    NONE = "no Origin: not a browser's cross-origin request"
    SAME = "the page's own origin"
    LISTED = "an origin in allowed_origins: may read, with credentials"
    ANY = "allowed by '*': may read, without credentials"
    FORBIDDEN = "an origin that is not allowed"


def cross_origin(origin: str | None, host: str | None, allowed_origins: Sequence[str]) -> CrossOrigin:
    """Classify a request's ``Origin`` against its ``Host`` and ``allowed_origins``."""
    if origin is None:
        return CrossOrigin.NONE
    origin = origin.strip().rstrip("/").lower()
    if origin in allowed_origins:
        return CrossOrigin.LISTED
    if host is not None and origin != "null":
        try:
            if urlsplit(origin).netloc == host.strip().lower():
                return CrossOrigin.SAME
        except ValueError:  # a malformed origin is no one's
            pass
    return CrossOrigin.ANY if "*" in allowed_origins else CrossOrigin.FORBIDDEN


def is_preflight(method: str, origin: str | None, request_method: str | None) -> bool:
    """Whether a request is a CORS preflight: ``OPTIONS`` with ``Origin`` and a method to ask about."""
    return method == "OPTIONS" and origin is not None and request_method is not None


def response_headers(verdict: CrossOrigin, origin: str | None) -> list[tuple[str, str]]:
    """The CORS headers for the answer to a request from ``origin``."""
    headers = [("vary", "Origin")]
    if verdict is CrossOrigin.LISTED and origin is not None:
        headers += [
            ("access-control-allow-origin", origin.strip()),
            ("access-control-allow-credentials", "true"),
        ]
    elif verdict is CrossOrigin.ANY:
        headers.append(("access-control-allow-origin", "*"))
    return headers


def preflight_response(
    verdict: CrossOrigin, origin: str, methods: Iterable[str], requested_headers: str | None
) -> Response:
    """The server's answer to a preflight for a path that answers ``methods``.

    The headers the browser asks to send are allowed as asked (like
    ASP.NET's ``AllowAnyHeader``): the origin has been vetted already.
    """
    if verdict is CrossOrigin.FORBIDDEN:
        return forbidden(origin)
    headers = response_headers(verdict, origin)
    headers += [
        ("access-control-allow-methods", ", ".join(sorted(set(methods) | {"OPTIONS"}))),
        ("access-control-max-age", _MAX_AGE),
        ("vary", "Access-Control-Request-Method, Access-Control-Request-Headers"),
    ]
    allowed = _header_names(requested_headers)
    if allowed:
        headers.append(("access-control-allow-headers", ", ".join(allowed)))
    return Response.empty(204, headers=headers)


def forbidden(origin: str) -> Response:
    """The 403 for a browser request from an origin that is not allowed."""
    shown = printable(origin)
    return Response.text(
        403,
        f"Forbidden: origin {shown} may not use this server; it allows it with --allowed-origin {shown}",
        headers=[("vary", "Origin")],
    )


def _header_names(requested: str | None) -> list[str]:
    """The header names in ``Access-Control-Request-Headers``, if it is a well-formed list."""
    if requested is None:
        return []
    names = [name.strip().lower() for name in requested.split(",") if name.strip()]
    return names if all(_TOKEN.fullmatch(name) for name in names) else []
