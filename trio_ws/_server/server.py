"""``serve()`` and ``Server``: the nursery tree that owns every connection.

::

    serve(app, host, port, task_status=...)     started(Server), then runs until closed
    └─ services nursery                         the app's services; cancelled after the last connection
       ├─ one task per service                  started (and ready) before anyone is accepted
       └─ connections nursery                   closes last: waits for every connection
          ├─ accepting nursery                  cancelled first by Server.aclose()
          │  └─ admission.accept_loop           one per listener
          └─ one task per accepted connection   _http.connection.serve_stream: request after request
             ├─ request nursery                 per HTTP request to a route: a departure watcher
             └─ connection nursery              for a WebSocket: _websocket.lifetime.run_websocket
                ├─ reader task
                ├─ keep-alive task
                └─ handler

Rules of this module:

* ``serve()`` returns only when every connection task has finished, so no
  connection outlives the server, and services outlive every connection.
* Graceful shutdown is ``Server.aclose()``: stop accepting, tell everyone
  who waits on ``wait_closing()``, close keep-alive connections that are
  between requests, end streamed responses cleanly and send close 1001 to
  every open WebSocket, then wait up to ``shutdown_timeout`` for the
  handlers and in-flight requests to finish. A handler that watches for the
  shutdown (``Request.wait_closing``) says its own goodbye first: its 1001 or
  the end of its stream waits until it returns, or until half of
  ``shutdown_timeout`` has passed. Whatever is left then is cancelled, and
  has one more second to unwind before ``aclose()`` returns regardless.
  Cancelling ``serve()`` instead is the hard stop: every connection is
  cancelled at once and TCP is closed. (Cancellation alone cannot say
  goodbye: a cancelled task can't send.)
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from ipaddress import ip_address
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

from .._app.app import App
from .._app.request import Request
from .._http.connection import serve_stream
from .._observe.metrics import Metrics, make_metrics, metrics_path_taken
from .._observe.tracing import tracer
from .._options import Options
from .._websocket.connection import ServerConnection
from .admission import Admission, accept_loop, make_room_for

__all__ = ["Server", "ServerStatistics", "serve", "serve_listeners", "url_host"]

logger = logging.getLogger("trio_ws.server")

# How long Server.aclose() waits for cancelled connections to unwind after the
# grace period. Cancelled tasks normally end within microseconds; one still
# running after this has shielded itself from cancellation.
_CANCEL_MARGIN = 1.0


@dataclass(frozen=True)
class ServerStatistics:
    """A snapshot of the server, from :meth:`Server.statistics`.

    Attributes:
        open_websockets: WebSockets open now.
        closing: Whether graceful shutdown has begun.
        waiting_connections: Connections waiting for a request head (new,
            or kept alive between requests).
        streaming_responses: Responses whose body is being streamed now.
    """

    open_websockets: int
    closing: bool
    waiting_connections: int = 0
    streaming_responses: int = 0


@dataclass(eq=False)
class _Stream:
    """A streamed response in progress, which shutdown ends through ``stop``."""

    request: Request
    stop: trio.CancelScope
    ended: trio.Event


class Server:
    """A running server, handed back by ``await nursery.start(serve, ...)``.

    Use it to learn where the server listens (:attr:`port`, :attr:`url`) and
    to shut it down gracefully (:meth:`aclose`).
    """

    def __init__(
        self,
        app: App,
        listeners: list[trio.abc.Listener[trio.abc.Stream]],
        options: Options,
        host_name: str | None = None,
    ) -> None:
        self.app = app
        # The name the server was asked to bind, such as "localhost", for its URLs.
        self._host_name = host_name
        self.options = options
        self.listeners = listeners
        self._websockets: set[ServerConnection] = set()
        # Shutdown waits on these for handlers that say their own goodbye (made only for those:
        # an event per open WebSocket would cost every connection its memory).
        self._goodbyes: dict[ServerConnection, trio.Event] = {}
        self._streams: set[_Stream] = set()
        #: Caps on waiting connections and on WebSockets (``admission.py``).
        self.admission = Admission(options)
        #: The instruments ``GET /metrics`` reports (``_metrics.py``); ``None`` with metrics off.
        self.metrics: Metrics | None = _metrics_for(app) if options.metrics else None
        #: Where request and hub call spans go (``_tracing.py``); ``None`` with tracing off.
        self.tracer: Tracer | None = tracer()
        #: Whether every listener is bound to a loopback address: browser requests
        #: must then name a loopback host too (``_upgrade.host_allowed``).
        self.loopback_only = bool(listeners) and all(_is_loopback(listener) for listener in listeners)
        self._closing = False
        self._closing_event = trio.Event()
        self._accepting: trio.CancelScope | None = None
        self._connections: trio.CancelScope | None = None
        self._connection_tasks: trio.Nursery | None = None  # for counting them at shutdown
        self._stopped = trio.Event()  # serve() is about to return
        self._closed = trio.Event()  # aclose() is about to return

    # -- where it listens --------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port of the first listener (the real one when port 0 was asked for)."""
        return self._address()[1]

    @property
    def host(self) -> str:
        """The address the first listener is bound to."""
        return self._address()[0]

    def _address(self) -> tuple[str, int]:
        socket = _socket_of(self.listeners[0])
        if socket is None:
            raise RuntimeError("this server has no TCP listener, so it has no host or port")
        host, port, *_ = socket.getsockname()
        return str(host), int(port)

    @property
    def secure(self) -> bool:
        """Whether the server speaks TLS (https and wss)."""
        return isinstance(self.listeners[0], trio.SSLListener)

    @property
    def url(self) -> str:
        """The server's base URL, such as ``http://127.0.0.1:5000/``."""
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self._url_host()}:{self.port}/"

    def ws_url(self, path: str = "/ws") -> str:
        """The WebSocket URL of ``path``, such as ``ws://127.0.0.1:5000/ws``."""
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://{self._url_host()}:{self.port}{path}"

    def _url_host(self) -> str:
        return url_host(self._host_name, self.host)

    def _where(self) -> str:
        return self.url if _socket_of(self.listeners[0]) is not None else repr(self.listeners)

    # -- state -------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once :meth:`aclose` has started: new requests get 503."""
        return self._closing

    async def wait_closing(self) -> None:
        """Wait until graceful shutdown begins (:meth:`aclose`).

        For services, which end their work cleanly when told; handlers use
        ``request.wait_closing()``, which also tells the server that they
        say their own goodbye.
        """
        await self._closing_event.wait()

    def statistics(self) -> ServerStatistics:
        """How many WebSockets, waiting connections and streamed responses there are, and whether
        the server is shutting down."""
        return ServerStatistics(
            open_websockets=len(self._websockets),
            closing=self._closing,
            waiting_connections=self.admission.waiting_count,
            streaming_responses=len(self._streams),
        )

    def websocket_opened(self, ws: ServerConnection) -> None:
        """Count ``ws`` as open, so shutdown can say goodbye to it; ``websocket_closed(ws)`` when it ends.
        Each WebSocket's task calls both (``run_websocket``); an app never needs to.

        Two calls and a ``try``/``finally`` at the caller, not a context manager: a generator
        frame kept for a WebSocket's whole life costs more than the rest of its bookkeeping.
        """
        self._websockets.add(ws)
        metrics = self.metrics
        if metrics is not None:
            metrics.websocket_opened()
            ws.tally = metrics.tally

    def websocket_closed(self, ws: ServerConnection) -> None:
        """``ws``, counted open by ``websocket_opened``, has ended."""
        if self.metrics is not None:
            self.metrics.websocket_closed(ws.close_code)
        self._websockets.discard(ws)
        done = self._goodbyes.pop(ws, None)
        if done is not None:
            done.set()

    @contextmanager
    def streaming(self, request: Request) -> Iterator[trio.CancelScope]:
        """Count a streamed response as open while the block runs; shutdown cancels the scope
        yielded to end it (``_wire.Wire.write_response`` then ends the body cleanly)."""
        stream = _Stream(request, trio.CancelScope(), trio.Event())
        self._streams.add(stream)
        try:
            if self._closing and not request.watches_closing:
                stream.stop.cancel()  # the response began during shutdown: no stream starts now
            yield stream.stop
        finally:
            self._streams.discard(stream)
            stream.ended.set()

    # -- running and stopping ----------------------------------------------------

    async def _run(self, task_status: trio.TaskStatus[Server]) -> None:
        make_room_for(self.options.max_connections, self.options.max_idle_connections)
        try:
            async with trio.open_nursery() as services:
                if self.metrics is not None:
                    services.start_soon(self.metrics.run)
                for service in self.app.services:
                    await services.start(service, self)
                async with trio.open_nursery() as connections:
                    self._connections = connections.cancel_scope
                    self._connection_tasks = connections
                    async with trio.open_nursery() as accepting:
                        self._accepting = accepting.cancel_scope
                        handler = partial(serve_stream, server=self)
                        for listener in self.listeners:
                            accepting.start_soon(accept_loop, listener, handler, connections, self.admission)
                        logger.info("listening on %s", self._where())
                        task_status.started(self)
                    # Accepting has stopped; the connections nursery now waits for the open ones.
                # Every connection has ended: the services are no longer needed.
                services.cancel_scope.cancel()
        finally:
            self._stopped.set()

    async def aclose(self) -> None:
        """Shut down gracefully; return once every connection has ended, or at the latest
        ``shutdown_timeout`` plus one second later.

        Stops accepting at once, wakes everyone waiting in
        :meth:`wait_closing` (and ``Request.wait_closing``), closes keep-alive
        connections that are between requests, answers new requests with
        503, ends streamed responses cleanly, and sends close 1001 (Going
        Away) to every open WebSocket; then waits up to
        ``options.shutdown_timeout`` seconds for handlers and in-flight
        requests to finish. A handler that watches for the shutdown gets up
        to half of that to say its own goodbye and return before its 1001 or
        the end of its stream. Whatever is still running then is
        cancelled, and gets a margin of one second to unwind.
        A handler that ignores cancellation (a shielded cancel scope) is
        logged as an error and left behind: ``aclose()`` returns anyway, and
        ``serve()`` returns when that handler does. Calling ``aclose()`` again
        waits for the first call to finish.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._closing_event.set()
        assert self._accepting is not None and self._connections is not None
        try:
            self._accepting.cancel()
            self.admission.close_kept_alive()
            logger.info("shutting down: closing %d WebSocket(s) with 1001", len(self._websockets))
            goodbye_time = self.options.shutdown_timeout / 2
            with trio.move_on_after(self.options.shutdown_timeout) as grace:
                async with trio.open_nursery() as goodbyes:
                    for ws in list(self._websockets):
                        if ws.request.watches_closing:
                            self._goodbyes[ws] = trio.Event()
                        goodbyes.start_soon(_say_goodbye, ws, self._goodbyes.get(ws), goodbye_time)
                    for stream in list(self._streams):
                        goodbyes.start_soon(_end_stream, stream, goodbye_time)
                await self._stopped.wait()
            if grace.cancelled_caught:
                assert self._connection_tasks is not None
                logger.warning(
                    "shutdown grace period of %s s is over; "
                    "cancelling %d connection(s), %d of them WebSockets",
                    self.options.shutdown_timeout,
                    # Every connection task still running: plain HTTP and handshakes too.
                    len(self._connection_tasks.child_tasks),
                    len(self._websockets),
                )
            self._connections.cancel()
            with trio.move_on_after(_CANCEL_MARGIN):
                await self._stopped.wait()
            if not self._stopped.is_set():
                logger.error(
                    "shutdown: connection(s) %s still running %s s after being cancelled; their "
                    "handlers ignore cancellation (a shielded cancel scope?); serve() returns when they end",
                    ", ".join(sorted(str(ws) for ws in self._websockets)) or "(plain HTTP)",
                    _CANCEL_MARGIN,
                )
        finally:
            self._closed.set()


async def _say_goodbye(ws: ServerConnection, done: trio.Event | None, goodbye_time: float) -> None:
    """Close ``ws`` with 1001 and wait for the peer's answer; first, if its handler watches for
    the shutdown (``done`` is then set when it has returned), let it say its own goodbye (for up
    to ``goodbye_time`` seconds)."""
    if done is not None:
        with trio.move_on_after(goodbye_time):
            await done.wait()
    try:
        await ws.aclose(1001, "server shutting down")
    except Exception:
        # One connection's trouble must not stop the shutdown of the others.
        logger.exception("%s: error while closing it for shutdown; please report a bug", ws)


async def _end_stream(stream: _Stream, goodbye_time: float) -> None:
    """End a streamed response cleanly; first, if its handler watches for the shutdown, let it end
    the stream itself (for up to ``goodbye_time`` seconds)."""
    if stream.request.watches_closing:
        with trio.move_on_after(goodbye_time):
            await stream.ended.wait()
    stream.stop.cancel()


async def serve(
    app: App,
    host: str | None = "127.0.0.1",
    port: int = 5000,
    *,
    options: Options | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` over HTTP and WebSocket on one TCP port, until closed.

    Use it with a nursery, so the server is ready before you go on::

        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_ws.serve, app, "127.0.0.1", 0)
            print(server.url)
            ...
            await server.aclose()   # graceful; serve() then returns

    ``started()`` hands back the :class:`Server` once the app's services
    have started and the listeners accept connections. The call itself runs
    until :meth:`Server.aclose` has finished, or until it is cancelled (the
    hard stop).

    Args:
        app: The routes to serve.
        host: The address to bind; ``None`` or ``""`` means every interface.
        port: The TCP port; 0 picks a free one (see :attr:`Server.port`).
        options: Limits and timeouts; the defaults suit most servers.
        ssl_context: Serve https and wss with this context.

    Raises:
        OSError: the port could not be bound (for example, it is in use).
        ExceptionGroup: a service raised; the server stops (the hard stop).
    """
    listeners: list[trio.abc.Listener[trio.abc.Stream]]
    tcp_listeners = await trio.open_tcp_listeners(port, host=host or None)
    if port == 0:
        # With port 0 every address would get its own random port; keep one.
        for extra in tcp_listeners[1:]:
            await extra.aclose()
        tcp_listeners = tcp_listeners[:1]
    if ssl_context is None:
        listeners = list(tcp_listeners)
    else:
        listeners = [
            trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in tcp_listeners
        ]
    server = Server(app, listeners, options or Options(), host_name=_name_or_none(host))
    await server._run(task_status)


async def serve_listeners(
    app: App,
    listeners: list[trio.abc.Listener[trio.abc.Stream]],
    *,
    options: Options | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Like :func:`serve`, on listeners you opened yourself (a unix socket, a test's memory listener)."""
    server = Server(app, listeners, options or Options())
    await server._run(task_status)


def _metrics_for(app: App) -> Metrics:
    """The server's instruments; ``/metrics`` must be free for them."""
    taken = metrics_path_taken(app)
    if taken is not None:
        raise ValueError(taken)
    return make_metrics()


def _socket_of(listener: trio.abc.Listener[trio.abc.Stream]) -> trio.socket.SocketType | None:
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    if isinstance(listener, trio.SocketListener):
        return listener.socket
    return None


def _is_loopback(listener: trio.abc.Listener[trio.abc.Stream]) -> bool:
    socket = _socket_of(listener)
    if socket is None or socket.family not in (trio.socket.AF_INET, trio.socket.AF_INET6):
        return False
    with suppress(ValueError):
        return ip_address(socket.getsockname()[0]).is_loopback
    return False


def url_host(name: str | None, address: str) -> str:
    """The host as it goes in a URL: the name asked for, else the address bound, IPv6 in brackets,
    a wildcard as localhost."""
    host = _name_or_none(name) or address
    if host in ("0.0.0.0", "::"):
        return "localhost"
    with suppress(ValueError):
        if ip_address(host).version == 6:
            return f"[{host}]"
    return host


def _name_or_none(host: str | None) -> str | None:
    """``host`` if it is a name such as "localhost" (not an address), else ``None``."""
    if not host:
        return None
    try:
        ip_address(host)
    except ValueError:
        return host
    return None
