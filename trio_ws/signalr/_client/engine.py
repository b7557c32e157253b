"""The hub client's engine: one connection at a time, its reader, reconnects, and what waits.

``HubClient`` (``_client/client.py``) is what a program calls; it asks this
engine for the connection and hands it what waits for an answer. The
engine owns everything that lives across the connection's life::

    ClientEngine.run                      connect, serve, reconnect: one connection at a time
    └─ connection nursery                 one per connection (see _client/client.py's tree)
       ├─ keep-alive task, ack task       Pings after keep_alive_interval; stateful reconnect's Acks
       ├─ handler task                    the hub's calls to on() handlers, one at a time, in order
       └─ the reader (run's own task)     Completions, stream items, the hub's calls, Acks, Close

Rules of this module:

* The reader never waits for a handler: the hub's calls queue for the
  handler task (a full queue slows the reading down), and everything else
  is applied as it is read. A full stream slows the reading down too; one
  whose reader has left is dropped.
* What waits for an answer (``pending`` calls, ``streams``) is keyed by our
  invocation ids; when a connection ends, each fails with the loss, and a
  reconnect starts with none.
* A dropped WebSocket under stateful reconnect is resumed here, in the
  reader's turn (``connect.resume``); otherwise a lost connection is
  reconnected after the configured delays, or the client is disconnected
  for good (``error`` says why).
* ``stop`` says goodbye (Close) and waits for the hub to end the transport,
  at most ``_CLOSE_TIMEOUT``, then closes it itself.
"""

from __future__ import annotations

import enum
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import trio
import trio_websocket

from ..._errors import TrioWsError
from ..._printable import printable
from .._protocol import ProtocolError
from .._protocol.messages import Ack, Close, Completion, Invocation, Ping, StreamItem, is_trackable
from .._transports.replay import Replay
from .connect import ClientConnection, ClientSettings, open_connection, resume
from .negotiate import HubClientError
from .transports import ClientTransport, TransportEnded

__all__ = ["ClientEngine", "ClientState", "Handler", "InvocationError", "Pending", "StreamEnd"]

logger = logging.getLogger("trio_ws.signalr.client")

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


class Pending:
    """A call waiting for its Completion: the result, or the error it ends with."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class ClientEngine:
    """One hub client's connections, one at a time, and what waits on them (see the module docstring)."""

    def __init__(self, settings: ClientSettings, delays: Sequence[float]) -> None:
        self.settings = settings
        self.delays = tuple(delays)
        self.handlers: dict[str, Handler] = {}  # by lowercased method name
        self.pending: dict[str, Pending] = {}  # calls waiting for their Completion, by invocation id
        self.streams: dict[str, trio.MemorySendChannel[Any]] = {}  # streams being received
        self.last_id = 0
        self.connection: ClientConnection | None = None
        self.state = ClientState.CONNECTING
        self._state_changed = trio.Event()
        self.stopping = False
        self.error: BaseException | None = None

    def next_id(self) -> str:
        """A new invocation (or upload stream) id."""
        self.last_id += 1
        return str(self.last_id)

    def connected(self) -> ClientConnection:
        """The connection to call the hub over.

        Raises:
            HubClientError: the client is not connected now.
        """
        connection = self.connection
        if connection is None or self.state is not ClientState.CONNECTED:
            raise HubClientError(f"cannot call the hub while the client is {self.state.value}")
        return connection

    def set_state(self, state: ClientState) -> None:
        self.state = state
        self._state_changed.set()
        self._state_changed = trio.Event()

    async def wait_connected(self) -> None:
        """Wait until the client is connected (again, after a reconnect).

        Raises:
            HubClientError: the client is disconnected for good.
        """
        while self.state is not ClientState.CONNECTED:
            if self.state is ClientState.DISCONNECTED:
                raise HubClientError(f"the client is disconnected: {self.error or 'closed'}")
            await self._state_changed.wait()
        await trio.lowlevel.checkpoint()

    async def wait_disconnected(self) -> None:
        """Wait until the client is disconnected for good (its reconnects, if any, gave up)."""
        while self.state is not ClientState.DISCONNECTED:
            await self._state_changed.wait()
        await trio.lowlevel.checkpoint()

    # -- the connection's life -------------------------------------------------------------------

    async def run(
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
            if self.stopping or not outcome.allow_reconnect or not self.delays:
                self._finish(outcome.error)
                return
            logger.info("hub client: connection lost (%s); reconnecting", printable(str(outcome.error)))
            self.set_state(ClientState.RECONNECTING)
            for delay in self.delays:
                await trio.sleep(delay)
                outcome = await self._session(None)
                if outcome.opened:
                    break
            else:
                self._finish(outcome.error)
                return
            if self.stopping:
                return

    def _finish(self, error: BaseException | None) -> None:
        self.error = error
        self.connection = None
        self.set_state(ClientState.DISCONNECTED)

    async def _session(self, task_status: trio.TaskStatus[BaseException | None] | None) -> _Outcome:
        """One connection, from negotiate to its loss; how it ended."""
        outcome = _Outcome()
        connection: ClientConnection | None = None
        try:
            async with trio.open_nursery() as nursery:
                connection = await open_connection(self.settings, nursery)
                self.connection = connection
                outcome.opened = True
                self.set_state(ClientState.CONNECTED)
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
            self.connection = None
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
            await trio.sleep_until(connection.last_sent + self.settings.keep_alive_interval)
            if trio.current_time() >= connection.last_sent + self.settings.keep_alive_interval:
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
        timeout = math.inf if connection.transport.inherent_keep_alive else self.settings.server_timeout
        with trio.move_on_after(timeout):
            try:
                return await connection.transport.receive()
            except TransportEnded as exc:
                return exc
        return HubClientError(f"server timeout: nothing from the hub for {self.settings.server_timeout} s")

    async def _read(self, connection: ClientConnection, outcome: _Outcome) -> None:
        """Read and act on the server's messages until the connection ends."""
        reader = connection.protocol.reader(self.settings.max_message_size)
        reader.receive_data(connection.rest)
        replay = connection.replay
        while True:
            message = reader.next_message()
            if message is None:
                data = await self._receive(connection)
                if isinstance(data, HubClientError):
                    if self.stopping:
                        return
                    if replay is not None:
                        failure = await resume(self.settings, connection, replay, data)
                        if failure is None:
                            reader = connection.protocol.reader(self.settings.max_message_size)
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
                    channel = self.streams.get(message.invocation_id)
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
        channel = self.streams.pop(message.invocation_id, None)
        if channel is not None:
            error = None if message.error is None else InvocationError(message.error)
            # A full channel: the stream's reader stopped reading, and will find it closed; a
            # broken one: the reader left (the stream ended on the hub before its cancel arrived).
            with suppress(trio.WouldBlock, trio.BrokenResourceError):
                channel.send_nowait(StreamEnd(error))
            channel.close()
            return
        pending = self.pending.get(message.invocation_id)
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
        handler = self.handlers.get(message.target.lower())
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
        for pending in self.pending.values():
            pending.error = lost
            pending.done.set()
        for channel in self.streams.values():
            with suppress(trio.WouldBlock):
                channel.send_nowait(StreamEnd(lost))
            channel.close()
        self.streams.clear()

    async def stop(self) -> None:
        """Say goodbye and stop reconnecting.

        The client sends Close; a hub answers by ending the transport (trio_ws
        and ASP.NET both do: a WebSocket's Close frame, a 204 to the poll, the
        end of the event stream), which ends the connection from the server's
        side, as RFC 6455 wants. A hub that does not within ``_CLOSE_TIMEOUT``
        has its transport closed by the client (Long Polling sends ``DELETE``).
        """
        self.stopping = True
        connection = self.connection
        if connection is not None and self.state is ClientState.CONNECTED:
            with trio.move_on_after(_CLOSE_TIMEOUT) as waiting:
                with suppress(HubClientError):
                    await connection.send(Close())
                await self.wait_disconnected()
            if waiting.cancelled_caught:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await connection.transport.aclose()


class StreamEnd:
    """The end of a stream being received: ``error`` if it ended with one."""

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
