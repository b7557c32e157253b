"""The front door: one TCP connection, request after request, each answered or upgraded.

Every connection the server accepts gets one task, which starts here and
serves request after request (HTTP/1.1 keep-alive) until the connection
closes or becomes a WebSocket::

    connection task                serve_stream: the whole life of one TCP connection
    ├─ request nursery             one per request to a route's handler, closed with it
    │  └─ departure watcher        reads the socket while the handler works; EOF cancels the request
    └─ the handler, and its streamed response body, run in the connection task itself

For each request: read the head with h11 (``_http/wire.py``), ask ``decide``
(``_http/decide.py``, pure) what to do, run the hooks (auth, then for a WebSocket
``before_upgrade``), read the body, call the handler, write its response,
and go round again; or hand an upgrade to ``_websocket.lifetime.run_websocket``.

Rules of this module:

* A peer's mistake is answered over HTTP and logged without a traceback
  (the access line at INFO, the details at DEBUG). Only a bug, ours or a
  handler's, logs a traceback.
* Nothing that happens on one connection escapes ``serve_stream``: an
  exception from here would otherwise crash the whole server. What app code
  raises (handlers, their bodies, hooks) goes through ``contain``: it fails
  that request alone, whatever its type, short of a stop (``_contain.py``).
* One request at a time, so answers go out in the order the requests came
  (pipelined requests wait in h11's buffer).
* Every read from a peer is bounded before it is trusted: the first head by
  ``handshake_timeout``, a later one by ``http_idle_timeout``; the head's
  size by ``max_request_head_size`` and its header count by
  ``max_request_headers`` (431); the time a connection may wait with no
  complete head by ``max_idle_connections`` (``_server/admission.py``); a body by
  ``max_request_body`` (413) and ``request_body_timeout`` (408); the
  requests on one connection by ``max_requests_per_connection``; an upgrade
  by a free ``max_connections`` slot (503).
* A connection is used again only if both sides finished their messages;
  an answer given before the request's body was read closes it.
* When the client goes away while a handler works or a response streams,
  the request is cancelled at once (``_watch_departure``), and the
  connection with it.
* The request target is taken apart once, by ``_target.parse_target``; a
  value from the peer reaches a log line only through ``printable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import h11
import trio

from .._app.request import Identity, Request, RequestBody, RequestBodyError
from .._app.response import Response
from .._app.routing import AuthHook, BeforeUpgrade, HTTPRoute, WebSocketRoute
from .._contain import contain
from .._linger import linger
from .._observe.logs import set_log_fields
from .._observe.metrics import server_route
from .._observe.tracing import end_http_span, http_span, use_span
from .._options import seconds
from .._printable import printable
from .._websocket.connection import ServerConnection
from .._websocket.lifetime import run_websocket
from .decide import Routed, check_head_limits, decide, open_websocket
from .target import Target, parse_target
from .wire import BodyReader, Stalled, Wire, declared_length, phrase

if TYPE_CHECKING:
    from .host import Host

__all__ = ["serve_stream"]

logger = logging.getLogger("trio_ws.http")

_WATCH_SIZE = 16 * 1024


async def serve_stream(stream: trio.abc.Stream, server: Host) -> None:
    """Serve one accepted connection until it is done, then close it.

    Error handling: an exception that is not a peer's mistake is a bug; it
    is logged with its traceback and ends only this connection.
    """
    try:
        upgrade = await _serve(stream, server)
        if upgrade is not None:
            # The WebSocket runs here, once _serve has returned, so that no frame of the HTTP
            # side stays alive with it: a WebSocket may stay open for days, and there are many.
            peer, wire, asked = upgrade
            with server.admission.websocket_slot() as admitted:
                ws = await _open_websocket(peer, wire, asked, admitted)
                route, deadline = asked.route, asked.deadline
                del upgrade, peer, wire, asked  # the HTTP side is done
                if ws is not None:
                    await run_websocket(ws, route, server, deadline)
    except (trio.BrokenResourceError, trio.ClosedResourceError, Stalled):
        logger.debug("connection lost before the answer was sent")
    except BaseException as exc:
        contain(exc, logger, "internal error while serving a connection; please report a bug")
    finally:
        await trio.aclose_forcefully(stream)


@dataclass(frozen=True)
class _Upgrade:
    """The outcome of a request that may become a WebSocket: its hooks let it through."""

    h11_request: h11.Request
    request: Request
    route: WebSocketRoute
    deadline: float
    access: _Access


class _Peer:
    """What one connection knows about its client, for every request on it."""

    def __init__(self, stream: trio.abc.Stream, server: Host) -> None:
        self.stream = stream
        self.server = server
        self.address = _address(stream)
        self.scheme = "https" if isinstance(stream, trio.SSLStream) else "http"
        self.served = 0

    def __str__(self) -> str:
        if self.address is None:
            return type(self.stream).__name__
        return f"{self.address[0]}:{self.address[1]}"


async def _serve(stream: trio.abc.Stream, server: Host) -> tuple[_Peer, Wire, _Upgrade] | None:
    """Serve requests until the connection is done (``None``) or a request may become a WebSocket
    (what ``_open_websocket`` needs to answer it)."""
    options = server.options
    peer = _Peer(stream, server)
    set_log_fields(remote=str(peer))  # for structured logs, in this connection's task
    wire = Wire(stream, options.max_request_head_size)
    # The first head (and an upgrade right after it) must arrive within handshake_timeout.
    deadline = trio.current_time() + seconds(options.handshake_timeout)
    while True:
        request = await _next_request(peer, wire, deadline)
        if request is None:
            return None
        peer.served += 1
        if peer.served > 1:  # an upgrade after earlier requests gets handshake_timeout of its own
            deadline = trio.current_time() + seconds(options.handshake_timeout)
        if server.metrics is None and server.tracer is None:
            outcome = await _exchange(peer, wire, request, deadline)
        else:
            outcome = await _measured_exchange(peer, wire, request, deadline)
        del request
        if isinstance(outcome, _Upgrade):
            return peer, wire, outcome
        if not outcome:
            return None
        if server.closing:  # no request after this one: the connection ends between requests
            await linger(stream)
            return None
        wire.conn.start_next_cycle()
        deadline = trio.current_time() + seconds(options.http_idle_timeout)


async def _next_request(peer: _Peer, wire: Wire, deadline: float) -> h11.Request | None:
    """The next request head, or ``None`` when the connection is done (after answering a bad head)."""
    kept_alive = peer.served > 0
    refused: h11.RemoteProtocolError | None = None
    with (
        trio.move_on_at(deadline) as reading,
        peer.server.admission.waiting(peer.stream, kept_alive=kept_alive) as waiting,
    ):
        try:
            return await wire.read_request()
        except h11.RemoteProtocolError as exc:
            refused = exc
    if refused is not None:
        status = refused.error_status_hint
        logger.info("refused a bad request head from %s: %d (%s)", peer, status, printable(str(refused)))
        await _answer(peer, wire, Response.text(status, f"{phrase(status)}: {printable(str(refused))}"))
    elif waiting.evicted:
        logger.debug(
            "closed %s: %s",
            peer,
            "a keep-alive connection, at shutdown or to make room"
            if kept_alive
            else "it waited longest for a request head (max_idle_connections)",
        )
    elif reading.cancelled_caught and kept_alive:
        logger.debug("closed %s: no new request within http_idle_timeout", peer)
    elif reading.cancelled_caught:
        logger.info(
            "dropped %s: no complete request head within handshake_timeout (%s s)",
            peer,
            peer.server.options.handshake_timeout,
        )
    return None


async def _measured_exchange(
    peer: _Peer, wire: Wire, h11_request: h11.Request, deadline: float
) -> bool | _Upgrade:
    """``_exchange``, counted for ``/metrics`` and traced: its figures and span end with it."""
    access = _MeasuredAccess(h11_request.method.decode("ascii", "replace"), h11_request, peer)
    outcome: bool | _Upgrade = False
    try:
        with access.current():
            outcome = await _exchange(peer, wire, h11_request, deadline, access)
    finally:
        if not isinstance(outcome, _Upgrade):  # else the upgrade's own answer ends it
            access.end()
    return outcome


async def _exchange(
    peer: _Peer, wire: Wire, h11_request: h11.Request, deadline: float, access: _Access | None = None
) -> bool | _Upgrade:
    """Answer one request; return whether the connection can serve another, or the upgrade to make."""
    server = peer.server
    if access is None:
        access = _Access(h11_request.method.decode("ascii", "replace"), h11_request.target)
    if not _has_body(h11_request):
        await wire.next_body_event()  # h11's EndOfMessage, already in hand: the request is complete
    target = parse_target(h11_request.target)
    decision = check_head_limits(h11_request, server.options) or decide(h11_request, target, server)
    if isinstance(decision, Response):
        if server.metrics is not None and target is not None:
            access.route = server_route(server.app, target.path)  # /healthz and /metrics are declared too
        return await _answer(peer, wire, decision, access)
    assert target is not None  # decide() routes only a target it could parse
    request = _request(peer, h11_request, target, decision)
    route = decision.route
    access.route = route.path
    hook = server.app.auth_for(route)
    if isinstance(route, HTTPRoute):
        refusal = None if hook is None else await _authenticate(hook, request)
        if refusal is not None:
            return await _answer(peer, wire, refusal, access, extra_headers=decision.cors)
        return await _serve_route(peer, wire, h11_request, request, route, decision.cors, access)
    # An upgrade's hooks are part of its handshake, and share its deadline.
    with trio.move_on_at(deadline) as handshake:
        refusal = None if hook is None else await _authenticate(hook, request)
        if refusal is None and route.before_upgrade is not None:
            refusal = await _before_upgrade(route.before_upgrade, request)
    if handshake.cancelled_caught:
        logger.info("dropped %s: the upgrade's hooks did not finish within handshake_timeout", peer)
        return False
    if refusal is not None:
        return await _answer(peer, wire, refusal, access)
    return _Upgrade(h11_request, request, route, deadline, access)


# -- hooks ------------------------------------------------------------------------------


async def _authenticate(hook: AuthHook, request: Request) -> Response | None:
    """Run an auth hook: ``None`` lets the request in (with ``request.identity`` set), or the refusal."""
    outcome = await _run_hook(
        "auth hook", hook, request, "a trio_ws.Identity or a trio_ws.Response", (Identity, Response)
    )
    if isinstance(outcome, Identity):
        request.identity = outcome
        return None
    return cast(Response, outcome)


async def _before_upgrade(hook: BeforeUpgrade, request: Request) -> Response | None:
    """Run a pre-upgrade hook: ``None`` lets the upgrade through, or the answer to send instead."""
    outcome = await _run_hook(
        "before_upgrade hook", hook, request, "None or a trio_ws.Response", (type(None), Response)
    )
    return cast("Response | None", outcome)


async def _run_hook(
    kind: str,
    hook: Callable[[Request], Awaitable[object]],
    request: Request,
    returns: str,
    valid: tuple[type, ...],
) -> object:
    """What ``hook`` returns for ``request``; a hook that fails, or returns something else, is a bug: it is
    logged (with the traceback) and answered with 500."""
    try:
        outcome = await hook(request)
    except BaseException as exc:
        contain(exc, logger, "%s %s failed on %s", kind, _name(hook), printable(request.path))
        return Response.text(500, "Internal Server Error")
    if isinstance(outcome, valid):
        return outcome
    logger.error("%s %s returned %r; it must return %s", kind, _name(hook), type(outcome).__name__, returns)
    return Response.text(500, "Internal Server Error")


# -- an HTTP route ----------------------------------------------------------------------


async def _serve_route(
    peer: _Peer,
    wire: Wire,
    h11_request: h11.Request,
    request: Request,
    route: HTTPRoute,
    cors: list[tuple[str, str]],
    access: _Access,
) -> bool:
    """Read the body, run the handler and send its response, all cancelled if the client leaves."""
    options = peer.server.options
    declared = declared_length(h11_request)
    if declared is not None and declared > options.max_request_body:
        too_large = Response.text(
            413, f"Content Too Large: {declared} bytes is over max_request_body ({options.max_request_body})"
        )
        return await _answer(peer, wire, too_large, access, extra_headers=cors)
    body_deadline = trio.current_time() + seconds(options.request_body_timeout)
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as request_scope:

            def watch() -> None:
                nursery.start_soon(_watch_departure, wire, request_scope)

            reader = BodyReader(wire, options.max_request_body, body_deadline, on_complete=watch)
            if not _has_body(h11_request):
                watch()
            response = await _respond_to(request, route, reader)
            close = _must_close(peer, wire) or not reader.complete
            access.log(response.status)
            # Nothing may escape the request nursery but a bug of ours: it would come out as a group.
            broken = False
            try:
                await _write(peer, wire, request, response, close, cors)
            except (trio.BrokenResourceError, trio.ClosedResourceError, Stalled):
                logger.debug("connection lost while the answer to %s was sent", printable(request.path))
                broken = True
            except BaseException as exc:
                contain(exc, logger, "the response body for %s failed", printable(request.path))
                broken = True
        nursery.cancel_scope.cancel()  # the watcher's work is done
    if request_scope.cancelled_caught:
        logger.info(
            '"%s %s": the client left before the answer was complete', access.method, printable(access.target)
        )
        return False
    if broken:
        return False
    if close:
        await linger(peer.stream)
        return False
    return wire.reusable


async def _write(
    peer: _Peer, wire: Wire, request: Request, response: Response, close: bool, cors: list[tuple[str, str]]
) -> None:
    """Send a handler's response; a streamed one is counted, so that shutdown can end it cleanly."""
    head_only = request.method == "HEAD"
    if not response.streamed:
        await wire.write_response(response, head_only=head_only, close=close, extra_headers=cors)
        return
    with peer.server.streaming(request) as stop:
        await wire.write_response(response, head_only=head_only, close=close, extra_headers=cors, stop=stop)


async def _respond_to(request: Request, route: HTTPRoute, reader: BodyReader) -> Response:
    """The handler's response, or the server's answer to a body or handler that failed."""
    try:
        if route.stream_body:
            request._attach_body(RequestBody(reader))
        else:
            request._attach_body(await reader.read_all())
        response = await route.handler(request)
    except RequestBodyError as exc:
        logger.debug("request body for %s refused: %s", printable(request.path), printable(str(exc)))
        return Response.text(exc.status, exc.message)
    except BaseException as exc:
        contain(exc, logger, "HTTP handler for %s failed", printable(request.path))
        return Response.text(500, "Internal Server Error")
    if not isinstance(response, Response):
        logger.error(
            "HTTP handler for %s returned %r; it must return a trio_ws.Response",
            printable(request.path),
            type(response).__name__,
        )
        return Response.text(500, "Internal Server Error")
    return response


async def _watch_departure(wire: Wire, request_scope: trio.CancelScope) -> None:
    """Cancel the request if the client hangs up while its handler works or its answer streams.

    Reading is the only way to notice a peer that leaves (EOF or a reset).
    What it reads instead is the start of the next, pipelined request: h11
    keeps it for later, and the watch ends (the client is evidently still there).
    """
    try:
        data = await wire.stream.receive_some(_WATCH_SIZE)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        data = b""
    if data:
        wire.conn.receive_data(bytes(data))
    else:
        request_scope.cancel()


# -- a WebSocket route ------------------------------------------------------------------


async def _open_websocket(
    peer: _Peer, wire: Wire, upgrade: _Upgrade, admitted: bool
) -> ServerConnection | None:
    """Hand the request to wsproto, or answer why not (503 when no ``max_connections`` slot is free)."""
    if not admitted:
        full = Response.text(
            503, "Service Unavailable: the server has as many WebSocket connections as it takes"
        )
        await _answer(peer, wire, full, upgrade.access)
        return None
    options = peer.server.options
    ws = open_websocket(peer.stream, upgrade.h11_request, bytes(wire.conn.trailing_data[0]), options)
    if isinstance(ws, Response):
        await _answer(peer, wire, ws, upgrade.access)
        return None
    ws.request = upgrade.request
    upgrade.access.end(101)
    return ws


# -- answers ----------------------------------------------------------------------------


class _Access:
    """The request line of the access log."""

    __slots__ = ("method", "route", "target")

    def __init__(self, method: str, target: bytes) -> None:
        self.method = method
        self.target = target
        self.route = ""  # the declared route's path, once routed

    def log(self, status: int) -> None:
        logger.info('"%s %s" %d', self.method, printable(self.target), status)

    def end(self, status: int = 0) -> None:
        """The request is over (``status`` 101: upgraded) without an answer of the server's to log."""


class _MeasuredAccess(_Access):
    """The access log, the request's figures for ``/metrics`` and its span (each ended once)."""

    __slots__ = ("ended", "metrics", "scheme", "span", "started", "version")

    def __init__(self, method: str, h11_request: h11.Request, peer: _Peer) -> None:
        super().__init__(method, h11_request.target)
        server = peer.server
        self.metrics = server.metrics
        self.scheme = peer.scheme
        self.version = h11_request.http_version.decode("ascii", "replace")
        self.started = time.perf_counter()
        self.ended = False
        if self.metrics is not None:
            self.metrics.request_started(method, self.scheme)
        self.span = None if server.tracer is None else http_span(server.tracer, h11_request, peer.scheme)

    def current(self) -> AbstractContextManager[object]:
        """The request's span as the current one, so that a handler's own spans are its children."""
        return nullcontext() if self.span is None else use_span(self.span)

    def log(self, status: int) -> None:
        super().log(status)
        self.end(status)

    def end(self, status: int = 0) -> None:
        if self.ended:
            return
        self.ended = True
        if self.metrics is not None:
            seconds = time.perf_counter() - self.started
            self.metrics.request_done(self.method, self.scheme, status, self.route, self.version, seconds)
        if self.span is not None:
            end_http_span(self.span, self.method, self.route, status)


async def _answer(
    peer: _Peer,
    wire: Wire,
    response: Response,
    access: _Access | None = None,
    *,
    extra_headers: list[tuple[str, str]] | None = None,
) -> bool:
    """Send a response the server made itself; return whether the connection can serve another."""
    close = _must_close(peer, wire) or wire.conn.their_state is not h11.DONE
    if access is not None:
        access.log(response.status)
    await wire.write_response(
        response,
        head_only=access is not None and access.method == "HEAD",
        close=close,
        extra_headers=extra_headers,
    )
    if close:
        await linger(peer.stream)
        return False
    return wire.reusable


def _must_close(peer: _Peer, wire: Wire) -> bool:
    """Whether this answer must be the connection's last, whatever the client asked."""
    limit = peer.server.options.max_requests_per_connection
    return (
        peer.server.closing
        or (limit is not None and peer.served >= limit)
        or wire.conn.their_state is h11.ERROR
    )


def _request(peer: _Peer, h11_request: h11.Request, target: Target, routed: Routed) -> Request:
    headers = tuple(h11_request.headers)
    return Request(
        h11_request.method.decode("ascii"),
        target.path,
        target.query,
        headers,
        raw_path=target.raw_path,
        path_params=routed.params,
        client=peer.address,
        scheme=peer.scheme,
        http_version=h11_request.http_version.decode("ascii"),
        host=target.authority,
        server=peer.server,
    )


def _has_body(request: h11.Request) -> bool:
    """Whether the request announces a body (h11 has checked the framing headers)."""
    for name, value in request.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def _address(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The peer's ``(host, port)``, or ``None`` for a stream that is not TCP (or a peer gone)."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            host, port, *_ = stream.socket.getpeername()
        except OSError:
            return None
        return str(host), int(port)
    return None


def _name(hook: object) -> str:
    return str(getattr(hook, "__qualname__", hook))
