"""What to do with a request head: answer it at once, or pass it to a route. Pure.

``_http/connection.py`` reads a request head and asks :func:`decide`, which looks only
at the head, the app's routes and the server's state, and returns either a
:class:`~trio_ws.Response` to send (a refusal, a preflight, the health
check) or a :class:`Routed` request for a handler. Rules of this module:

* No I/O, no trio, no time: every rule here is tested by feeding heads from
  an h11 client straight in (``tests/test_fuzz.py`` throws random ones).
* The checks run in a fixed order, cheapest and most general first: the
  target's form, request smuggling, DNS rebinding, the health check, the
  route, shutdown, CORS, then the method or the upgrade.
* A request smuggling shape is refused, never guessed at: a request with
  both ``Content-Length`` and ``Transfer-Encoding`` gets 400 (RFC 9112
  section 6.3 allows it, and a proxy in front may have read the other
  header). h11 already refuses two different ``Content-Length`` values, and
  unfolds obs-fold lines (RFC 9112 section 5.2 allows either), so a folded
  ``Transfer-Encoding`` still meets the rule above.
* Every value from the peer in a body or a log line goes through
  ``printable``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import h11
import trio
from wsproto.events import RejectConnection
from wsproto.utilities import RemoteProtocolError as HandshakeError

from .._app.cors import (
    CrossOrigin,
    cross_origin,
    forbidden,
    is_preflight,
    preflight_response,
    response_headers,
)
from .._app.health import health_response
from .._app.response import Response
from .._app.routing import HTTPRoute, WebSocketRoute
from .._observe.metrics import CONTENT_TYPE, METRICS_PATH
from .._options import Options
from .._printable import printable
from .._websocket.connection import ServerConnection, server_connection
from .target import Target
from .upgrade import (
    handshake_refusal,
    header_value,
    host_allowed,
    is_websocket_upgrade,
    origin_allowed,
    wsproto_headers,
)
from .wire import phrase

if TYPE_CHECKING:
    from .host import Host

__all__ = ["Routed", "check_head_limits", "decide", "open_websocket"]

logger = logging.getLogger("trio_ws.http")


@dataclass(frozen=True)
class Routed:
    """A request that a route's handler will answer."""

    route: WebSocketRoute | HTTPRoute
    params: Mapping[str, str]
    #: Headers the answer carries for CORS (``Vary: Origin``, and the allow headers).
    cors: list[tuple[str, str]] = field(default_factory=list)


def check_head_limits(request: h11.Request, options: Options) -> Response | None:
    """A 431 for a request with more header lines than ``max_request_headers``, else ``None``.

    h11 already bounds the head's size; a count limit stops a head of many
    tiny headers from costing a list entry each in every check that follows.
    """
    limit = options.max_request_headers
    if len(request.headers) <= limit:
        return None
    return Response.text(
        431,
        f"Request Header Fields Too Large: {len(request.headers)} header lines, "
        f"the server takes at most {limit}",
    )


def decide(request: h11.Request, target: Target | None, server: Host) -> Response | Routed:
    """What to do with a request: answer it at once, or pass it to a route.

    Pure: looks only at the request, its parsed ``target`` (``None`` if it
    could not be parsed), the app's routes and the server's state.
    """
    method = request.method.decode("ascii", "replace")
    if target is None:
        return Response.text(
            400, "Bad Request: the request target must be a path such as /index.html, or an absolute URL"
        )
    if header_value(request.headers, b"content-length") is not None and header_value(
        request.headers, b"transfer-encoding"
    ):
        return Response.text(
            400, "Bad Request: a request with both Content-Length and Transfer-Encoding is refused"
        )
    path = target.path
    # RFC 9112 section 3.2.2: an absolute-form target's host replaces the Host header.
    host = target.authority if target.authority is not None else _header_str(request, b"host")
    origin = _header_str(request, b"origin")
    options = server.options
    if origin is not None and server.loopback_only and not host_allowed(host, options.allowed_hosts):
        return _rebinding_refusal(
            target.authority or header_value(request.headers, b"host"),
            header_value(request.headers, b"origin"),
        )

    app = server.app
    if app.is_health_check(target):
        if method not in ("GET", "HEAD"):
            return Response.text(
                405, f"Method Not Allowed: {path} accepts GET, HEAD", headers=[("allow", "GET, HEAD")]
            )
        return health_response(app.health_checks, closing=server.closing)
    if server.metrics is not None and target.path == METRICS_PATH:
        if method not in ("GET", "HEAD"):
            return Response.text(
                405, f"Method Not Allowed: {path} accepts GET, HEAD", headers=[("allow", "GET, HEAD")]
            )
        return Response(200, server.metrics.render(), CONTENT_TYPE)

    match = app.resolve(target)
    if match is None:
        return Response.text(404, f"Not Found: no route for {printable(path)}")
    if server.closing:
        return Response.text(503, "Service Unavailable: the server is shutting down")
    endpoint = match.endpoint
    verdict = cross_origin(origin, host, options.allowed_origins)
    if origin is not None and "OPTIONS" not in endpoint.http:
        requested = _header_str(request, b"access-control-request-method")
        if is_preflight(method, origin, requested):
            if verdict is CrossOrigin.FORBIDDEN:
                _log_forbidden(origin, path)
            return preflight_response(
                verdict, origin, endpoint.methods, _header_str(request, b"access-control-request-headers")
            )

    if endpoint.websocket is not None and method == "GET" and is_websocket_upgrade(request.headers):
        return _upgrade_decision(request, endpoint.websocket, match.params, origin, host, options)

    route = endpoint.http.get(method)
    if route is None:
        if endpoint.websocket is not None and not endpoint.http:
            return Response.text(
                426,
                f"Upgrade Required: {printable(path)} is a WebSocket endpoint; "
                f"connect to it with a WebSocket client, not a plain HTTP request",
                headers=[("upgrade", "websocket"), ("connection", "Upgrade")],
            )
        allow = ", ".join(endpoint.methods)
        if method == "OPTIONS":
            return Response.empty(204, headers=[("allow", allow)])
        return Response.text(
            405, f"Method Not Allowed: {printable(path)} accepts {allow}", headers=[("allow", allow)]
        )
    if verdict is CrossOrigin.FORBIDDEN:
        assert origin is not None
        _log_forbidden(origin, path)
        return forbidden(origin)
    return Routed(route, match.params, response_headers(verdict, origin))


def _upgrade_decision(
    request: h11.Request,
    route: WebSocketRoute,
    params: Mapping[str, str],
    origin: str | None,
    host: str | None,
    options: Options,
) -> Response | Routed:
    if header_value(request.headers, b"content-length") or header_value(
        request.headers, b"transfer-encoding"
    ):
        return Response.text(400, "Bad Request: a WebSocket handshake has no body")
    refusal = handshake_refusal(request.http_version, request.headers)
    if refusal is not None:
        return refusal
    if not origin_allowed(origin, host, options.allowed_origins):
        shown = printable(header_value(request.headers, b"origin") or b"")
        logger.info("refused a WebSocket from origin %s on %s", shown, printable(route.path))
        return Response.text(
            403,
            f"Forbidden: origin {shown} may not open a WebSocket here; "
            f"the server allows it with --allowed-origin {shown}",
        )
    return Routed(route, params)


def open_websocket(
    stream: trio.abc.Stream, request: h11.Request, trailing_data: bytes, options: Options
) -> ServerConnection | Response:
    """A connection for a WebSocket handshake request, or the HTTP answer that refuses it.

    Pure up to the connection object: nothing is sent or started yet.
    """
    try:
        return server_connection(
            stream,
            wsproto_headers(request.headers),
            request.target.decode("ascii", "replace"),
            trailing_data,
            options,
        )
    except HandshakeError as exc:
        return _handshake_rejection(exc)
    except UnicodeError as exc:
        # wsproto decodes some handshake headers as ASCII (the Host as IDNA), and lets the error through.
        logger.debug("bad WebSocket handshake: %s", printable(str(exc)))
        return Response.text(400, "Bad Request: a WebSocket handshake header is not ASCII")


def _handshake_rejection(exc: HandshakeError) -> Response:
    """Turn wsproto's verdict on a bad handshake into an HTTP answer."""
    hint = exc.event_hint
    status: int = 400
    headers: tuple[tuple[str, str], ...] = ()
    if isinstance(hint, RejectConnection):
        status = hint.status_code
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in hint.headers)
    logger.debug("bad WebSocket handshake: %s", printable(str(exc)))
    return Response.text(status, f"{phrase(status)}: {printable(str(exc))}", headers=headers)


def _rebinding_refusal(host: str | bytes | None, origin: bytes | None) -> Response:
    """The 403 for a browser that reached a loopback-only server under a name that is not loopback."""
    name = printable(host or "(none)")
    logger.info(
        "refused a request from origin %s for host %s: this server listens on loopback only, "
        "and that host is not a loopback name (DNS rebinding?)",
        printable(origin or b""),
        name,
    )
    return Response.text(
        403,
        f"Forbidden: this server listens on a loopback address, and a browser reached it as {name}, "
        "which is not a loopback name (a page using DNS rebinding looks like this); "
        f"if the server is meant to be reached as {name}, allow it with --allowed-host",
    )


def _log_forbidden(origin: str, path: str) -> None:
    logger.info("refused a request from origin %s on %s", printable(origin), printable(path))


def _header_str(request: h11.Request, name: bytes) -> str | None:
    value = header_value(request.headers, name)
    return None if value is None else value.decode("latin-1")
