"""Connection handlers: raw bytes over SignalR's negotiate and transports, without the hub protocol.

ASP.NET's ``MapConnectionHandler``: for an app that brings its own protocol
but wants SignalR's fallback (WebSockets, Server-Sent Events, Long
Polling), its negotiate, auth, CORS and limits, and its workers::

    async def echo(connection: Connection) -> None:
        async for data in connection:
            await connection.send(data)

    map_connection(app, "/echo", echo)

What runs where::

    ConnectionHandlerServer.run              the endpoint's service (as a hub server's)
    └─ connection handler server nursery
       ├─ timers                             the time without a transport (Long Polling's polls),
       │                                     for every connection (_transports/timers.py)
       └─ one task per connection            HandlerConnection.run: calls handler(connection), your
                                             code, and ends the connection when it returns

    a transport's own task                   a WebSocket handler, a poll, an event stream: carries
                                             the bytes (TransportConnection.attach, _http_transports)

Rules of this module:

* The handler runs in the connection's task and the connection ends
  when it returns (or raises: logged with its traceback, it is the app's
  bug): what it sent goes out first, then the transport ends (WebSocket
  Close 1000, the event stream ends, the next poll is answered 204).
* Bytes both ways, in the chunks transports carry: a WebSocket message, a
  POST body's pieces. Like ASP.NET's pipes, nothing frames messages: sends
  queued together may go out joined in one WebSocket message or poll.
* What a client sends comes as ``bytes`` whatever its frame type. What the
  handler sends goes in Text frames (UTF-8 only) unless it sets
  ``connection.binary`` (Binary frames); Server-Sent Events carry text only.
* When the client goes (its transport closed or broke, no poll within
  ``disconnect_timeout``), ``receive()`` returns ``None`` and the handler has
  ``close_timeout`` to return before it is cancelled; what it sends then is
  dropped. On graceful shutdown, and for a client too slow to read, the
  handler is cancelled at once.
* The hub's limits apply as they do to hubs: ``max_connections``,
  ``send_buffer_size`` and ``slow_client_timeout`` (a send waits for room,
  then the connection ends as too slow), ``disconnect_timeout``,
  ``long_polling_timeout``, ``close_timeout``. The hub protocol's own
  (handshake, Pings, client timeout, calls) do not.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from ..._app.routing import AuthHook, InheritAuth
from ..._contain import contain
from ..._printable import printable
from .._backplane import Backplane
from .._errors import DisconnectReason
from .._options import HubOptions
from .._transports.connection import TransportConnection
from .._transports.http import SERVER_SENT_EVENTS, LongPollingTransport
from .._transports.negotiate import HttpTransportType
from .hub import NegotiateHook, check_endpoint, map_endpoint
from .server import ConnectionServer

if TYPE_CHECKING:
    from ..._app.app import App
    from ..._app.request import Identity, Request

__all__ = [
    "Connection",
    "ConnectionHandler",
    "ConnectionHandlerServer",
    "HandlerConnection",
    "map_connection",
]

logger = logging.getLogger("trio_ws.signalr")

_ALL = (
    HttpTransportType.WEBSOCKETS,
    HttpTransportType.SERVER_SENT_EVENTS,
    HttpTransportType.LONG_POLLING,
)

ConnectionHandler = Callable[["Connection"], Awaitable[None]]
"""``async def handler(connection: Connection) -> None``: serves one connection until it returns."""

# Why the connection ends when the client has gone: the handler may still finish (a grace).
_CLIENT_WENT = frozenset(
    {DisconnectReason.CLIENT_CLOSED, DisconnectReason.TRANSPORT_FAILED, DisconnectReason.TIMED_OUT}
)


def map_connection(
    app: App,
    path: str,
    handler: ConnectionHandler,
    *,
    options: HubOptions | None = None,
    backplane: Backplane | None = None,
    auth: AuthHook | InheritAuth | None = InheritAuth.APP,
    transports: Iterable[HttpTransportType] = _ALL,
    on_negotiate: NegotiateHook | None = None,
) -> ConnectionHandlerServer:
    """Serve ``handler`` on ``app`` at ``path``, as ASP.NET's ``MapConnectionHandler`` does.

    The routes are a hub's (``map_hub``): ``POST {path}/negotiate`` (versions
    0 and 1), the WebSocket at ``{path}`` (with or without ``?id=``: a client
    may skip negotiate), ``GET``, ``POST`` and ``DELETE`` for Server-Sent
    Events and Long Polling, all matched in any case, all behind the same
    auth hook, with the same refusals; and a service that runs the handler's
    connections for as long as the app is served. Each connection runs
    ``await handler(connection)`` in its own task (see ``Connection``).
    WebSockets get the app's pings (``Options.keep_alive_interval``): there
    is no hub protocol to ping with.

    Args:
        app: The app to add the routes and the service to.
        path: Such as ``"/echo"``; matched in any case.
        handler: ``async def handler(connection: Connection) -> None``.
        options: Limits and timeouts (``HubOptions()`` by default); the hub
            protocol's own (handshake, keep-alive, client timeout, calls,
            protocols, stateful reconnect) do not apply.
        backplane: Where connection tokens live when several workers serve
            the app; by default the deployment's (``--backplane``), so a
            Long Polling request that lands on another worker is relayed.
        auth: An auth hook for negotiate and every transport request; by
            default the app's; ``None`` for none. A request from another user
            than the one who negotiated is refused with 403.
        transports: The transports allowed (all three by default).
        on_negotiate: ``async def hook(request, response) -> Response``,
            called with each successful negotiate answer.

    Raises:
        ValueError: no transport, or a path that does not start with ``/``.
        TypeError: ``handler`` is not callable.
    """
    offered = check_endpoint(path, transports)
    server = ConnectionHandlerServer(handler, options=options, backplane=backplane)
    map_endpoint(
        app,
        path,
        server,
        auth=auth,
        transports=offered,
        stateful_reconnect=False,
        on_negotiate=on_negotiate,
        websocket_pings=True,
    )
    return server


class Connection:
    """One client's connection, as a connection handler sees it: bytes in, bytes out.

    Attributes:
        connection_id: The public id (what negotiate answered as ``connectionId``).
    """

    __slots__ = ("_connection", "_reading", "connection_id")

    def __init__(self, connection: HandlerConnection) -> None:
        self._connection = connection
        self._reading = False
        self.connection_id = connection.connection_id

    def __repr__(self) -> str:
        return f"<Connection {self.connection_id} over {self.transport}>"

    @property
    def transport(self) -> str:
        """The transport in use: ``"WebSockets"``, ``"ServerSentEvents"`` or ``"LongPolling"``."""
        return self._connection.transport_name or ""

    @property
    def request(self) -> Request | None:
        """The HTTP request that opened the transport in use (the latest poll's, for Long Polling)."""
        return self._connection.request

    @property
    def identity(self) -> Identity | None:
        """Who the auth hook said the client is (``None`` without an auth hook)."""
        request = self._connection.request
        return None if request is None else request.identity

    @property
    def user_id(self) -> str | None:
        """The identity's ``user_id``: the user who negotiated this connection."""
        return self._connection.user_id

    @property
    def closed(self) -> bool:
        """Whether the connection is ending: the client went, or the server is closing."""
        return self._connection.closing

    @property
    def binary(self) -> bool:
        """Send WebSocket messages as Binary frames (any bytes) rather than Text (UTF-8 only).

        Raises (when set):
            ValueError: the transport is Server-Sent Events, which carries text only.
        """
        return self._connection.sender.binary

    @binary.setter
    def binary(self, value: bool) -> None:
        if value and self.transport == SERVER_SENT_EVENTS:
            raise ValueError("Server-Sent Events carry text only: send UTF-8 (str), not binary")
        self._connection.sender.binary = value

    async def receive(self) -> bytes | None:
        """The client's next bytes, or ``None`` once it has gone (or the connection is ending).

        Raises:
            trio.BusyResourceError: another task is receiving on this connection.
        """
        if self._reading:
            raise trio.BusyResourceError("another task is already receiving on this connection")
        self._reading = True
        try:
            return await self._connection.receive()
        finally:
            self._reading = False

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> bytes:
        data = await self.receive()
        if data is None:
            raise StopAsyncIteration
        return data

    async def send(self, data: bytes | str) -> None:
        """Send ``data`` to the client (``str`` as UTF-8), waiting for room in its send buffer.

        After the client has gone, what is sent is dropped (check ``closed``).
        A client that makes no room within ``slow_client_timeout`` is too
        slow: its connection ends, and this handler is cancelled.

        Raises:
            ValueError: bytes that are not UTF-8 for a transport that carries
                text here (Server-Sent Events; a WebSocket without ``binary``).
            TypeError: ``data`` is neither ``bytes`` nor ``str``.
        """
        if isinstance(data, str):
            payload = data.encode("utf-8")
        elif isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            if not self.binary and self.transport != "LongPolling":
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError(
                        f"{self.transport} carries text here and these bytes are not UTF-8: "
                        "send str, or set connection.binary = True (WebSockets and Long Polling only)"
                    ) from None
        else:
            raise TypeError(f"send bytes or str, not {type(data).__name__}")
        if not payload or self._connection.closing:  # nothing, or nobody left to send it to
            await trio.lowlevel.checkpoint()
            return
        await self._connection.send_bytes(payload)

    def close(self) -> None:
        """End the connection from the server's side, as if the handler had returned."""
        self._connection.close(DisconnectReason.ABORTED, "closed by the connection handler")


class HandlerConnection(TransportConnection):
    """A connection whose bytes go to a connection handler, as they are."""

    __slots__ = ("_end_heard", "_read_scope", "handler")

    def __init__(self, server: ConnectionHandlerServer, **arguments: Any) -> None:
        super().__init__(server, **arguments)
        self.server: ConnectionHandlerServer = server
        self.handler = server.handler
        self._end_heard = trio.Event()  # Long Polling: a poll came after the last bytes (its answer: 204)
        self._read_scope: trio.CancelScope | None = None  # the handler's receive(), while it waits

    def __str__(self) -> str:
        return f"connection {self.connection_id}"

    async def run(self) -> None:
        """The connection's whole life; runs in the server's nursery."""
        try:
            with self._scope:
                if await self._wait_for_transport():
                    await self._call_handler()
        finally:
            self._stop_timers()
            if self._reason is None and self.transport_name is not None:
                self._reason = DisconnectReason.SERVER_SHUTDOWN  # cancelled from outside
            await self._finish()

    async def _call_handler(self) -> None:
        logger.info(
            "%s: connected to %s over %s%s",
            self,
            self.server.name,
            self.transport_name,
            f", as user '{printable(self.user_id)}'" if self.user_id is not None else "",
        )
        try:
            await self.handler(Connection(self))
        except BaseException as exc:
            # Whatever the app raises ends this connection alone, short of a stop (_contain.py).
            failure = contain(exc, logger, "%s: the connection handler raised", self)
            self.close(DisconnectReason.ABORTED, f"the connection handler raised {failure!r}")
        else:
            self.close(DisconnectReason.ABORTED, "the connection handler returned")

    async def receive(self) -> bytes | None:
        """The client's next bytes for the handler; ``None`` once the connection is ending."""
        if self.closing:
            await trio.lowlevel.checkpoint()
            return None
        with trio.CancelScope() as self._read_scope:
            try:
                return await self._receive()
            finally:
                self._read_scope = None
        return None  # the connection began to end while it waited

    def _stop_tasks(self, reason: DisconnectReason) -> None:
        if reason in _CLIENT_WENT:
            # The client has gone: receive() says so, and the handler may finish in its time.
            grace = trio.current_time() + self._options.close_timeout
            self._scope.deadline = min(self._scope.deadline, grace)
            if self._read_scope is not None:
                self._read_scope.cancel()
        else:
            self._scope.cancel()

    def set_away(
        self, away: bool, reason: DisconnectReason = DisconnectReason.TIMED_OUT, detail: str = ""
    ) -> None:
        if not away and self.sender.outbox.exhausted:
            self._end_heard.set()  # this poll finds the end: it is answered 204
        super().set_away(away, reason, detail)

    async def _finish(self) -> None:
        """What the handler sent goes out (at most ``close_timeout``); then the transport ends."""
        outbox = self.sender.outbox
        with trio.CancelScope(shield=True), trio.move_on_after(self._options.close_timeout):
            if self._reason is DisconnectReason.TOO_SLOW:
                outbox.discard()
            else:
                outbox.close()
            await self._wait_flushed()
            attachment = self._attachment
            if (
                attachment is not None
                and not attachment.abandoned
                and isinstance(attachment.transport, LongPollingTransport)
                and not self.server.closing
            ):
                # As ASP.NET: the connection stays until a poll hears its end (204), so the
                # client closes cleanly instead of finding it gone (404).
                await self._end_heard.wait()
        await self._end_transport()
        if self.transport_name is not None:
            detail = f" ({printable(self._detail)})" if self._detail else ""
            reason = self._reason.value if self._reason else "ended"
            logger.info("%s: closed: %s%s", self, reason, detail)


class ConnectionHandlerServer(ConnectionServer[HandlerConnection]):
    """The connections of one connection handler: their nursery, the backplane (``map_connection``).

    Args:
        handler: ``async def handler(connection)``, run once per connection.
        name: What the deployment calls it (its backplane's keys, its health
            check); the handler's name by default.
        options: The limits and timeouts that apply (see the module's rules).
        backplane: Where tokens live when several workers serve the app
            (by default the deployment's, as for hubs).
    """

    kind = "connection handler"

    def __init__(
        self,
        handler: ConnectionHandler,
        *,
        name: str | None = None,
        options: HubOptions | None = None,
        backplane: Backplane | None = None,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"a connection handler is an async function of one connection, not {handler!r}")
        name = name or str(getattr(handler, "__name__", type(handler).__name__))
        super().__init__(name, options=options, backplane=backplane)
        self.handler = handler

    def _new_connection(self, **arguments: Any) -> HandlerConnection:
        return HandlerConnection(self, **arguments)
