"""A hub client for trio programs: connect, call, stream both ways, answer, reconnect.

::

    async with open_hub_client("http://127.0.0.1:5000/chat", reconnect=True) as hub:
        hub.on("Message", show)          # the server calls it; what it returns is a client result
        print(await hub.invoke("Echo", "hi"))
        async with hub.stream("Counter", 3) as items:
            async for item in items:
                ...

The nursery tree, inside ``open_hub_client``::

    client nursery
    └─ HubClient._run                     connect, serve, reconnect: one connection at a time
       └─ connection nursery              one per connection (an automatic reconnect opens a new one)
          ├─ the transport's task         WebSockets: its own nursery with trio-websocket's reader
          │                               (a new one after each stateful reconnect); Long Polling:
          │                               the poll loop; Server-Sent Events: none (read in _read)
          ├─ keep-alive task              a Ping after keep_alive_interval with nothing sent
          │                               (not on Long Polling, which keeps itself alive)
          ├─ ack task                     stateful reconnect only: an Ack a second after new messages
          ├─ handler task                 the handlers given to on(), one call at a time, in order
          └─ one task per upload          an async iterable argument, sent as a stream

Rules of this module:

* It speaks SignalR as the official clients do, to any server (ASP.NET Core
  too): negotiate (version 1, redirects, access tokens), then the first
  transport the hub offers that the client may use (``transport=``;
  WebSockets, Server-Sent Events, Long Polling, in the hub's order, with a
  new negotiate before each next try, MessagePack never over Server-Sent
  Events), the JSON or MessagePack handshake, Pings, and a server timeout
  (none on Long Polling). ``skip_negotiation=True`` opens the WebSocket
  directly.
* A call made while the client is not connected fails at once
  (``HubClientError``), as the official client's does; calls in flight when
  the connection is lost fail with the loss.
* Stateful reconnect is opt-in (``stateful_reconnect=True``) and needs the
  hub's consent and a WebSocket: every call, stream item, completion and
  cancellation is numbered and kept (``Replay``, at most
  ``stateful_reconnect_buffer_size`` bytes: past it, sending waits) until
  the hub acknowledges it. When the WebSocket drops without a Close, the
  client opens one new WebSocket to the same connection token at once,
  sends Sequence and every unacknowledged message, and drops the hub's
  duplicates: nothing is lost or repeated, calls in flight carry on, and the
  connection id stays. If the hub no longer has the connection (it was away
  longer than the hub's disconnect timeout: 404), the connection ends as a
  lost one.
* Automatic reconnect is opt-in (``reconnect=True``: after 0, 2, 10 and 30
  s, then give up, as the official client's ``withAutomaticReconnect``). A
  new connection is a new negotiate and a new connection id. A server's
  Close without ``allowReconnect`` ends the client for good.
* Handlers run in one task of the connection's nursery, one call at a time
  and in the order the hub made them (as the official clients call them),
  while the reading goes on; up to 16 calls wait their turn, then the
  reading waits too (so a handler that waits for the hub's answer to its own
  ``invoke`` should not be kept waiting behind more than that). A
  handler's exception is answered to the server as a client-result error
  (when one is awaited) and logged, never raised here.
* Exceptions raised inside ``async with open_hub_client(...)`` come out as
  themselves, not in an ``ExceptionGroup``.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
import ssl
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio
import trio_websocket

from ..._errors import TrioWsError
from ..._printable import printable
from .._protocol import PROTOCOLS, ProtocolError
from .._protocol.messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    Ping,
    StreamInvocation,
    StreamItem,
    is_trackable,
)
from .._transports.negotiate import HttpTransportType
from .._transports.replay import DEFAULT_BUFFER_SIZE, Replay
from .connect import ClientConnection, ClientSettings, allowed_transports, open_connection, resume
from .negotiate import HubClientError
from .transports import (
    ClientTransport,
    TransportEnded,
)

if TYPE_CHECKING:
    from .._hub.hub import Hub
    from .._hub.typed import C

__all__ = ["ClientState", "HubClient", "HubClientError", "InvocationError", "open_hub_client"]

logger = logging.getLogger("trio_ws.signalr.client")

DEFAULT_RECONNECT_DELAYS = (0.0, 2.0, 10.0, 30.0)
_STREAM_BUFFER = 16
_CLOSE_TIMEOUT = 5.0
_ACK_INTERVAL = 1.0  # an Ack a second after new messages, as the official client
_NO_RESULT = "Client didn't provide a result."
_CONNECTION_ERRORS = (
    HubClientError,
    OSError,
    trio.BrokenResourceError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    ProtocolError,
)

Handler = Callable[..., Any]
"""A client method: sync or async, called with the server's arguments; what it returns is the
result of a client-result call."""

_H = TypeVar("_H", bound=Handler)
_HubType = TypeVar("_HubType", bound="Hub[Any]")


class InvocationError(TrioWsError):
    """The server answered a call with an error; the text is the server's.

    Raised by :meth:`HubClient.invoke` (and while iterating
    :meth:`HubClient.stream`) when the hub's completion carries an error: the
    method raised, does not exist, or was given the wrong arguments.
    """


class ClientState(enum.Enum):
    """Where a ``HubClient`` is in its life."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


class _Pending:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class HubClient:
    """A connection to a hub that survives reconnects; made by :func:`open_hub_client`."""

    def __init__(
        self,
        url: str,
        *,
        protocol: str,
        access_token: str | Callable[[], Awaitable[str]] | None,
        headers: Iterable[tuple[str, str]],
        skip_negotiation: bool,
        reconnect: bool | Sequence[float],
        keep_alive_interval: float,
        server_timeout: float,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None,
        transport: HttpTransportType | Iterable[HttpTransportType] | None = None,
        stateful_reconnect: bool = False,
        stateful_reconnect_buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'json' or 'messagepack', got {protocol!r}")
        self.url = url
        transports = allowed_transports(transport)
        if skip_negotiation and HttpTransportType.WEBSOCKETS not in transports:
            raise ValueError("skip_negotiation=True needs transport=HttpTransportType.WEBSOCKETS")
        self._settings = ClientSettings(
            url=url,
            protocol=PROTOCOLS[protocol],
            access_token=access_token,
            headers=tuple(headers),
            skip_negotiation=skip_negotiation,
            transports=transports,
            keep_alive_interval=keep_alive_interval,
            server_timeout=server_timeout,
            max_message_size=max_message_size,
            ssl_context=ssl_context,
            stateful_reconnect=stateful_reconnect,
            buffer_size=stateful_reconnect_buffer_size,
        )
        self._delays: tuple[float, ...] = (
            DEFAULT_RECONNECT_DELAYS if reconnect is True else () if reconnect is False else tuple(reconnect)
        )
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, _Pending] = {}
        self._streams: dict[str, trio.MemorySendChannel[Any]] = {}
        self._last_id = 0
        self._connection: ClientConnection | None = None
        self._state = ClientState.CONNECTING
        self._state_changed = trio.Event()
        self._stopping = False
        self.error: BaseException | None = None
        """Why the client is disconnected (``None`` after a clean close)."""

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def connection_id(self) -> str | None:
        """The server's id for the current connection (``None`` without negotiate, or while away)."""
        return None if self._connection is None else self._connection.connection_id

    @property
    def transport_name(self) -> str | None:
        """The transport of the current connection (``"WebSockets"``...), ``None`` while away."""
        return None if self._connection is None else self._connection.transport.name

    @property
    def stateful_reconnect(self) -> bool:
        """Whether the current connection survives a dropped WebSocket (the hub granted it)."""
        return self._connection is not None and self._connection.replay is not None

    def _set_state(self, state: ClientState) -> None:
        self._state = state
        self._state_changed.set()
        self._state_changed = trio.Event()

    async def wait_connected(self) -> None:
        """Wait until the client is connected (again, after a reconnect).

        Raises:
            HubClientError: the client is disconnected for good.
        """
        while self._state is not ClientState.CONNECTED:
            if self._state is ClientState.DISCONNECTED:
                raise HubClientError(f"the client is disconnected: {self.error or 'closed'}")
            await self._state_changed.wait()
        await trio.lowlevel.checkpoint()

    async def wait_disconnected(self) -> None:
        """Wait until the client is disconnected for good (its reconnects, if any, gave up)."""
        while self._state is not ClientState.DISCONNECTED:
            await self._state_changed.wait()
        await trio.lowlevel.checkpoint()

    # -- handlers ------------------------------------------------------------------------------

    @overload
    def on(self, method: str) -> Callable[[_H], _H]: ...

    @overload
    def on(self, method: str, handler: _H) -> _H: ...

    def on(self, method: str, handler: _H | None = None) -> _H | Callable[[_H], _H]:
        """Answer the server's calls to ``method`` (matched in any case) with ``handler``.

        Usable as ``hub.on("Message", show)`` or as a decorator, ``@hub.on("Message")``.
        What the handler returns (awaited, if it is async) is the result of a
        client-result call. One handler per method.

        Raises:
            ValueError: ``method`` already has a handler (``off`` it first).
        """

        def register(function: _H) -> _H:
            key = method.lower()
            if key in self._handlers:
                raise ValueError(f"{method!r} already has a handler; remove it with off() first")
            self._handlers[key] = function
            return function

        return register if handler is None else register(handler)

    def off(self, method: str) -> None:
        """Stop answering ``method``."""
        self._handlers.pop(method.lower(), None)

    def handle(self, hub_type: type[Hub[C]], handlers: C) -> Callable[[], None]:
        """Answer every method of ``hub_type``'s client protocol with ``handlers``' methods.

        ``hub_type`` is a ``Hub[Protocol]`` subclass; mypy checks that
        ``handlers`` implements the protocol. The hub's arguments are
        converted by the protocol's annotations. Returns a function that
        removes the handlers again.

        Raises:
            TypeError: the hub has no client protocol, or ``handlers`` lacks one of its methods.
            ValueError: one of the methods already has a handler.
        """
        from .typed import register_handlers

        return register_handlers(self, hub_type, handlers)

    def server(self, hub_type: type[_HubType]) -> _HubType:
        """The hub's methods by their Python names, typed as the hub class ``hub_type``.

        ``await hub.server(Chat).send_message("hi")`` calls ``SendMessage``
        and converts the result by the method's annotation; a streaming
        method gives an async iterator of its items.
        """
        from .typed import server_proxy

        proxy: _HubType = server_proxy(self, hub_type)
        return proxy

    # -- calls ---------------------------------------------------------------------------------

    def _connected(self) -> ClientConnection:
        connection = self._connection
        if connection is None or self._state is not ClientState.CONNECTED:
            raise HubClientError(f"cannot call the hub while the client is {self._state.value}")
        return connection

    def _next_id(self) -> str:
        self._last_id += 1
        return str(self._last_id)

    async def invoke(self, method: str, *args: Any) -> Any:
        """Call ``method`` on the hub and return its result.

        An argument that is an async iterable is streamed to the server
        (``HubStream`` on a trio_ws hub, a ``ChannelReader`` on ASP.NET).

        Raises:
            InvocationError: the hub answered with an error (its text).
            HubClientError: the client is not connected, or lost its connection.
        """
        connection = self._connected()
        invocation_id = self._next_id()
        pending = self._pending[invocation_id] = _Pending()
        try:
            arguments, uploads = self._split_uploads(args)
            await connection.send(Invocation(method, arguments, invocation_id, tuple(uploads)))
            self._start_uploads(connection, uploads)
            await pending.done.wait()
        finally:
            self._pending.pop(invocation_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def send(self, method: str, *args: Any) -> None:
        """Call ``method`` without waiting for (or getting) a result, as ``send`` in other clients.

        Raises:
            HubClientError: the client is not connected.
        """
        connection = self._connected()
        arguments, uploads = self._split_uploads(args)
        await connection.send(Invocation(method, arguments, None, tuple(uploads)))
        self._start_uploads(connection, uploads)

    @asynccontextmanager
    async def stream(self, method: str, *args: Any) -> AsyncIterator[AsyncIterator[Any]]:
        """Call a streaming ``method``: ``async with hub.stream(...) as items: async for item in items``.

        Leaving the block before the stream ends cancels it on the server
        (CancelInvocation). Iterating raises ``InvocationError`` if the
        stream ends with an error, ``HubClientError`` if the connection is lost.
        """
        connection = self._connected()
        invocation_id = self._next_id()
        send, receive = trio.open_memory_channel[Any](_STREAM_BUFFER)
        self._streams[invocation_id] = send
        finished = False
        try:
            arguments, uploads = self._split_uploads(args)
            await connection.send(StreamInvocation(invocation_id, method, arguments, tuple(uploads)))
            self._start_uploads(connection, uploads)

            async def items() -> AsyncGenerator[Any, None]:
                nonlocal finished
                async with receive:
                    async for item in receive:
                        if isinstance(item, _StreamEnd):
                            finished = True
                            if item.error is not None:
                                raise item.error
                            return
                        yield item

            iterator = items()
            try:
                yield iterator
            finally:
                await iterator.aclose()
        finally:
            if self._streams.pop(invocation_id, None) is not None and not finished:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    if self._connection is connection and self._state is ClientState.CONNECTED:
                        await connection.send(CancelInvocation(invocation_id))

    def _split_uploads(self, args: Sequence[Any]) -> tuple[list[Any], dict[str, AsyncIterable[Any]]]:
        arguments: list[Any] = []
        uploads: dict[str, AsyncIterable[Any]] = {}
        for arg in args:
            if isinstance(arg, AsyncIterable):
                uploads[self._next_id()] = arg
            else:
                arguments.append(arg)
        return arguments, uploads

    def _start_uploads(self, connection: ClientConnection, uploads: dict[str, AsyncIterable[Any]]) -> None:
        for stream_id, items in uploads.items():
            connection.nursery.start_soon(self._upload, connection, stream_id, items)

    async def _upload(self, connection: ClientConnection, stream_id: str, items: AsyncIterable[Any]) -> None:
        error: str | None = None
        try:
            async for item in items:
                await connection.send(StreamItem(stream_id, item))
        except Exception as exc:  # the stream's own failure is told to the hub, as the official client does
            error = f"{type(exc).__name__}: {exc}"
        await connection.send(Completion(stream_id, error=error))

    # -- the connection's life -------------------------------------------------------------------

    async def _run(
        self, *, task_status: trio.TaskStatus[BaseException | None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, serve, and reconnect while allowed; the first failure goes to ``task_status``."""
        first = True
        while True:
            outcome = await self._session(task_status if first else None)
            if first and not outcome.opened:
                self._finish(outcome.error)
                task_status.started(outcome.error or HubClientError("could not connect"))
                return
            first = False
            if self._stopping or not outcome.allow_reconnect or not self._delays:
                self._finish(outcome.error)
                return
            logger.info("hub client: connection lost (%s); reconnecting", printable(str(outcome.error)))
            self._set_state(ClientState.RECONNECTING)
            for delay in self._delays:
                await trio.sleep(delay)
                outcome = await self._session(None)
                if outcome.opened:
                    break
            else:
                self._finish(outcome.error)
                return
            if self._stopping:
                return

    def _finish(self, error: BaseException | None) -> None:
        self.error = error
        self._connection = None
        self._set_state(ClientState.DISCONNECTED)

    async def _session(self, task_status: trio.TaskStatus[BaseException | None] | None) -> _Outcome:
        """One connection, from negotiate to its loss; how it ended."""
        outcome = _Outcome()
        connection: ClientConnection | None = None
        try:
            async with trio.open_nursery() as nursery:
                connection = await open_connection(self._settings, nursery)
                self._connection = connection
                outcome.opened = True
                self._set_state(ClientState.CONNECTED)
                if task_status is not None:
                    task_status.started(None)
                if not connection.transport.inherent_keep_alive:
                    nursery.start_soon(self._keep_alive, connection)
                if connection.replay is not None:
                    nursery.start_soon(self._acknowledge, connection, connection.replay)
                nursery.start_soon(self._run_handlers, connection)
                await self._read(connection, outcome)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            expected, rest = group.split(_CONNECTION_ERRORS)
            if rest is not None:
                raise
            assert expected is not None
            outcome.error = _first_leaf(expected)
        except _CONNECTION_ERRORS as exc:
            outcome.error = exc
        finally:
            self._connection = None
            if connection is not None and connection.replay is not None:
                connection.replay.close()  # wakes senders waiting for room: they fail below
            self._fail_pending(outcome.error)
            if connection is not None:
                with trio.CancelScope(shield=True):
                    await connection.transport.aclose()
        return outcome

    async def _keep_alive(self, connection: ClientConnection) -> None:
        ping = connection.protocol.encode(Ping())
        while True:
            await trio.sleep_until(connection.last_sent + self._settings.keep_alive_interval)
            if trio.current_time() >= connection.last_sent + self._settings.keep_alive_interval:
                await connection.send_raw(ping)
                connection.last_sent = trio.current_time()

    async def _acknowledge(self, connection: ClientConnection, replay: Replay) -> None:
        """Stateful reconnect: an Ack a second after new messages arrived, as the official client."""
        while True:
            await connection.ack_wanted.wait()
            await trio.sleep(_ACK_INTERVAL)
            connection.ack_wanted = trio.Event()
            sequence_id = replay.ack_due()
            if sequence_id is not None:
                await connection.send_raw(connection.protocol.encode(Ack(sequence_id)))
                replay.acked(sequence_id)

    async def _receive(self, connection: ClientConnection) -> bytes | HubClientError:
        """The next bytes from the hub, or why there are none (the transport ended, or the hub is mute)."""
        timeout = math.inf if connection.transport.inherent_keep_alive else self._settings.server_timeout
        with trio.move_on_after(timeout):
            try:
                return await connection.transport.receive()
            except TransportEnded as exc:
                return exc
        return HubClientError(f"server timeout: nothing from the hub for {self._settings.server_timeout} s")

    async def _read(self, connection: ClientConnection, outcome: _Outcome) -> None:
        """Read and act on the server's messages until the connection ends."""
        reader = connection.protocol.reader(self._settings.max_message_size)
        reader.receive_data(connection.rest)
        replay = connection.replay
        while True:
            message = reader.next_message()
            if message is None:
                data = await self._receive(connection)
                if isinstance(data, HubClientError):
                    if self._stopping:
                        return
                    if replay is not None:
                        failure = await resume(self._settings, connection, replay, data)
                        if failure is None:
                            reader = connection.protocol.reader(self._settings.max_message_size)
                            continue
                        data = failure
                    outcome.error = data  # an unresponsive hub's TCP connection is dropped, not closed
                    return
                reader.receive_data(data)
                continue
            if replay is not None:
                if not replay.accept(message):
                    continue  # before the hub's Sequence, or a duplicate replayed
                if is_trackable(message):
                    connection.ack_wanted.set()
            match message:
                case Completion():
                    self._complete(message)
                case StreamItem():
                    channel = self._streams.get(message.invocation_id)
                    if channel is not None:
                        # A full stream slows the reading down; one its reader left is dropped.
                        with suppress(trio.BrokenResourceError):
                            await channel.send(message.item)
                case Invocation():
                    await connection.calls.send(message)  # a full queue slows the reading down
                case Ack():
                    if replay is not None:
                        replay.ack(message.sequence_id)
                case Close():
                    # The hub ends the transport next (a WebSocket's Close frame, a 204, the end of
                    # the event stream): read it out.
                    outcome.allow_reconnect = message.allow_reconnect
                    outcome.error = (
                        None if message.error is None else HubClientError(f"the hub closed: {message.error}")
                    )
                    with trio.move_on_after(_CLOSE_TIMEOUT):
                        await _drain(connection.transport)
                    return

    def _complete(self, message: Completion) -> None:
        channel = self._streams.pop(message.invocation_id, None)
        if channel is not None:
            error = None if message.error is None else InvocationError(message.error)
            # A full channel: the stream's reader stopped reading, and will find it closed; a
            # broken one: the reader left (the stream ended on the hub before its cancel arrived).
            with suppress(trio.WouldBlock, trio.BrokenResourceError):
                channel.send_nowait(_StreamEnd(error))
            channel.close()
            return
        pending = self._pending.get(message.invocation_id)
        if pending is None:
            return
        if message.error is not None:
            pending.error = InvocationError(message.error)
        else:
            pending.result = message.result
        pending.done.set()

    async def _run_handlers(self, connection: ClientConnection) -> None:
        """The hub's calls, one at a time, in the order they came."""
        async for message in connection.calls_waiting:
            await self._call_handler(connection, message)

    async def _call_handler(self, connection: ClientConnection, message: Invocation) -> None:
        handler = self._handlers.get(message.target.lower())
        if handler is None:
            logger.warning("hub client: no handler for the server's call to %s", printable(message.target))
            if message.invocation_id is not None:
                await self._answer(connection, Completion.with_error(message.invocation_id, _NO_RESULT))
            return
        try:
            result = handler(*message.arguments)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            logger.error("hub client: the handler for %s failed", printable(message.target), exc_info=exc)
            if message.invocation_id is not None:
                await self._answer(
                    connection, Completion.with_error(message.invocation_id, f"{type(exc).__name__}: {exc}")
                )
            return
        if message.invocation_id is not None:
            await self._answer(connection, Completion.with_result(message.invocation_id, result))

    async def _answer(self, connection: ClientConnection, completion: Completion) -> None:
        with suppress(HubClientError):  # the connection is gone, and with it whoever asked
            await connection.send(completion)

    def _fail_pending(self, error: BaseException | None) -> None:
        lost = HubClientError(f"the connection was lost{f': {error}' if error else ''}")
        for pending in self._pending.values():
            pending.error = lost
            pending.done.set()
        for channel in self._streams.values():
            with suppress(trio.WouldBlock):
                channel.send_nowait(_StreamEnd(lost))
            channel.close()
        self._streams.clear()

    async def _stop(self) -> None:
        """Say goodbye and stop reconnecting.

        The client sends Close; a hub answers by ending the transport (trio_ws
        and ASP.NET both do: a WebSocket's Close frame, a 204 to the poll, the
        end of the event stream), which ends the connection from the server's
        side, as RFC 6455 wants. A hub that does not within ``_CLOSE_TIMEOUT``
        has its transport closed by the client (Long Polling sends ``DELETE``).
        """
        self._stopping = True
        connection = self._connection
        if connection is not None and self._state is ClientState.CONNECTED:
            with trio.move_on_after(_CLOSE_TIMEOUT) as waiting:
                with suppress(HubClientError):
                    await connection.send(Close())
                await self.wait_disconnected()
            if waiting.cancelled_caught:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await connection.transport.aclose()


class _StreamEnd:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Outcome:
    """How a connection ended."""

    def __init__(self) -> None:
        self.opened = False
        self.allow_reconnect = True  # a lost transport may be reconnected; a Close says for itself
        self.error: BaseException | None = None


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _drain(transport: ClientTransport) -> None:
    """Read (and drop) until the transport has ended."""
    with suppress(HubClientError):
        while True:
            await transport.receive()


@asynccontextmanager
async def open_hub_client(
    url: str,
    *,
    protocol: str = "json",
    access_token: str | Callable[[], Awaitable[str]] | None = None,
    headers: Iterable[tuple[str, str]] = (),
    skip_negotiation: bool = False,
    reconnect: bool | Sequence[float] = False,
    keep_alive_interval: float = 15.0,
    server_timeout: float = 30.0,
    max_message_size: int = 1024 * 1024,
    ssl_context: ssl.SSLContext | None = None,
    transport: HttpTransportType | Iterable[HttpTransportType] | None = None,
    stateful_reconnect: bool = False,
    stateful_reconnect_buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> AsyncIterator[HubClient]:
    """Connect to the hub at ``url`` (``http://host:port/chat``) for the block; say goodbye after it.

    Args:
        url: The hub's URL, as a browser would negotiate with it (``https://`` for TLS).
        protocol: ``"json"`` or ``"messagepack"``.
        access_token: A bearer token, or an async function that returns a
            fresh one for each connection (sent as ``Authorization: Bearer``).
        headers: More request headers for negotiate and the WebSocket.
        skip_negotiation: Open the WebSocket at ``url`` directly.
        reconnect: ``True`` to reconnect after 0, 2, 10 and 30 s, or the
            delays to use; ``False`` to stay disconnected once lost.
        keep_alive_interval: Send a Ping after this long with nothing sent
            (ASP.NET's default is 15 s: keep it below the server's timeout).
        server_timeout: Drop the connection (and reconnect, if allowed) when
            nothing comes from the hub for this long (30 s by default).
        max_message_size: The largest message accepted from the hub.
        ssl_context: For ``https://`` hubs with their own certificates.
        transport: The transport to use, or several to choose from (all
            three by default); the client tries those the hub offers in the
            hub's order (WebSockets, Server-Sent Events, Long Polling), and
            falls back to the next when one cannot start.
        stateful_reconnect: Ask the hub for stateful reconnect: on a
            WebSocket that drops, the client opens a new one to the same
            connection and both sides send again what the other has not
            acknowledged (nothing lost, nothing twice, the same connection id).
        stateful_reconnect_buffer_size: Bytes of sent messages kept until the
            hub acknowledges them; past it, sending waits.

    Raises:
        HubClientError: the first connection could not be made (the text
            says why; ``status`` holds a refusal's HTTP status, such as 401).
    """
    if not 0 < keep_alive_interval < math.inf or not 0 < server_timeout < math.inf:
        raise ValueError("keep_alive_interval and server_timeout must be positive numbers of seconds")
    if stateful_reconnect_buffer_size < 1:
        raise ValueError("stateful_reconnect_buffer_size must be a positive number of bytes")
    client = HubClient(
        url,
        protocol=protocol,
        access_token=access_token,
        headers=headers,
        skip_negotiation=skip_negotiation,
        reconnect=reconnect,
        keep_alive_interval=keep_alive_interval,
        server_timeout=server_timeout,
        max_message_size=max_message_size,
        ssl_context=ssl_context,
        transport=transport,
        stateful_reconnect=stateful_reconnect,
        stateful_reconnect_buffer_size=stateful_reconnect_buffer_size,
    )
    failure: BaseException | None = None
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            failure = await nursery.start(client._run)
            if failure is None:
                try:
                    yield client
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await client._stop()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = group.exceptions
        if body_error is not None and len(leaves) == 1 and leaves[0] is body_error:
            raise body_error from None
        raise
    if failure is not None:
        raise failure
