"""``HubServer``: one hub's connections, in one nursery that lives as long as the server.

::

    HubServer.run(task_status=...)          started(hub server), then runs until aclose()
    └─ hub server nursery
       ├─ backplane.serve                   in-process: idle; Redis: its subscription
       ├─ timers                            every connection's Pings and timeouts, in one task
       │                                    (_transports/timers.py)
       └─ one task per hub connection       HubConnection.run (see _hub/connection.py)
          └─ hub connection nursery         one task per call or stream

A hub connection outlives any one request or socket (a Long Polling
connection spans many requests), so its tasks cannot live in the task that
serves a request; they live here, and a transport attaches to them.

Rules of this module:

* ``run()`` is a server-lifetime service: start it with ``nursery.start``
  before anything connects; it returns after ``aclose()``.
* ``aclose()`` is the graceful stop: every connection is sent Close with
  ``allowReconnect`` (so clients come back by themselves), its calls are
  cancelled, ``on_disconnected`` runs with ``SERVER_SHUTDOWN``, and its
  Close is given ``close_timeout`` to go out. Cancelling ``run()`` is the
  hard stop; each connection still gets ``close_timeout`` (shielded) to
  leave its groups and run ``on_disconnected``.
* One ``Hub`` instance belongs to one ``HubServer``.
* A connection lives where its first transport lands: negotiate only
  reserves its id and token (``reserve``, a pending entry in the
  backplane), and the first transport request for the token, on whichever
  worker, opens it there (``locate``). A request that lands on another
  worker than the holder is relayed to it (``_relay.py``); the holder
  answers it through ``backplane.on_ask``.
* A hub server given no backplane takes the deployment's when it starts
  (``python -m trio_ws APP --backplane redis://...``; see
  ``trio_ws._server.deployment``), and refuses to start on several workers without
  one. Its backplane's health is then reported on the app's health path.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import trio

from ..._app.health import Health
from ..._server.deployment import Deployment, DeploymentError, current_deployment
from .._backplane import Backplane, InProcessBackplane
from .._backplane.base import Pending
from .._errors import BackplaneError, DisconnectReason
from .._hub.clients import GroupManager, HubClients, UserManager
from .._hub.connection import HubConnection
from .._hub.filters import (
    AnyFilter,
    HubLifetimeContext,
    NextConnected,
    NextDisconnected,
    NextInvoke,
    check_filter,
    connected_pipeline,
    disconnected_pipeline,
    method_pipelines,
)
from .._hub.hub import Hub
from .._hub.methods import HubMethod, discover_methods
from .._hub.observe import CallObserver
from .._hub.requirements import requirement_steps
from .._options import HubOptions
from .._protocol import PROTOCOLS, HubProtocol
from .._transports.connection import TransportConnection, new_id
from .._transports.relay import RelayedSockets, answer_relayed
from .._transports.timers import Timers
from .._transports.transport import Transport

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from ..._app.request import Request
    from ..._observe.metrics import HubMetrics, Metrics

__all__ = ["ConnectionServer", "HubFull", "HubServer", "HubServerStatistics"]

logger = logging.getLogger("trio_ws.signalr")


class HubFull(Exception):
    """The hub has ``max_connections`` connections open: a new one is refused (HTTP answers 503)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        return f"the hub has {self.limit} connections open, its max_connections"


@dataclass(frozen=True)
class HubServerStatistics:
    """A snapshot of a hub server."""

    connections: int
    """Hub connections open now (negotiated, handshaking, connected or closing). A negotiated
    connection counts on the worker that negotiated it until a transport opens it (on a
    backplane shared by workers: on the worker where it opened)."""


C = TypeVar("C", bound=TransportConnection)


class ConnectionServer(Generic[C]):
    """The connections of one endpoint (a hub, a connection handler): their nursery, the backplane.

    What is common to ``HubServer`` and a connection handler's server:
    reserving ids for negotiate, opening connections where their first
    transport lands, relaying across workers, closing them all gracefully.
    A subclass says what a connection is (``_new_connection``).

    Args:
        name: What the deployment calls it (its backplane's key prefix, its health check).
        options: Limits and timeouts (``HubOptions()`` by default).
        backplane: As ``HubServer``'s.
    """

    kind = "connection handler"
    """What the log and the health check call it."""

    def __init__(
        self, name: str, *, options: HubOptions | None = None, backplane: Backplane | None = None
    ) -> None:
        self.name = name
        self.options = options or HubOptions()
        self.backplane: Backplane = backplane or InProcessBackplane()
        self._backplane_given = backplane is not None
        self._connections: dict[str, C] = {}  # by token
        self._task_name = f"{self.kind} connection"  # "hub connection": its connections' tasks
        self.timers = Timers()
        """Every connection's timers, fired by one task while it runs."""
        self.relayed_sockets = RelayedSockets()
        """WebSockets relayed between this worker and others (stateful reconnect across workers)."""
        self._nursery: trio.Nursery | None = None
        self._running = False
        self._closing = False
        self._stopped = trio.Event()
        self._empty = trio.Event()
        self._empty.set()
        #: Its instruments while it runs on a server with metrics on (``trio_ws/_metrics.py``).
        self.metrics: HubMetrics | None = None
        #: Where its call spans go, on a server with tracing on (``trio_ws/_tracing.py``).
        self.tracer: Tracer | None = None
        self._instruments: Metrics | None = None

    def _new_connection(self, **arguments: Any) -> C:
        """A new connection of this server's kind (``TransportConnection``'s arguments)."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """What a subclass readies as ``run()`` starts, before any connection opens."""

    def _method_names(self) -> frozenset[str]:
        """The method names its metrics may carry as labels (none without a hub)."""
        return frozenset()

    def instrument(self, metrics: Metrics | None, tracer: Tracer | None = None) -> None:
        """Count its connections (and a hub's calls) in ``metrics``, and trace a hub's calls with
        ``tracer`` (the server's), from its next ``run()``."""
        self._instruments = metrics
        self.tracer = tracer

    @property
    def closing(self) -> bool:
        """Whether ``aclose()`` has been called."""
        return self._closing

    def statistics(self) -> HubServerStatistics:
        return HubServerStatistics(connections=self._open_count())

    def _open_count(self) -> int:
        return len(self._connections) + len(self.backplane.pending)

    def health(self) -> Health:
        """The backplane's state, for the app's health path (``App.add_health_check``)."""
        return self.backplane.health()

    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the connections until ``aclose()``.

        Use ``await nursery.start(hub_server.run)``: ``started()`` hands back
        the server once the backplane is ready and connections can be
        opened. Returns once ``aclose()`` has closed every connection.

        Error handling: nothing a client does, and no exception from hub
        code, leaves a connection's task (hub methods fail their calls,
        hook errors are logged); an internal error ends only its connection
        and is logged as a bug. What the backplane's ``serve()`` raises
        comes out of ``run()`` in an ``ExceptionGroup``.

        It may run again once it has returned (an app served twice in one
        process, say), but in one place at a time.

        Raises:
            RuntimeError: it is already running.
            trio_ws.DeploymentError: it has no backplane of its own, and the app
                runs on several workers without one.
        """
        if self._running:
            raise RuntimeError(f"this {self.kind} server is already running; it runs in one place at a time")
        self._prepare()
        self._running = True
        self._closing = False
        self._stopped = trio.Event()
        deployment = current_deployment()
        name = deployment.claim_name(self.name)
        check = f"{self.kind} {name}"
        try:
            if not self._backplane_given:
                self.backplane = self._deployment_backplane(deployment, name)
                if deployment.backplane is not None:
                    deployment.add_health_check(check, self.health)
            if self._instruments is not None:
                self.metrics = self._instruments.hub(name, self._method_names())
                self.backplane.instrument(self.metrics, self._instruments)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.backplane.serve)
                nursery.start_soon(self.timers.run)
                self.backplane.on_ask = partial(answer_relayed, self)
                self._nursery = nursery
                task_status.started(self)
                await self._stopped.wait()
                with trio.move_on_after(self.options.close_timeout):
                    await self.backplane.aclose()  # connections have ended: leave the shared tables
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._running = False
            if self.metrics is not None and self._instruments is not None:
                self.backplane.instrument(None, self._instruments)
                self._instruments.forget_hub(self.metrics)
                self.metrics = None
            deployment.remove_health_check(check)
            deployment.release_name(name)

    def _deployment_backplane(self, deployment: Deployment, name: str) -> Backplane:
        """The backplane the deployment gives this hub: ``--backplane``'s, or an in-process one."""
        if deployment.backplane is not None:
            from .._backplane.redis import RedisBackplane

            try:
                return RedisBackplane(deployment.backplane, prefix=f"trio_ws:{name}")
            except (ImportError, ValueError) as exc:
                raise DeploymentError(f"the {self.kind} {name} cannot use its backplane: {exc}") from None
        if deployment.workers > 1:
            raise DeploymentError(
                f"the {self.kind} {name} cannot run on {deployment.workers} workers without a backplane: "
                "its groups, users and client results would each reach the clients of one worker "
                "only; add --backplane redis://HOST:PORT/DB, or run one worker"
            )
        # A run before this one may have had the deployment's Redis backplane.
        return self.backplane if isinstance(self.backplane, InProcessBackplane) else InProcessBackplane()

    def open_connection(
        self,
        *,
        user_id: str | None = None,
        request: Request | None = None,
        token_is_id: bool = False,
        stateful_reconnect: bool = False,
        pending: Pending | None = None,
    ) -> C:
        """Start a connection, waiting for a transport to attach (``TransportConnection.attach``).

        Negotiate uses this; a transport that needs no negotiation uses
        ``serve_transport``. A connection that no transport attaches to
        within ``disconnect_timeout`` is gone; the handshake clock starts
        when one does. ``token_is_id`` makes the secret token the public id,
        as negotiate version 0 requires (its clients send the id as ``?id=``).
        ``stateful_reconnect`` says that negotiate granted it: it is in force
        once the client's handshake asks for version 2. ``pending`` opens
        the connection ``reserve`` minted (its id, token and grants).

        Raises:
            RuntimeError: the hub server is not running, or is closing.
            HubFull: ``max_connections`` connections are open.
        """
        nursery = self._check_open()
        if pending is None:
            connection = self._new_connection(
                user_id=user_id,
                request=request,
                token_is_id=token_is_id,
                stateful_reconnect=stateful_reconnect,
            )
        else:
            connection = self._new_connection(
                user_id=pending.user_id,
                request=request,
                stateful_reconnect=pending.stateful_reconnect,
                connection_id=pending.connection_id,
                token=pending.token,
            )
            if pending.traceparent:
                connection.negotiate_trace = (pending.traceparent, pending.tracestate)
        self._connections[connection.token] = connection
        self._empty = trio.Event()
        # One name for every connection's task (its id is in every log line it writes): a name
        # of its own would be a string more per connection, all its life.
        nursery.start_soon(connection.run, name=self._task_name)
        return connection

    def _check_open(self) -> trio.Nursery:
        """The nursery connections run in, if a new one may open.

        Raises:
            RuntimeError: the hub server is not running, or is closing.
            HubFull: ``max_connections`` connections are open.
        """
        if self._closing:
            raise RuntimeError("the hub server is closing (or has closed)")
        if self._nursery is None:
            raise RuntimeError("the hub server is not running: start it with nursery.start(hub_server.run)")
        limit = self.options.max_connections
        if limit is not None and self._open_count() >= limit:
            raise HubFull(limit)
        return self._nursery

    async def reserve(
        self,
        *,
        user_id: str | None = None,
        token_is_id: bool = False,
        stateful_reconnect: bool = False,
        trace: tuple[str, str] | None = None,
    ) -> Pending:
        """Mint a connection's id and token for negotiate, to be opened by its first transport.

        The reservation lasts ``disconnect_timeout`` (15 s when that is
        ``None``), in the backplane, so that the first transport may land on
        any worker (``locate``). ``trace`` is the negotiate's checked
        ``traceparent`` and ``tracestate`` (``trio_ws._observe.tracing.kept_trace``),
        kept for the connection's call spans.

        Raises:
            RuntimeError: the hub server is not running, or is closing.
            HubFull: ``max_connections`` connections are open in this process.
            BackplaneError: the backplane cannot record it now.
        """
        self._check_open()
        connection_id = new_id()
        token = connection_id if token_is_id else new_id()
        traceparent, tracestate = ("", "") if trace is None else trace
        pending = Pending(connection_id, token, user_id, stateful_reconnect, traceparent, tracestate)
        window = self.options.disconnect_timeout
        await self.backplane.record_pending(pending, 15.0 if window is None else window)
        return pending

    async def locate(self, token: str, *, request: Request | None = None) -> C | str | None:
        """Where ``token``'s connection lives: here (the connection, opened now if its
        token was pending), another worker (its name: relay the request there), or nowhere.

        Raises:
            HubFull: the token was pending, and this process has ``max_connections`` open.
            BackplaneError: the backplane cannot say now.
        """
        connection = self._connections.get(token)
        if connection is not None:
            await trio.lowlevel.checkpoint()
            return connection
        if self._closing:
            await trio.lowlevel.checkpoint()
            return None
        pending = await self.backplane.claim(token)
        if pending is not None:
            connection = self._connections.get(token)  # claimed meanwhile by a request of ours
            if connection is not None:
                return connection
            try:
                return self.open_connection(user_id=pending.user_id, request=request, pending=pending)
            except RuntimeError:  # closing meanwhile
                await self.backplane.release(token)
                return None
            except HubFull:
                await self.backplane.release(token)
                raise
        return await self.backplane.holder(token)

    def start_soon(self, function: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``function(*args)`` in the hub server's nursery (a relayed WebSocket's carrier).

        Raises:
            RuntimeError: the hub server is not running.
        """
        if self._nursery is None:
            raise RuntimeError("the hub server is not running")
        self._nursery.start_soon(function, *args)

    def find_connection(self, token: str) -> C | None:
        """The open connection with this secret token (a transport's ``?id=``), if any."""
        return self._connections.get(token)

    def forget(self, connection: TransportConnection) -> None:
        """Called by a connection once it has ended (or a client asked to end it)."""
        if self._connections.get(connection.token) is connection:
            del self._connections[connection.token]
        if not self._connections:
            self._empty.set()

    async def release(self, connection: TransportConnection) -> None:
        """Called by a connection as the last thing it does: its token is let go on the
        backplane too (other workers stop relaying to here)."""
        # On a hard stop the backplane is going too: the token goes with this worker's presence
        # (reaped when its heartbeat expires).
        if trio.current_effective_deadline() != -math.inf:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(self.options.close_timeout),
                # Redis away: the token goes with this worker's rebuilt presence.
                contextlib.suppress(BackplaneError),
            ):
                await self.backplane.release(connection.token)
        await trio.lowlevel.checkpoint_if_cancelled()

    async def serve_transport(
        self, transport: Transport, *, user_id: str | None = None, request: Request | None = None
    ) -> None:
        """Open a connection and carry it over ``transport`` until either ends.

        What a WebSocket handler does for a client that skipped negotiation,
        and what tests do over a memory stream. The transport is closed when
        this returns. If this task is cancelled, the connection ends too
        (``TRANSPORT_FAILED``).

        Error handling: the transport's ``trio.BrokenResourceError`` ends
        the connection quietly (``TRANSPORT_FAILED``); any other exception
        from the transport propagates, in an ``ExceptionGroup``, after the
        connection has been told.

        Raises:
            RuntimeError: the hub server is not running, or is closing.
        """
        connection = self.open_connection(user_id=user_id, request=request)
        await connection.attach(transport)

    async def aclose(self) -> None:
        """Close every connection gracefully, then stop ``run()``.

        Each client gets Close with ``allowReconnect``, so official clients
        with automatic reconnect come back once the server does. Returns
        after at most ``close_timeout`` plus one second.
        """
        if not self._closing:
            self._closing = True
            count = len(self._connections)
            if count:
                logger.info("%s %s closing: %d connection(s)", self.kind, self.name, count)
            for connection in list(self._connections.values()):
                connection.close(DisconnectReason.SERVER_SHUTDOWN)
        with trio.move_on_after(self.options.close_timeout + 1):
            await self._empty.wait()
        self._stopped.set()
        await trio.lowlevel.checkpoint()


class HubServer(ConnectionServer[HubConnection]):
    """Serves one ``Hub`` to its clients: the connections, their nursery, the backplane.

    Example::

        chat = HubServer(Chat(), options=HubOptions(detailed_errors=True))
        async with trio.open_nursery() as nursery:
            await nursery.start(chat.run)
            ...                                   # transports attach: chat.serve_transport(...)
            await chat.clients.all.send("Notice", "going down")
            await chat.aclose()

    Args:
        hub: The hub whose methods clients call; it belongs to this server.
        options: Limits and timeouts (``HubOptions()`` by default).
        backplane: Where groups and users are kept and messages routed. By
            default the deployment's (``--backplane``) once ``run()`` starts,
            else ``InProcessBackplane()``.
        filters: Hub filters, outermost first: ``HubFilter`` instances or
            ``async def f(invocation, next)`` functions (see ``HubFilter``).

    Raises:
        TypeError: the hub has a method that cannot be offered, or a filter is
            not one (the message says why).
        ValueError: the hub instance already belongs to another ``HubServer``.
    """

    def __init__(
        self,
        hub: Hub[Any],
        *,
        options: HubOptions | None = None,
        backplane: Backplane | None = None,
        filters: Sequence[AnyFilter] = (),
    ) -> None:
        if not isinstance(hub, Hub):
            raise TypeError(f"HubServer serves a Hub instance, got {hub!r}")
        if hub._server is not None:
            raise ValueError(f"this {type(hub).__name__} instance is already served by another HubServer")
        super().__init__(type(hub).__name__, options=options, backplane=backplane)
        self.hub = hub
        self.methods: dict[str, HubMethod] = discover_methods(type(hub), Hub)
        for hub_filter in filters:
            check_filter(hub_filter)
        self.filters: list[AnyFilter] = list(filters)
        """This hub's filters, outermost first (after the app's)."""
        self.app_filters: list[AnyFilter] = []
        """The app's filters (``add_hub_filter``), which run before this hub's; ``map_hub`` sets it."""
        # Built when run() starts, from the filters and the methods' requirements.
        self.pipelines: dict[str, NextInvoke] = {}
        self.connected: NextConnected | None = None
        self.disconnected: NextDisconnected | None = None
        self.protocols: tuple[HubProtocol, ...] = tuple(PROTOCOLS[name] for name in self.options.protocols)
        self.clients = HubClients(self)
        """Every client of the hub, or some, from outside a hub call (no ``caller`` here)."""
        self.groups = GroupManager(self)
        self.users = UserManager(self)
        hub._server = self

    kind = "hub"

    def _new_connection(self, **arguments: Any) -> HubConnection:
        return HubConnection(self, **arguments)

    def _method_names(self) -> frozenset[str]:
        return frozenset(method.name for method in self.methods.values())

    def _prepare(self) -> None:
        """Each method's pipeline and the connect and disconnect ones, from the filters as they are now."""
        observer = [CallObserver(self)] if self._instruments is not None or self.tracer is not None else []
        filters = [*observer, *self.app_filters, *self.filters]
        hub = self.hub
        self.pipelines = method_pipelines(self.methods, filters, partial(requirement_steps, type(hub)))

        async def on_connected(context: HubLifetimeContext) -> None:
            await hub.on_connected()

        async def on_disconnected(context: HubLifetimeContext, reason: DisconnectReason) -> None:
            await hub.on_disconnected(reason)

        self.connected = connected_pipeline(filters, on_connected)
        self.disconnected = disconnected_pipeline(filters, on_disconnected)
