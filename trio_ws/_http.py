"""The front door: one TCP connection, one HTTP request, then an answer or an upgrade.

Every connection the server accepts starts here. The request head is read
with h11 under the handshake deadline; then ``decide`` (a pure function)
picks what happens:

* a plain HTTP answer (the page, a static file, ``/healthz``, or an error
  such as 404, 403 or 426), written with h11, after which the connection is
  closed; or
* a WebSocket upgrade, handed to ``_connection.run_websocket`` together with
  any bytes the client sent after the head.

Rules of this module:

* A peer's mistake is answered over HTTP and logged without a traceback
  (the access line at INFO, the details at DEBUG). Only a bug, ours or a
  handler's, logs a traceback.
* Nothing that happens on one connection escapes ``serve_stream``: an
  exception from here would otherwise crash the whole server (see the
  warning on ``trio.serve_listeners``).
* One request per connection: every response says ``Connection: close``.
  Pages are small, and WebSocket traffic does not need HTTP keep-alive.
* Every read from a peer is bounded before it is trusted: the whole head
  by ``handshake_timeout``, its size by ``max_request_head_size`` and its
  header count by ``max_request_headers`` (431), the time a connection may
  wait with no complete head by ``max_idle_connections`` (``_admission.py``),
  and an upgrade by a free ``max_connections`` slot (503 when there is none).
* The request target is taken apart once, by ``_target.parse_target``, and
  everything after that (routing, the 404 body, the log line) uses its parts.
* A value from the peer reaches a log line or an error body only through
  ``_printable.printable``, escaped and cut short.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

import h11
import trio
from wsproto.events import RejectConnection
from wsproto.utilities import RemoteProtocolError as HandshakeError

from ._app import HTTPRoute, Request, Response, WebSocketRoute, route_segments
from ._connection import run_websocket
from ._linger import linger
from ._options import Options, seconds
from ._printable import printable
from ._target import Target, parse_target
from ._upgrade import (
    handshake_refusal,
    header_value,
    host_allowed,
    is_websocket_upgrade,
    origin_allowed,
    wsproto_headers,
)
from ._websocket import ServerConnection, server_connection

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["decide", "open_websocket", "serve_stream"]

logger = logging.getLogger("trio_ws.http")

_READ_SIZE = 16 * 1024
_SEND_TIMEOUT = 10.0
_SECURITY_HEADERS = (("x-content-type-options", "nosniff"),)
_PAGE_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)


async def serve_stream(stream: trio.abc.Stream, server: Server) -> None:
    """Serve one accepted connection until it is done, then close it.

    Error handling: an exception that is not a peer's mistake is a bug; it
    is logged with its traceback and ends only this connection.
    """
    try:
        await _serve(stream, server)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        logger.debug("connection lost before the answer was sent")
    except Exception:
        logger.exception("internal error while serving a connection; please report a bug")
    finally:
        await trio.aclose_forcefully(stream)


async def _serve(stream: trio.abc.Stream, server: Server) -> None:
    options = server.options
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=options.max_request_head_size)
    # One deadline covers reading the head and finishing the upgrade.
    deadline = trio.current_time() + seconds(options.handshake_timeout)

    with trio.move_on_at(deadline) as reading, server.admission.waiting(stream) as waiting:
        try:
            request = await _read_request(stream, conn, options.max_request_head_size)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            logger.info(
                "refused a bad request head from %s: %d (%s)", _peer(stream), status, printable(str(exc))
            )
            await _respond(stream, conn, Response.text(status, f"{_phrase(status)}: {printable(str(exc))}"))
            return
    if waiting.evicted:
        logger.debug("closed %s: it waited longest for a request head (max_idle_connections)", _peer(stream))
        return
    if reading.cancelled_caught:
        logger.info(
            "dropped %s: no complete request head within handshake_timeout (%s s)",
            _peer(stream),
            options.handshake_timeout,
        )
        return
    if request is None:
        return  # the client connected and left without a request

    method = request.method.decode("ascii", "replace")
    target = parse_target(request.target)
    decision = _check_head_limits(request, server) or decide(request, target, server)
    if isinstance(decision, WebSocketRoute):
        with server.admission.websocket_slot() as admitted:
            if admitted:
                ws = await _upgrade(stream, conn, request, server)
                # The HTTP side is done: don't hold it in memory for the WebSocket's whole life.
                del conn, request, reading
                if ws is not None:
                    await run_websocket(ws, decision, server, deadline)
                return
        decision = Response.text(
            503, "Service Unavailable: the server has as many WebSocket connections as it takes"
        )
    if isinstance(decision, HTTPRoute):
        assert target is not None  # decide() routes only a target it could parse
        response = await _call_http_handler(decision, request, target)
    else:
        response = decision
    logger.info('"%s %s" %d', method, printable(request.target), response.status)
    await _respond(stream, conn, response, head_only=method == "HEAD")


def _check_head_limits(request: h11.Request, server: Server) -> Response | None:
    """A 431 for a request with more header lines than ``max_request_headers``, else ``None``.

    h11 already bounds the head's size; a count limit stops a head of many
    tiny headers from costing a list entry each in every check that follows.
    """
    limit = server.options.max_request_headers
    if len(request.headers) <= limit:
        return None
    return Response.text(
        431,
        f"Request Header Fields Too Large: {len(request.headers)} header lines, "
        f"the server takes at most {limit}",
    )


async def _upgrade(
    stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, server: Server
) -> ServerConnection | None:
    """Hand the request to wsproto and trio-websocket, or answer why it is not a valid handshake."""
    ws = open_websocket(stream, request, _trailing_data(conn), server.options)
    if isinstance(ws, Response):
        logger.info('"GET %s" %d', printable(request.target), ws.status)
        await _respond(stream, conn, ws)
        return None
    return ws


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


def decide(
    request: h11.Request, target: Target | None, server: Server
) -> Response | WebSocketRoute | HTTPRoute:
    """What to do with a request: answer it at once, or pass it to a route.

    Pure: looks only at the request, its parsed ``target`` (``None`` if it
    could not be parsed), the app's routes and the server's state.
    """
    method = request.method.decode("ascii", "replace")
    if target is None:
        return Response.text(
            400, "Bad Request: the request target must be a path such as /index.html, or an absolute URL"
        )
    path = target.path
    # RFC 9112 section 3.2.2: an absolute-form target's host replaces the Host header.
    host = target.authority if target.authority is not None else _header_str(request, b"host")
    origin = _header_str(request, b"origin")
    if origin is not None and server.loopback_only and not host_allowed(host, server.options.allowed_hosts):
        return _rebinding_refusal(
            target.authority or header_value(request.headers, b"host"),
            header_value(request.headers, b"origin"),
        )

    app = server.app
    if app.health_path is not None and target.segments == route_segments(app.health_path):
        if method not in ("GET", "HEAD"):
            return Response.text(
                405, f"Method Not Allowed: {path} accepts GET, HEAD", headers=[("allow", "GET, HEAD")]
            )
        if server.closing:
            return Response.text(503, "shutting down")
        return Response.text(200, "ok")

    route = app.resolve(target)
    if route is None:
        return Response.text(404, f"Not Found: no route for {printable(path)}")
    if server.closing:
        return Response.text(503, "Service Unavailable: the server is shutting down")

    if isinstance(route, HTTPRoute):
        if method not in route.methods:
            allow = ", ".join(sorted(route.methods))
            return Response.text(
                405, f"Method Not Allowed: {printable(path)} accepts {allow}", headers=[("allow", allow)]
            )
        return route

    if method != "GET" or not is_websocket_upgrade(request.headers):
        return Response.text(
            426,
            f"Upgrade Required: {printable(path)} is a WebSocket endpoint; "
            f"connect to it with a WebSocket client, not a plain HTTP request",
            headers=[("upgrade", "websocket"), ("connection", "Upgrade")],
        )
    if header_value(request.headers, b"content-length") or header_value(
        request.headers, b"transfer-encoding"
    ):
        return Response.text(400, "Bad Request: a WebSocket handshake has no body")
    refusal = handshake_refusal(request.http_version, request.headers)
    if refusal is not None:
        return refusal
    if not origin_allowed(origin, host, server.options.allowed_origins):
        shown = printable(header_value(request.headers, b"origin") or b"")
        logger.info("refused a WebSocket from origin %s on %s", shown, printable(path))
        return Response.text(
            403,
            f"Forbidden: origin {shown} may not open a WebSocket here; "
            f"the server allows it with --allowed-origin {shown}",
        )
    return route


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


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection, limit: int) -> h11.Request | None:
    """Read until h11 has a whole request head; ``None`` if the client hung up first.

    Raises:
        h11.RemoteProtocolError: a malformed head, or one over ``limit`` bytes
            (``error_status_hint`` 431). h11's own limit only counts a head
            still incomplete, so a larger one that arrives in a single read
            is measured here.
    """
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(_READ_SIZE)
            except trio.BrokenResourceError:
                return None
            received += len(data)
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            size = received - len(conn.trailing_data[0])
            if size > limit:
                raise h11.RemoteProtocolError(
                    f"request head of {size} bytes is over max_request_head_size ({limit})",
                    error_status_hint=431,
                )
            return event
        else:
            return None  # ConnectionClosed: EOF before any request


def _trailing_data(conn: h11.Connection) -> bytes:
    """The bytes that came after the request head: the client's first WebSocket frames."""
    data, _closed = conn.trailing_data
    return bytes(data)


def _handshake_rejection(exc: HandshakeError) -> Response:
    """Turn wsproto's verdict on a bad handshake into an HTTP answer."""
    hint = exc.event_hint
    status: int = 400
    headers: tuple[tuple[str, str], ...] = ()
    if isinstance(hint, RejectConnection):
        status = hint.status_code
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in hint.headers)
    logger.debug("bad WebSocket handshake: %s", printable(str(exc)))
    return Response.text(status, f"{_phrase(status)}: {printable(str(exc))}", headers=headers)


async def _call_http_handler(route: HTTPRoute, request: h11.Request, target: Target) -> Response:
    http_request = Request(
        method=request.method.decode("ascii", "replace"),
        path=target.path,
        query=target.query,
        headers=tuple(request.headers),
    )
    try:
        return await route.handler(http_request)
    except Exception:
        logger.exception("HTTP handler for %s failed", printable(target.path))
        return Response.text(500, "Internal Server Error")


async def _respond(
    stream: trio.abc.Stream, conn: h11.Connection, response: Response, *, head_only: bool = False
) -> None:
    """Send ``response`` and close the connection politely.

    Responses are small, so the bound here only matters for a client that
    stops reading: it is not allowed to hold the connection open.
    """
    # Every answer ends the connection; a response may add tokens (426 adds "Upgrade").
    connection = ["close"] + [v for k, v in response.headers if k.lower() == "connection"]
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("connection", ", ".join(connection)),
        *_SECURITY_HEADERS,
        *[(k, v) for k, v in response.headers if k.lower() != "connection"],
    ]
    if response.content_type.startswith("text/html"):
        headers.append(("content-security-policy", _PAGE_CSP))
    data = conn.send(
        h11.Response(status_code=response.status, headers=headers, reason=_phrase(response.status))
    )
    if not head_only and response.body:
        data += conn.send(h11.Data(data=response.body))
    data += conn.send(h11.EndOfMessage())
    with trio.move_on_after(_SEND_TIMEOUT):
        await stream.send_all(data)
        await linger(stream)


def _peer(stream: trio.abc.Stream) -> str:
    """The peer's address as ``host:port`` for a log line, or a description of the stream."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            host, port, *_ = stream.socket.getpeername()
        except OSError:
            return "a peer that has gone"
        return f"{host}:{port}"
    return type(stream).__name__


def _header_str(request: h11.Request, name: bytes) -> str | None:
    value = header_value(request.headers, name)
    return None if value is None else value.decode("latin-1")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
