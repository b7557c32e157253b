"""``map_hub``: a hub on an ``App``, at a path, with negotiate, its transports and its service.

``map_connection`` (``_connection_handler.py``) mounts a connection handler with the same
routes, checks and service (``map_endpoint``): what follows holds for both.

::

    app = trio_ws.App()
    chat = map_hub(app, "/chat", Chat(), options=HubOptions(...))

    POST /chat/negotiate              negotiate: a new hub connection's id and token (any case: /Chat/...)
    GET  /chat?id=TOKEN  (upgrade)    the WebSocket that carries that connection
    GET  /chat           (upgrade)    a WebSocket that opens a connection of its own (skipNegotiation)
    GET  /chat?id=TOKEN               Server-Sent Events (Accept: text/event-stream), or a long poll
    POST /chat?id=TOKEN               the client's messages, for Server-Sent Events and Long Polling
    DELETE /chat?id=TOKEN             the end of a Long Polling connection
    service                           the hub server: started with the app's server, closed with it

What runs where::

    serve(app, ...)
    └─ services nursery
       ├─ hub service                  HubServer.run: every hub connection's nursery (see server.py)
       └─ connections nursery
          └─ one task per TCP connection
             ├─ WebSocket handler      HubConnection.attach: writes the connection's queue while it lasts
             └─ HTTP handler           an event stream, a poll or a POST (_http_transports.py)

Rules of this module:

* Everything here goes through the front door's public API (routes,
  ``before_upgrade``, auth hooks, services, ``wait_closing``): a hub is an
  ordinary user of ``App``.
* Hub paths match in any case, as ASP.NET's do and clients rely on.
* Negotiate lists the transports the hub allows, and grants stateful
  reconnect only when the client asks for it and the hub allows it.
* Every transport request is checked as ASP.NET checks it, and refused
  with its answers: no ``id`` 400 ("Connection ID required"), an unknown
  one 404 ("No Connection with that ID"), a transport the hub does not
  allow 404 ("X transport not supported by this end point type"), a
  transport of another kind than the connection's 400 ("Cannot change
  transports mid-connection"), a second one while one is attached 409
  (except a WebSocket taking over a stateful-reconnect connection), a POST
  to a WebSocket connection 405, a ``DELETE`` for anything but Long Polling
  400. A WebSocket is refused before its 101.
* The hub's auth hook sees negotiate and every transport request (with the
  ``access_token`` query, all a browser's WebSocket and EventSource can
  carry); the identity's ``user_id`` is the connection's user, and a
  request from another user is refused with 403. A refusal with 401 is
  answered as ASP.NET answers it: an empty body, so the client's error
  reads "Unauthorized: Status code '401'".
* On graceful shutdown the hub server sends every connection Close with
  ``allowReconnect`` before the server's Close 1001 goes out or its event
  streams end (their handlers watch for the shutdown, so the server waits
  for them).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..._app.request import Identity, Request
from ..._app.response import Response
from ..._app.routing import AuthHook, InheritAuth
from ..._observe.tracing import kept_trace
from ..._printable import printable
from .._backplane import Backplane
from .._errors import BackplaneError
from .._hub.filters import AnyFilter, app_filters
from .._hub.hub import Hub
from .._options import HubOptions
from .._transports.connection import TransportConnection
from .._transports.http_requests import delete, event_stream, poll, post
from .._transports.negotiate import HttpTransportType, NegotiateError, negotiate_answer, negotiate_version
from .._transports.relay import DELETE, POLL, POST, WEBSOCKET, relay, relay_check, relay_websocket
from .._transports.transport import ConnectionGone, TransportInUse, TransportMismatch
from .._transports.websocket import WebSocketTransport
from .server import ConnectionServer, HubFull, HubServer

if TYPE_CHECKING:
    from ..._app.app import App
    from ..._server.server import Server
    from ..._websocket.connection import ServerConnection

__all__ = ["NegotiateHook", "map_hub"]

logger = logging.getLogger("trio_ws.signalr")

NegotiateHook = Callable[[Request, Response], Awaitable[Response]]
"""Sees negotiate's answer before it is sent, and returns it (or another): to add headers or cookies."""

_ALL = (
    HttpTransportType.WEBSOCKETS,
    HttpTransportType.SERVER_SENT_EVENTS,
    HttpTransportType.LONG_POLLING,
)


def map_hub(
    app: App,
    path: str,
    hub: Hub[Any],
    *,
    options: HubOptions | None = None,
    backplane: Backplane | None = None,
    auth: AuthHook | InheritAuth | None = InheritAuth.APP,
    transports: Iterable[HttpTransportType] = _ALL,
    stateful_reconnect: bool = False,
    on_negotiate: NegotiateHook | None = None,
    filters: Sequence[AnyFilter] = (),
) -> HubServer:
    """Serve ``hub`` on ``app`` at ``path``, as ASP.NET's ``MapHub`` does; return its ``HubServer``.

    Adds ``POST {path}/negotiate``, the transports at ``{path}`` (the
    WebSocket upgrade; ``GET`` for Server-Sent Events and long polls;
    ``POST`` and ``DELETE`` beside them), and a service that runs the hub
    server for as long as the app is served (and closes it gracefully when
    the server shuts down). Use the returned ``HubServer`` to reach clients
    from outside a hub call (``hub_server.clients.all.send(...)``).

    Args:
        app: The app to add the routes and the service to.
        path: The hub's path, such as ``"/chat"``; matched in any case.
        hub: The hub instance; it belongs to this mapping's hub server.
        options: The hub's limits and timeouts (``HubOptions()`` by default).
        backplane: Where groups and users are kept (in process by default).
        auth: An auth hook for negotiate and every transport request; by
            default the app's (``App(auth=...)``, as set now); ``None`` for
            none. ``trio_ws.bearer_auth`` reads ``?access_token=`` too, which
            is how browsers send the token on a WebSocket and an EventSource.
        transports: The transports the hub allows (all three by default, as
            in ASP.NET); negotiate lists only these, and the others are refused.
        stateful_reconnect: Grant stateful reconnect to the clients that ask
            for it (ASP.NET's ``AllowStatefulReconnects``): a WebSocket that
            drops is replaced by a new one to the same connection, and
            nothing sent either way is lost.
        on_negotiate: ``async def hook(request, response) -> Response``,
            called with each successful negotiate answer; what it returns
            is sent (add cookies or headers with ``dataclasses.replace``).
        filters: Hub filters around this hub's calls, connects and
            disconnects, outermost first, after the app's (``add_hub_filter``).

    Raises:
        ValueError: no transport, or a path that does not start with ``/``.
        TypeError, ValueError: as ``HubServer`` raises them (a hub method
            that cannot be offered; a hub already served).
    """
    offered = check_endpoint(path, transports)
    hub_server = HubServer(hub, options=options, backplane=backplane, filters=filters)
    hub_server.app_filters = app_filters(app)
    # No WebSocket pings: the hub pings and times out its clients itself, and signalrcore's
    # client never answers a WebSocket ping (the server would drop it as dead).
    map_endpoint(
        app,
        path,
        hub_server,
        auth=auth,
        transports=offered,
        stateful_reconnect=stateful_reconnect,
        on_negotiate=on_negotiate,
        websocket_pings=False,
    )
    return hub_server


def check_endpoint(path: str, transports: Iterable[HttpTransportType]) -> frozenset[HttpTransportType]:
    """The transports an endpoint offers, checked with its path.

    Raises:
        ValueError: no transport, one that is not an ``HttpTransportType``, or a
            path that does not start with ``/``.
    """
    offered = frozenset(transports)
    if not offered:
        raise ValueError("an endpoint needs at least one transport")
    unknown = [transport for transport in offered if not isinstance(transport, HttpTransportType)]
    if unknown:
        raise ValueError(f"transports are HttpTransportType members, not {unknown!r}")
    if not path.rstrip("/").startswith("/"):
        raise ValueError(f"endpoint path {path!r} must start with '/'")
    return offered


def map_endpoint(
    app: App,
    path: str,
    server: ConnectionServer[Any],
    *,
    auth: AuthHook | InheritAuth | None,
    transports: frozenset[HttpTransportType],
    stateful_reconnect: bool,
    on_negotiate: NegotiateHook | None,
    websocket_pings: bool,
) -> None:
    """Route negotiate and the transports at ``path`` to ``server``'s connections, and run it
    as a service of the app (for ``map_hub`` and ``map_connection`` alike)."""
    path = path.rstrip("/")
    hook = app.auth if auth is InheritAuth.APP else auth
    endpoint = _HubEndpoint(server, transports, stateful_reconnect, on_negotiate)
    guard = None if hook is None else _hub_auth(hook)
    app.add_route(f"{path}/negotiate", endpoint.negotiate, methods=["POST"], auth=guard, ignore_case=True)
    app.add_websocket(
        path,
        endpoint.websocket,
        auth=guard,
        before_upgrade=endpoint.before_upgrade,
        ignore_case=True,
        keep_alive=websocket_pings,
    )
    app.add_route(path, endpoint.get, methods=["GET"], auth=guard, ignore_case=True)
    app.add_route(path, endpoint.post, methods=["POST"], auth=guard, ignore_case=True, stream_body=True)
    app.add_route(path, endpoint.delete, methods=["DELETE"], auth=guard, ignore_case=True)
    app.add_service(endpoint.service)


def _hub_auth(hook: AuthHook) -> AuthHook:
    """``hook``, with a 401 answered as ASP.NET answers it: its headers, an empty body."""

    async def authenticate(request: Request) -> Identity | Response:
        outcome = await hook(request)
        if isinstance(outcome, Response) and outcome.status == 401:
            return dataclasses.replace(outcome, body=b"", content_type=None)
        return outcome

    return authenticate


class _HubEndpoint:
    """The handlers ``map_hub`` and ``map_connection`` route: negotiate, the transports and their
    checks, the service."""

    def __init__(
        self,
        hub_server: ConnectionServer[Any],
        transports: frozenset[HttpTransportType],
        stateful_reconnect: bool,
        on_negotiate: NegotiateHook | None,
    ) -> None:
        self.hub_server = hub_server
        self.transports = transports
        self.stateful_reconnect = stateful_reconnect
        self.on_negotiate = on_negotiate

    async def service(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the hub server as long as the app's server; close it when graceful shutdown begins."""
        async with trio.open_nursery() as nursery:
            self.hub_server.instrument(server.metrics, server.tracer)
            await nursery.start(self.hub_server.run)
            task_status.started()
            await server.wait_closing()
            await self.hub_server.aclose()

    # -- negotiate ------------------------------------------------------------------------

    async def negotiate(self, request: Request) -> Response:
        """``POST {hub}/negotiate``: a new connection, and how to reach it."""
        try:
            version = negotiate_version(_query_values(request, "negotiateversion"))
        except NegotiateError as exc:
            logger.info("negotiate refused: %s", printable(exc.text))
            return Response.json(200, {"error": exc.text})
        if self.hub_server.closing:
            return Response.text(503, "Service Unavailable: the hub is shutting down")
        stateful = self.stateful_reconnect and any(
            value.strip().lower() == "true" for value in _query_values(request, "usestatefulreconnect")
        )
        try:
            # Only reserved: the connection opens where its first transport request lands.
            pending = await self.hub_server.reserve(
                user_id=_user_id(request),
                token_is_id=version == 0,
                stateful_reconnect=stateful,
                # The calls' spans join this trace if the transport's request names none.
                trace=None if self.hub_server.tracer is None else kept_trace(request.headers),
            )
        except HubFull as exc:
            return _full(exc)
        except BackplaneError as exc:
            return _unavailable(exc)
        answer = negotiate_answer(
            version, pending.connection_id, pending.token, self.transports, stateful_reconnect=stateful
        )
        response = Response.json(200, answer, headers=[("cache-control", "no-cache")])
        if self.on_negotiate is not None:
            response = await self.on_negotiate(request, response)
        return response

    # -- the WebSocket --------------------------------------------------------------------

    async def before_upgrade(self, request: Request) -> Response | None:
        """Refuse a WebSocket the hub does not allow, for a connection that does not exist, is
        carried otherwise, is taken, or is someone else's."""
        token = request.query_param("id")
        if token is None:
            # The client skipped negotiate: the handler opens a connection, if there is room.
            if HttpTransportType.WEBSOCKETS not in self.transports:
                return _not_supported(HttpTransportType.WEBSOCKETS)
            limit = self.hub_server.options.max_connections
            if limit is not None and self.hub_server.statistics().connections >= limit:
                return _full(HubFull(limit))
            return None
        found = await self._locate(request, token)
        if isinstance(found, Response):
            return found
        if isinstance(found, str):
            # Held by another worker: a stateful reconnect's new socket; the holder checks it.
            if HttpTransportType.WEBSOCKETS not in self.transports:
                return _not_supported(HttpTransportType.WEBSOCKETS)
            return await relay_check(self.hub_server, found, WEBSOCKET, request)
        if found.closing:
            return _unknown()
        if HttpTransportType.WEBSOCKETS not in self.transports:
            return _not_supported(HttpTransportType.WEBSOCKETS)
        if found.transport_name not in (None, HttpTransportType.WEBSOCKETS.value):
            return _cannot_change()
        if found.has_transport and not found.resumable:
            return _in_use()
        return None

    async def websocket(self, ws: ServerConnection) -> None:
        """Carry one hub connection over this WebSocket until either ends."""
        request = ws.request
        if request.closing or self.hub_server.closing:  # reading it: this handler says its own goodbye
            await ws.aclose(1001, "server shutting down")
            return
        transport = WebSocketTransport(ws)
        token = request.query_param("id")
        if token is None:
            # A client that skipped negotiation (serve_transport's two steps, with this handler
            # awaiting attach itself: a frame fewer kept for each connection's whole life).
            try:
                connection = self.hub_server.open_connection(user_id=_user_id(request), request=request)
            except HubFull:  # filled up between the hook and the upgrade
                await ws.aclose(1013, "the hub is full; try again later")
                return
            await connection.attach(transport)
            return
        connection = self.hub_server.find_connection(token)  # opened by before_upgrade's claim
        if connection is None:
            try:
                holder = await self.hub_server.locate(token, request=request)
            except (BackplaneError, HubFull):
                holder = None
            if isinstance(holder, str):
                await relay_websocket(self.hub_server, holder, ws)
                return
        try:
            if connection is None:
                raise ConnectionGone(token)
            await connection.attach(transport, request=request)
        except (ConnectionGone, TransportInUse, TransportMismatch) as exc:
            # Taken or gone between the hook and the upgrade (two sockets racing for one id).
            logger.info("%s: refused after the upgrade: %s", ws, type(exc).__name__)
            await ws.aclose(
                1008, "connection gone" if isinstance(exc, ConnectionGone) else "connection in use"
            )

    # -- Server-Sent Events, Long Polling ---------------------------------------------------

    async def get(self, request: Request) -> Response:
        """``GET {hub}?id=`` that is not an upgrade: an event stream, or a long poll."""
        streaming = "text/event-stream" in (request.header("accept") or "").lower()
        kind = HttpTransportType.SERVER_SENT_EVENTS if streaming else HttpTransportType.LONG_POLLING
        found = await self._locate(request, request.query_param("id"))
        if isinstance(found, Response):
            return found
        if kind not in self.transports:
            return _not_supported(kind)
        if isinstance(found, str):
            if streaming:  # an event stream is served where it landed first; a second is refused
                return _in_use()
            return await relay(self.hub_server, found, POLL, request)
        try:
            if streaming:
                return event_stream(found, request)
            return await poll(found, request, self.hub_server.options.long_polling_timeout)
        except ConnectionGone:
            return _unknown()
        except TransportMismatch:
            return _cannot_change()
        except TransportInUse:
            return _in_use()

    async def post(self, request: Request) -> Response:
        """``POST {hub}?id=``: the client's messages for a Server-Sent Events or Long Polling connection."""
        found = await self._locate(request, request.query_param("id"))
        if isinstance(found, Response):
            return found
        if isinstance(found, str):
            return await relay(self.hub_server, found, POST, request)
        return await post(found, request.body_stream)

    async def delete(self, request: Request) -> Response:
        """``DELETE {hub}?id=``: the client stops its Long Polling connection."""
        found = await self._locate(request, request.query_param("id"))
        if isinstance(found, Response):
            return found
        if isinstance(found, str):
            return await relay(self.hub_server, found, DELETE, request)
        return delete(found)

    async def _locate(self, request: Request, token: str | None) -> TransportConnection | str | Response:
        """The connection a transport request names (opened here if its token was pending), the
        worker holding it, or ASP.NET's refusal (400, 404), or 403 for a request from another
        user than the one who negotiated, or 503 (the hub is full, the backplane is away)."""
        if not token:
            await trio.lowlevel.checkpoint()
            return Response.text(400, "Connection ID required")
        try:
            connection: TransportConnection | str | None = await self.hub_server.locate(
                token, request=request
            )
        except HubFull as exc:
            return _full(exc)
        except BackplaneError as exc:
            return _unavailable(exc)
        if connection is None:
            return _unknown()
        if isinstance(connection, str):
            return connection  # the holder checks the user
        user = _user_id(request)
        if user is not None and user != connection.user_id:
            return Response.text(403, "Forbidden: this connection was negotiated by another user")
        return connection


def _unknown() -> Response:
    return Response.text(404, "No Connection with that ID")


def _not_supported(transport: HttpTransportType) -> Response:
    return Response.text(404, f"{transport.value} transport not supported by this end point type")


def _cannot_change() -> Response:
    return Response.text(400, "Cannot change transports mid-connection")


def _in_use() -> Response:
    return Response.text(409, "Conflict: another transport is connected to this connection")


def _full(exc: HubFull) -> Response:
    """503, with the reason: the official client reports it and, reconnecting, tries again later."""
    logger.info("refused a new hub connection: %s", exc)
    return Response.text(503, f"Service Unavailable: {exc}; try again later", headers=[("retry-after", "5")])


def _unavailable(exc: BackplaneError) -> Response:
    """503 while the backplane cannot say where a connection lives (or record a new one)."""
    logger.info("a hub request refused: %s", exc)
    return Response.text(503, f"Service Unavailable: {exc}; try again later", headers=[("retry-after", "1")])


def _user_id(request: Request) -> str | None:
    return None if request.identity is None else request.identity.user_id


def _query_values(request: Request, name: str) -> list[str]:
    """Every value of query parameter ``name``, matched in any case (ASP.NET's query keys are)."""
    return [value for key, values in request.query_params.items() if key.lower() == name for value in values]
