"""``map_hub``: a hub on an ``App``, at a path, with negotiate, its WebSocket and its service.

::

    app = trio_ws.App()
    chat = map_hub(app, "/chat", Chat(), options=HubOptions(...))

    POST /chat/negotiate            negotiate: a new hub connection's id and token (any case: /Chat/...)
    GET  /chat?id=TOKEN  (upgrade)  the WebSocket that carries that connection
    GET  /chat           (upgrade)  a WebSocket that opens a connection of its own (skipNegotiation)
    service                         the hub server: started with the app's server, closed with it

What runs where::

    serve(app, ...)
    └─ services nursery
       ├─ hub service                  HubServer.run: every hub connection's nursery (see _server.py)
       └─ connections nursery
          └─ one task per TCP connection
             └─ WebSocket handler      HubConnection.attach: writes the connection's queue while it lasts

Rules of this module:

* Everything here goes through the front door's public API (routes,
  ``before_upgrade``, auth hooks, services, ``wait_closing``): a hub is an
  ordinary user of ``App``.
* Hub paths match in any case, as ASP.NET's do and clients rely on.
* The hub's auth hook sees negotiate and the WebSocket's upgrade (with the
  ``access_token`` query, all a browser's WebSocket can carry); the
  identity's ``user_id`` is the connection's user. A refusal with 401 is
  answered as ASP.NET answers it: an empty body, so the client's error
  reads "Unauthorized: Status code '401'".
* A WebSocket with an ``?id=`` is refused before its 101: 404 for a token
  no connection has, 409 when the connection already has a transport, 403
  when the upgrade's user is not the one who negotiated.
* On graceful shutdown the hub server sends every connection Close with
  ``allowReconnect`` before the server's Close 1001 goes out (the WebSocket
  handler watches for the shutdown, so the server waits for it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import trio

from .._request import Identity, Request
from .._response import Response
from .._routing import AuthHook, InheritAuth
from ._backplane import Backplane
from ._connection import ConnectionGone, TransportInUse
from ._hub import Hub
from ._negotiate import HttpTransportType, NegotiateError, negotiate_answer, negotiate_version
from ._options import HubOptions
from ._server import HubFull, HubServer
from ._websocket_transport import WebSocketTransport

if TYPE_CHECKING:
    from .._app import App
    from .._server import Server
    from .._websocket import ServerConnection

__all__ = ["NegotiateHook", "map_hub"]

logger = logging.getLogger("trio_ws.signalr")

NegotiateHook = Callable[[Request, Response], Awaitable[Response]]
"""Sees negotiate's answer before it is sent, and returns it (or another): to add headers or cookies."""

# The transports trio_ws serves today; Server-Sent Events and Long Polling come next.
_SERVED = frozenset({HttpTransportType.WEBSOCKETS})


def map_hub(
    app: App,
    path: str,
    hub: Hub,
    *,
    options: HubOptions | None = None,
    backplane: Backplane | None = None,
    auth: AuthHook | InheritAuth | None = InheritAuth.APP,
    transports: Iterable[HttpTransportType] = (HttpTransportType.WEBSOCKETS,),
    on_negotiate: NegotiateHook | None = None,
) -> HubServer:
    """Serve ``hub`` on ``app`` at ``path``, as ASP.NET's ``MapHub`` does; return its ``HubServer``.

    Adds ``POST {path}/negotiate``, the WebSocket at ``{path}``, and a
    service that runs the hub server for as long as the app is served (and
    closes it gracefully when the server shuts down). Use the returned
    ``HubServer`` to reach clients from outside a hub call
    (``hub_server.clients.all.send(...)``).

    Args:
        app: The app to add the routes and the service to.
        path: The hub's path, such as ``"/chat"``; matched in any case.
        hub: The hub instance; it belongs to this mapping's hub server.
        options: The hub's limits and timeouts (``HubOptions()`` by default).
        backplane: Where groups and users are kept (in process by default).
        auth: An auth hook for negotiate and the WebSocket; by default the
            app's (``App(auth=...)``, as set now); ``None`` for none.
            ``trio_ws.bearer_auth`` reads ``?access_token=`` too, which is
            how browsers send the token on a WebSocket.
        transports: The transports the hub offers in negotiate. Today
            trio_ws serves ``HttpTransportType.WEBSOCKETS``.
        on_negotiate: ``async def hook(request, response) -> Response``,
            called with each successful negotiate answer; what it returns
            is sent (add cookies or headers with ``dataclasses.replace``).

    Raises:
        ValueError: a transport trio_ws does not serve yet, or no transport.
        TypeError, ValueError: as ``HubServer`` raises them (a hub method
            that cannot be offered; a hub already served).
    """
    offered = frozenset(transports)
    if not offered:
        raise ValueError("a hub needs at least one transport")
    missing = sorted(transport.value for transport in offered - _SERVED)
    if missing:
        raise ValueError(
            f"trio_ws does not serve {', '.join(missing)} yet; "
            f"offer {', '.join(t.value for t in sorted(_SERVED, key=lambda t: t.value))}"
        )
    path = path.rstrip("/")
    if not path.startswith("/"):
        raise ValueError(f"hub path {path!r} must start with '/'")
    hub_server = HubServer(hub, options=options, backplane=backplane)
    hook = app.auth if auth is InheritAuth.APP else auth
    endpoint = _HubEndpoint(hub_server, offered, on_negotiate)
    guard = None if hook is None else _hub_auth(hook)
    app.add_route(f"{path}/negotiate", endpoint.negotiate, methods=["POST"], auth=guard, ignore_case=True)
    # No WebSocket pings: the hub pings and times out its clients itself, and signalrcore's
    # client never answers a WebSocket ping (the server would drop it as dead).
    app.add_websocket(
        path,
        endpoint.websocket,
        auth=guard,
        before_upgrade=endpoint.before_upgrade,
        ignore_case=True,
        keep_alive=False,
    )
    app.add_service(endpoint.service)
    return hub_server


def _hub_auth(hook: AuthHook) -> AuthHook:
    """``hook``, with a 401 answered as ASP.NET answers it: its headers, an empty body."""

    async def authenticate(request: Request) -> Identity | Response:
        outcome = await hook(request)
        if isinstance(outcome, Response) and outcome.status == 401:
            return dataclasses.replace(outcome, body=b"", content_type=None)
        return outcome

    return authenticate


class _HubEndpoint:
    """The handlers ``map_hub`` routes: negotiate, the WebSocket and its hook, the service."""

    def __init__(
        self,
        hub_server: HubServer,
        transports: frozenset[HttpTransportType],
        on_negotiate: NegotiateHook | None,
    ) -> None:
        self.hub_server = hub_server
        self.transports = transports
        self.on_negotiate = on_negotiate

    async def service(
        self, server: Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the hub server as long as the app's server; close it when graceful shutdown begins."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.hub_server.run)
            task_status.started()
            await server.wait_closing()
            await self.hub_server.aclose()

    async def negotiate(self, request: Request) -> Response:
        """``POST {hub}/negotiate``: a new connection, and how to reach it."""
        try:
            version = negotiate_version(_query_values(request, "negotiateversion"))
        except NegotiateError as exc:
            logger.info("negotiate refused: %s", exc)
            return Response.json(200, {"error": exc.text})
        if self.hub_server.closing:
            return Response.text(503, "Service Unavailable: the hub is shutting down")
        try:
            connection = self.hub_server.open_connection(
                user_id=_user_id(request), request=request, token_is_id=version == 0
            )
        except HubFull as exc:
            return _full(exc)
        answer = negotiate_answer(version, connection.connection_id, connection.token, self.transports)
        response = Response.json(200, answer, headers=[("cache-control", "no-cache")])
        if self.on_negotiate is not None:
            response = await self.on_negotiate(request, response)
        return response

    async def before_upgrade(self, request: Request) -> Response | None:
        """Refuse a WebSocket for a connection that does not exist, is taken, or is someone else's."""
        token = request.query_param("id")
        if token is None:
            # The client skipped negotiate: the handler opens a connection, if there is room.
            limit = self.hub_server.options.max_connections
            if limit is not None and self.hub_server.statistics().connections >= limit:
                return _full(HubFull(limit))
            return None
        connection = self.hub_server.find_connection(token)
        if connection is None or connection.closing:
            return Response.text(404, "No Connection with that ID")
        if connection.has_transport:
            return Response.text(409, "Conflict: another transport is connected to this connection")
        user = _user_id(request)
        if user is not None and user != connection.user_id:
            return Response.text(403, "Forbidden: this connection was negotiated by another user")
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
            try:
                await self.hub_server.serve_transport(transport, user_id=_user_id(request), request=request)
            except HubFull:  # filled up between the hook and the upgrade
                await ws.aclose(1013, "the hub is full; try again later")
            return
        connection = self.hub_server.find_connection(token)
        try:
            if connection is None:
                raise ConnectionGone(token)
            await connection.attach(transport, request=request)
        except (ConnectionGone, TransportInUse) as exc:
            # Taken or gone between the hook and the upgrade (two sockets racing for one id).
            logger.info("%s: refused after the upgrade: %s", ws, type(exc).__name__)
            await ws.aclose(
                1008, "connection gone" if isinstance(exc, ConnectionGone) else "connection in use"
            )


def _full(exc: HubFull) -> Response:
    """503, with the reason: the official client reports it and, reconnecting, tries again later."""
    logger.info("refused a new hub connection: %s", exc)
    return Response.text(503, f"Service Unavailable: {exc}; try again later", headers=[("retry-after", "5")])


def _user_id(request: Request) -> str | None:
    return None if request.identity is None else request.identity.user_id


def _query_values(request: Request, name: str) -> list[str]:
    """Every value of query parameter ``name``, matched in any case (ASP.NET's query keys are)."""
    return [value for key, values in request.query_params.items() if key.lower() == name for value in values]
