"""One hub connection, from its handshake to its last message, across the transports that carry it.

::

    HubConnection.run                       a task in the hub server's nursery: reads and dispatches
    └─ hub connection nursery               cancelled when the connection ends; empty while idle
       ├─ invoker task                      the calls, in order; it runs each itself when they run one
       │                                    at a time (the default; see _hub/dispatch.py)
       └─ one task per stream               and per call when max_parallel_invocations > 1

    Timers.run                              the hub server's one timer task (_transports/timers.py):
                                            calls HubConnection._watch when a timer is due

    HubConnection.attach(transport)         in the transport's own task (a WebSocket handler)
    └─ the pump                             writes what is queued (Sender.pump), while attached

The connection over its transports (attaching them, the client's bytes,
the time away, ending once) is ``TransportConnection``'s
(``_transports/connection.py``); this module is the hub protocol on top.
It knows its server as ``HubConnectionHost``, the members it uses, which
``_endpoints/server.py``'s ``HubServer`` has.

Rules of this module:

* Reading is the connection's own task: it calls ``_receive()`` (the transport
  attached now), cuts the bytes into messages, and hands each
  to the dispatcher before reading the next. The dispatcher never waits for
  a hub method (what steers the connection, Acks above all, is applied at
  once); when calls pile up in its backlog, reading waits, and the
  transport stops receiving: back-pressure reaches the client through TCP
  (or its POSTs). Writing is the ``Sender``'s (``_sender.py``).
* Ending cancels the nursery: calls, streams, the keep-alive. Then,
  shielded from cancellation and bounded by ``close_timeout``: the Close
  message is queued (when a transport can still carry it; a client too
  slow to read gets none, and its transport is aborted at once), client
  results still awaited fail, the connection leaves the backplane (and so
  its groups), ``on_disconnected`` runs, and the Close message is given
  time to go out.
* The handshake clock starts when the first transport attaches.
* The timers (the keep-alive Ping, the client timeout, the time without a
  transport, a stateful client's Ack) are the hub server's timer task's,
  which calls ``_watch`` when the earliest is due; it acts and says when
  to look again. Reading and sending only note the time, so a message
  costs no timer work, and an idle connection no task of its own.
* The client timeout starts with the client's first Ping, as ASP.NET's
  does, counts only time spent waiting for the client's bytes, and applies
  only to transports the hub pings over (not Long Polling).
* A peer's mistake (bad handshake, malformed message, a message over the
  size limit, a Sequence ahead of what it sent) is logged at INFO without
  a traceback, and answered as ASP.NET answers it: a handshake refusal, or
  a Close message with "Connection closed with an error." (plus the
  reason, with detailed errors).
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVarTuple

import trio

from ..._contain import contain
from ..._observe.logs import add_log_fields
from ..._printable import printable
from .._errors import DisconnectReason, HubError, error_text
from .._options import SlowClientPolicy
from .._protocol.errors import HandshakeError, ProtocolError
from .._protocol.handshake import CANCELED, HandshakeReader, choose_protocol, encode_response
from .._protocol.messages import Ack, Close, HubMessage, Ping, TransferFormat, is_trackable
from .._transports.connection import TransportConnection, TransportServer, new_id
from .._transports.replay import Replay
from .._transports.transport import Attachment, ConnectionGone, TransportInUse, TransportMismatch
from .call import CallInfo, HubCallerContext, current_call
from .dispatch import Dispatcher
from .dispatched import DispatchHost
from .filters import HubLifetimeContext

if TYPE_CHECKING:
    from ..._app.request import Request
    from .._backplane import Backplane, SerializedMessage
    from .._protocol.codec import HubProtocol, MessageReader
    from .filters import NextConnected, NextDisconnected

__all__ = [
    "Attachment",
    "ConnectionGone",
    "HubConnection",
    "HubConnectionHost",
    "TransportInUse",
    "TransportMismatch",
    "new_id",
]

_Args = TypeVarTuple("_Args")
logger = logging.getLogger("trio_ws.signalr")

_CLOSED_WITH_ERROR = "Connection closed with an error."
# How long after new messages from a stateful client their Ack goes out (ASP.NET's timer).
_ACK_DELAY = 1.0
# Messages dispatched between two schedule points of the reader, at most (dispatching itself
# waits only when it must).
_MESSAGES_PER_TURN = 64


_serving: contextvars.ContextVar[HubConnection] = contextvars.ContextVar("trio_ws.signalr.serving")


def _log_fields() -> dict[str, object] | None:
    """The hub connection's fields for a JSON log record: read only when one is written."""
    call = current_call.get(None)
    connection = call.connection if call is not None else _serving.get(None)
    if connection is None:
        return None
    fields: dict[str, object] = {
        "connection_id": connection.connection_id,
        "hub": type(connection.server.hub).__name__,
        "transport": connection.transport_name,
        "user": connection.user_id,
    }
    request = connection.request
    if request is not None and request.client is not None:
        fields["remote"] = "{}:{}".format(*request.client)
    if call is not None and call.method is not None:
        fields["method"] = call.method
    return fields


add_log_fields(_log_fields)


class HubConnectionHost(DispatchHost, TransportServer, Protocol):
    """What a hub connection needs of the server that owns it (``_endpoints/server.py``'s
    ``HubServer`` is one): the protocols it offers, the backplane the connection joins, and the
    ``on_connected``/``on_disconnected`` pipelines, beside what its calls and transports need."""

    @property
    def protocols(self) -> tuple[HubProtocol, ...]: ...  # pragma: no cover (a signature)

    @property
    def backplane(self) -> Backplane: ...  # pragma: no cover (a signature)

    @property
    def connected(self) -> NextConnected | None: ...  # pragma: no cover (a signature)

    @property
    def disconnected(self) -> NextDisconnected | None: ...  # pragma: no cover (a signature)


class HubConnection(TransportConnection):
    """One client's connection to a hub, whatever transport carries it: the hub protocol on top."""

    __slots__ = (
        "_ack_at",
        "_client_timeout_armed",
        "_connected",
        "_goodbye",
        "_reader",
        "_registered",
        "_tasks",
        "context",
        "dispatcher",
        "protocol",
    )

    def __init__(
        self,
        server: HubConnectionHost,
        *,
        user_id: str | None = None,
        request: Request | None = None,
        token_is_id: bool = False,
        stateful_reconnect: bool = False,
        connection_id: str | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(
            server,
            user_id=user_id,
            request=request,
            token_is_id=token_is_id,
            stateful_reconnect=stateful_reconnect,
            connection_id=connection_id,
            token=token,
        )
        self.server: HubConnectionHost = server
        self.protocol: HubProtocol | None = None
        self.context = HubCallerContext(self)
        self.dispatcher = Dispatcher(self)
        self._reader: MessageReader | None = None
        self._tasks: trio.Nursery | None = None
        self._goodbye: Close | None = None
        self._registered = False
        self._connected = False
        self._client_timeout_armed = False
        self._ack_at = math.inf  # stateful reconnect: when the Ack for what came is due

    def __str__(self) -> str:
        return f"hub connection {self.connection_id}"

    # -- the connection's life ------------------------------------------------------------------

    async def run(self) -> None:
        """The connection's whole life; runs in the hub server's nursery."""
        _serving.set(self)  # for structured logs: this task, and every task it starts
        try:
            async with trio.open_nursery() as nursery:
                self._tasks = nursery
                self._adopt_scope(nursery.cancel_scope)  # ending the connection cancels the nursery
                if await self._wait_for_transport() and await self._handshake() and await self._join():
                    await self._read_messages()
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            contain(exc, logger, "%s: internal error; please report a bug to trio_ws", self)
            self.close(DisconnectReason.ABORTED, "internal error")
        finally:
            self._stop_timers()
            if self._reason is None and self._connected:
                # Cancelled from outside: the hub server's nursery is being torn down.
                self._reason = DisconnectReason.SERVER_SHUTDOWN
            await self._finish()

    def start_task(self, function: Callable[[*_Args], Awaitable[object]], *args: *_Args) -> None:
        """Start a task in the connection's nursery (calls and streams)."""
        assert self._tasks is not None
        self._tasks.start_soon(function, *args)

    def arm_client_timeout(self) -> None:
        """The client pinged: from now on, silence for ``client_timeout`` ends the connection."""
        if not self._client_timeout_armed:
            self._client_timeout_armed = True
            self._look_again()

    async def _handshake(self) -> bool:
        options = self._options
        reader = HandshakeReader(options.max_message_size)
        outbox = self.sender.outbox
        timeout = options.handshake_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout):
            try:
                while (request := reader.next_request()) is None:
                    chunk = await self._receive()
                    if chunk is None:
                        return False
                    reader.receive_data(chunk)
                protocol = choose_protocol(request, self.server.protocols, self._formats)
            except HandshakeError as exc:
                reply = exc.reply
                if str(exc) != exc.reply and options.detailed_errors:
                    reply = error_text(exc.reply, exc, detailed=True)
                logger.info("%s: handshake refused: %s", self, printable(str(exc)))
                outbox.close(encode_response(reply))
                return False
            self.protocol = self.sender.protocol = protocol
            self.sender.binary = protocol.transfer_format is TransferFormat.BINARY
            if self.stateful_reconnect and request.version >= 2 and self.transport_name == "WebSockets":
                self.sender.replay = Replay(options.stateful_reconnect_buffer_size)
            self._reader = protocol.reader(options.max_message_size)
            self._reader.receive_data(reader.take_rest())
            outbox.put_nowait(encode_response())
            self.sender.last_sent = trio.current_time()
            return True
        logger.info("%s: handshake refused: not completed within handshake_timeout", self)
        outbox.close(encode_response(CANCELED))
        return False

    async def _join(self) -> bool:
        """Join the backplane and run ``on_connected``: whether the connection goes on to read."""
        assert self.protocol is not None
        logger.info(
            "%s: connected to %s over %s with %s%s%s",
            self,
            type(self.server.hub).__name__,
            self.transport_name,
            self.protocol.name,
            ", stateful reconnect on" if self.sender.replay is not None else "",
            f", as user '{printable(self.user_id)}'" if self.user_id is not None else "",
        )
        await self.server.backplane.add_connection(self)
        self._registered = True
        # From the handshake on, as ASP.NET: a slow on_connected must not look like a dead server.
        self._look_again()  # Pings are due from now on
        if not await self._call_on_connected():
            return False
        self._connected = True
        return True

    async def _call_on_connected(self) -> bool:
        token = current_call.set(CallInfo(self, in_on_connected=True))
        try:
            pipeline = self.server.connected
            if pipeline is None:
                await self.server.hub.on_connected()
            else:
                await pipeline(HubLifetimeContext(self.server.hub, self.context))
        except BaseException as exc:
            if isinstance(exc, HubError):  # the hub's (or a filter's) refusal, not a bug
                logger.info("%s: refused by on_connected: %s", self, printable(str(exc)))
                failure: BaseException = exc
            else:
                failure = contain(exc, logger, "%s: on_connected failed", self) or exc
            text = error_text(_CLOSED_WITH_ERROR, failure, detailed=self._options.detailed_errors)
            self._goodbye = Close(text, allow_reconnect=False)  # as ASP.NET: the hub cannot serve it
            self.close(DisconnectReason.ABORTED, f"on_connected raised {failure!r}")
            return False
        finally:
            current_call.reset(token)
        return True

    async def _read_messages(self) -> None:
        reader = self._reader
        replay = self.sender.replay
        dispatch = self.dispatcher.dispatch
        assert reader is not None
        turn = 0
        try:
            while not self.closing:
                message = reader.next_message()
                if message is None:
                    chunk = await self._receive()
                    if chunk is None:
                        return
                    reader.receive_data(chunk)
                    continue
                turn += 1
                if turn >= _MESSAGES_PER_TURN:
                    # A flood in one chunk (Pings, stream items) lets the other tasks have a turn.
                    turn = 0
                    await trio.lowlevel.checkpoint()
                if replay is not None:
                    if not replay.accept(message):
                        continue
                    if self._ack_at == math.inf and is_trackable(message):
                        self._ack_at = trio.current_time() + _ACK_DELAY
                        self._look_at(self._ack_at)
                await dispatch(message)
        except ProtocolError as exc:
            logger.info("%s: closed: the client broke the protocol: %s", self, printable(str(exc)))
            self.close(DisconnectReason.PROTOCOL_ERROR, str(exc))
            self._goodbye = Close(
                error_text(_CLOSED_WITH_ERROR, exc, detailed=self._options.detailed_errors),
                allow_reconnect=True,
            )

    def _watch(self, now: float) -> float:
        """The connection's timers (the server's timer task calls it when one is due): the Ping,
        the client timeout, the time away, the Ack. Each is noted as a time by whoever changes it
        (the reader, the sender, the transports); this acts on those due and says when to look
        again. Something that moves a timer sooner (a client's first Ping, a transport leaving)
        calls it at once (``_look_again``)."""
        away = self._away_since
        due = self._check_away(now)
        protocol = self.protocol
        if due is None or protocol is None:
            return math.inf if due is None else due
        options = self._options
        interval = options.keep_alive_interval
        timeout = options.client_timeout
        sender = self.sender
        if interval is not None and self._pings and away is None:
            if now >= sender.last_sent + interval:
                # A full queue means the transport is busy sending anyway: no Ping needed.
                sender.try_put(protocol.encode(Ping()), trackable=False)
                sender.last_sent = now
            due = min(due, sender.last_sent + interval)
        if self._client_timeout_armed and self._pings and timeout is not None and away is None:
            silent_until = self._last_received + timeout
            if now >= silent_until and self._waiting:
                logger.info("%s: closed: nothing from the client for %s s", self, timeout)
                self.close(DisconnectReason.TIMED_OUT)
                return math.inf
            # While the reader is busy (every call slot taken) the client is not timed out;
            # look again a little later.
            due = min(due, silent_until if now < silent_until else now + min(1.0, timeout))
        if now >= self._ack_at:
            self._ack_at = math.inf
            self._acknowledge(protocol, now)
        return min(due, self._ack_at)

    def _acknowledge(self, protocol: HubProtocol, now: float) -> None:
        """Stateful reconnect: tell the client what arrived (a second after something new did)."""
        replay = self.sender.replay
        assert replay is not None
        sequence_id = replay.ack_due()
        if sequence_id is None:
            return
        if self._attachment is not None and self.sender.try_put(
            protocol.encode(Ack(sequence_id)), trackable=False
        ):
            replay.acked(sequence_id)
        else:
            self._ack_at = now + _ACK_DELAY  # away, or no room: try again a second later

    async def _finish(self) -> None:
        sender = self.sender
        with trio.CancelScope(shield=True), trio.move_on_after(self._options.close_timeout):
            reason = self._reason
            attachment = self._attachment
            if reason is DisconnectReason.TOO_SLOW:
                sender.outbox.discard()
            elif attachment is None or self.protocol is None:
                sender.outbox.close()  # a handshake refusal, if any, is queued already
            else:
                goodbye = self._goodbye or _goodbye_for(reason, self._detail, self._options.detailed_errors)
                sender.outbox.close(None if goodbye is None else self.protocol.encode(goodbye))
            if sender.replay is not None:
                sender.replay.close()
            self.dispatcher.results.fail_all()
            if self._registered:
                await self.server.backplane.remove_connection(self)
            if self._connected and reason is not None:
                token = current_call.set(CallInfo(self))
                try:
                    pipeline = self.server.disconnected
                    if pipeline is None:
                        await self.server.hub.on_disconnected(reason)
                    else:
                        await pipeline(HubLifetimeContext(self.server.hub, self.context), reason)
                except BaseException as exc:
                    contain(exc, logger, "%s: on_disconnected failed", self)
                finally:
                    current_call.reset(token)
            await self._wait_flushed()
        await self._end_transport()
        if self._connected:
            detail = f" ({printable(self._detail)})" if self._detail else ""
            logger.info(
                "%s: closed: %s%s",
                self,
                reason.value if reason else "never connected",
                detail,
                extra={"close_reason": reason.value if reason else None},
            )

    # -- sending ----------------------------------------------------------------------------

    async def send_message(self, message: HubMessage) -> None:
        """Encode ``message`` and send it, waiting for room (see ``send_bytes``).

        Raises:
            TypeError, ValueError: a value in the message cannot be encoded.
        """
        assert self.protocol is not None
        await self.send_bytes(self.protocol.encode(message), trackable=is_trackable(message))

    # The LocalConnection protocol: how a backplane delivers to this connection.

    async def send_direct(self, message: SerializedMessage) -> None:
        if self.protocol is None or self.closing:
            await trio.lowlevel.checkpoint()
            return
        await self.send_bytes(message.encode(self.protocol))

    def offer(self, message: SerializedMessage) -> bool:
        if self.protocol is None or self.closing:
            return True
        data = message.encode(self.protocol)
        sender = self.sender
        if sender.try_put(data, droppable=True):
            return True
        policy = self._options.slow_client
        if policy is SlowClientPolicy.DROP_OLDEST and sender.replay is None:
            outbox = sender.outbox
            while not outbox.put_nowait(data, droppable=True):
                if not outbox.drop_oldest():
                    # Only replies wait in the queue: let this one in past the limit; the next
                    # send to many will drop it first.
                    outbox.force_put(data, droppable=True)
                    break
            sender.last_sent = trio.current_time()
            return True
        if policy is SlowClientPolicy.WAIT:
            return False
        replay = sender.replay
        if replay is None:
            self._too_slow("its send buffer is full")
        else:
            self._too_slow(
                f"{replay.unacked_bytes} bytes wait for its Ack{' while it is away' if sender.away else ''}, "
                f"the most away_buffer_size ({sender.away_limit}) lets sends to many keep"
            )
        return True

    async def deliver(self, message: SerializedMessage) -> None:
        if self.protocol is None or self.closing:
            await trio.lowlevel.checkpoint()
            return
        await self.send_bytes(message.encode(self.protocol), droppable=True)

    def replies_wait_for_ack(self) -> None:
        self.dispatcher.replies_wait_for_ack()

    def sends_follow(self) -> bool:
        return self.dispatcher.backlogged

    async def invoke(self, target: str, arguments: Sequence[Any]) -> Any:
        return await self.dispatcher.results.invoke(target, arguments)


def _goodbye_for(reason: DisconnectReason | None, detail: str | None, detailed: bool) -> Close | None:
    """The Close message ASP.NET sends for ``reason`` (``None``: nothing to send)."""
    match reason:
        case DisconnectReason.SERVER_SHUTDOWN:
            return Close(allow_reconnect=True)
        case DisconnectReason.TIMED_OUT:
            return Close(_CLOSED_WITH_ERROR, allow_reconnect=True)
        case DisconnectReason.TOO_SLOW:
            text = (
                f"{_CLOSED_WITH_ERROR} The client was too slow: {detail}." if detailed else _CLOSED_WITH_ERROR
            )
            return Close(text, allow_reconnect=True)
        case DisconnectReason.CLIENT_CLOSED | DisconnectReason.ABORTED:
            return Close()
    return None
