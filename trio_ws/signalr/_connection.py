"""One hub connection, from its handshake to its last message, across the transports that carry it.

::

    HubConnection.run                       a task in the hub server's nursery: reads and dispatches
    └─ hub connection nursery               cancelled when the connection ends
       ├─ watchdog task                     the timers: Ping, client timeout, time without a transport
       ├─ ack task                          stateful reconnect only: an Ack a second after new messages
       └─ one task per call or stream       at most max_parallel_invocations calls

    HubConnection.attach(transport)         in the transport's own task (a WebSocket handler)
    └─ the pump                             writes what is queued (Sender.pump), while attached

A connection lives in the hub server's nursery, not in the task of the
transport that carries its bytes. A transport is *attached* to it for as
long as it carries them: a WebSocket for its lifetime (or, under stateful
reconnect, until a new one takes over); a Server-Sent Events stream with
the POSTs beside it; the long polls of Long Polling, one after the other.

Rules of this module:

* Reading is the connection's own task: it calls ``receive()`` on whatever
  transport is attached now, cuts the bytes into messages, and hands each
  to the dispatcher before reading the next. The dispatcher never waits for
  a hub method (what steers the connection, Acks above all, is applied at
  once); when calls pile up in its backlog, reading waits, and the
  transport stops receiving: back-pressure reaches the client through TCP
  (or its POSTs). Writing is the ``Sender``'s (``_sender.py``).
* A connection ends once, for one reason (``close(reason)``, first caller
  wins). Ending cancels the nursery: calls, streams, the keep-alive. Then,
  shielded from cancellation and bounded by ``close_timeout``: the Close
  message is queued (when a transport can still carry it; a client too
  slow to read gets none, and its transport is aborted at once), client
  results still awaited fail, the connection leaves the backplane (and so
  its groups), ``on_disconnected`` runs, and the Close message is given
  time to go out.
* When its transport goes, the connection ends with it: ``CLIENT_CLOSED``
  when the client closed it cleanly, ``TRANSPORT_FAILED`` when it broke or
  its task was cancelled. Two things let a connection outlive a transport,
  at most ``disconnect_timeout`` each time: under stateful reconnect a
  dropped WebSocket (a clean close still ends it), replaced by the next
  one to the same token; and Long Polling between two polls (``set_away``).
  Past that, it ends with ``TRANSPORT_FAILED`` or ``TIMED_OUT``.
* The first transport must come within ``disconnect_timeout`` of the
  connection's creation (after negotiate); the handshake clock starts when
  it attaches. Later transports must be of the same kind (ASP.NET's
  "Cannot change transports mid-connection").
* The timers (the keep-alive Ping, the client timeout, the time without a
  transport) live in one watchdog task, which sleeps until the earliest is
  due and looks again: reading and sending only note the time, so a message
  costs no cancel scope.
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

import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._dispatch import Dispatcher
from ._errors import DisconnectReason, error_text
from ._http_transports import LongPollingTransport, PostInbox
from ._hub import CallInfo, HubCallerContext, current_call
from ._options import SlowClientPolicy
from ._protocol.errors import HandshakeError, ProtocolError
from ._protocol.handshake import CANCELED, HandshakeReader, choose_protocol, encode_response
from ._protocol.messages import Ack, Close, HubMessage, Ping, TransferFormat, is_trackable
from ._replay import Replay
from ._sender import Sender, describe_break
from ._transport import ConnectionGone, TransportInUse, TransportMismatch

if TYPE_CHECKING:
    from .._request import Request
    from ._backplane import SerializedMessage
    from ._protocol.codec import HubProtocol, MessageReader
    from ._server import HubServer
    from ._transport import Inbound, Transport

__all__ = ["Attachment", "ConnectionGone", "HubConnection", "TransportInUse", "TransportMismatch"]

logger = logging.getLogger("trio_ws.signalr")

_CLOSED_WITH_ERROR = "Connection closed with an error."
# How long after new messages from a stateful client their Ack goes out (ASP.NET's timer).
_ACK_DELAY = 1.0
# Messages dispatched between two schedule points of the reader, at most (dispatching itself
# waits only when it must).
_MESSAGES_PER_TURN = 64


def new_id() -> str:
    """A connection id or token: 16 random bytes in URL-safe base64, as ASP.NET makes them."""
    return secrets.token_urlsafe(16)


class Attachment:
    """One transport attached to a connection, for as long as it carries it.

    Attributes:
        transport: Where the client's bytes come from (``receive()``).
        push: The same transport when the connection's pump writes to it
            (``send()``: a WebSocket), ``None`` when it takes what is queued
            itself (a poll, an event stream).
        scope: The transport's own work for the connection (its pump, its
            stream): cancelled when the transport leaves.
        gone: Set when the transport has left.
        abandoned: Too slow, or replaced: abort it, never close it politely.
    """

    __slots__ = ("abandoned", "gone", "push", "scope", "transport")

    def __init__(self, transport: Inbound, push: Transport | None) -> None:
        self.transport = transport
        self.push = push
        self.scope = trio.CancelScope()
        self.gone = trio.Event()
        self.abandoned = False

    def drop(self) -> None:
        """Stop whatever the connection does with this transport."""
        self.scope.cancel()
        self.gone.set()


class HubConnection:
    """One client's connection to a hub, whatever transport carries it."""

    def __init__(
        self,
        server: HubServer,
        *,
        user_id: str | None = None,
        request: Request | None = None,
        token_is_id: bool = False,
        stateful_reconnect: bool = False,
        connection_id: str | None = None,
        token: str | None = None,
    ) -> None:
        self.server = server
        # Minted here, or by negotiate (a pending connection, opened where its transport landed).
        self.connection_id = connection_id or new_id()
        # Negotiate version 0 has no token: the client uses the connection id as ``?id=``.
        self.token = token or (self.connection_id if token_is_id else new_id())
        self.user_id = user_id
        self.request = request
        self.protocol: HubProtocol | None = None
        self.transport_name: str | None = None
        #: Negotiated with ``useStatefulReconnect``; in force once the handshake is of version 2.
        self.stateful_reconnect = stateful_reconnect
        self.context = HubCallerContext(self)
        self.dispatcher = Dispatcher(self)
        self.sender = Sender(self)
        options = server.options
        self._options = options
        self._attachment: Attachment | None = None
        self._attached = trio.Event()  # a transport has attached, once
        self._formats: frozenset[TransferFormat] = frozenset()
        self._pings = True  # the attached transport wants the hub's Pings
        self._reader: MessageReader | None = None
        self._arrived = trio.Event()  # a transport attached since the last one left
        self._waiting = False  # the reader waits for the client's bytes (the client timeout runs)
        self._watchdog_woken = trio.Event()  # a timer changed: the watchdog looks again
        self._away_since: float | None = None  # between transports (or polls) since then
        self._away_reason = DisconnectReason.TRANSPORT_FAILED
        self._away_detail = ""
        self._scope = trio.CancelScope()
        self._tasks: trio.Nursery | None = None
        self._reason: DisconnectReason | None = None
        self._detail: str | None = None
        self._goodbye: Close | None = None
        self._registered = False
        self._connected = False
        self._client_timeout_armed = False
        self._last_received = -math.inf
        self._ack_wanted = trio.Event()
        self._inbox: PostInbox | None = None
        self._flushed = trio.Event()  # the last message queued has gone to the transport
        self._done = trio.Event()

    def __str__(self) -> str:
        return f"hub connection {self.connection_id}"

    @property
    def closing(self) -> bool:
        """Whether the connection has begun to end."""
        return self._reason is not None or self._done.is_set()

    @property
    def has_transport(self) -> bool:
        """Whether a transport is attached now (a second WebSocket is answered 409 before its upgrade)."""
        return self._attachment is not None

    @property
    def current_transport(self) -> Inbound | None:
        """The transport attached now, if any."""
        return None if self._attachment is None else self._attachment.transport

    @property
    def resumable(self) -> bool:
        """Whether a new transport may take this connection over (stateful reconnect is in force)."""
        return self.sender.replay is not None and not self.closing

    @property
    def reason(self) -> DisconnectReason | None:
        """Why it ended; ``None`` while it runs, or if it never got past the handshake."""
        return self._reason

    # -- the connection's life ------------------------------------------------------------------

    async def run(self) -> None:
        """The connection's whole life; runs in the hub server's nursery."""
        try:
            with self._scope:
                try:
                    if await self._wait_for_transport():
                        async with trio.open_nursery() as nursery:
                            self._tasks = nursery
                            nursery.start_soon(self._watch)
                            if await self._handshake():
                                await self._serve()
                            nursery.cancel_scope.cancel()
                except Exception:
                    logger.exception("%s: internal error; please report a bug to trio_ws", self)
                    self.close(DisconnectReason.ABORTED, "internal error")
        finally:
            if self._reason is None and self._connected:
                # Cancelled from outside: the hub server's nursery is being torn down.
                self._reason = DisconnectReason.SERVER_SHUTDOWN
            await self._finish()

    def close(self, reason: DisconnectReason, detail: str | None = None) -> None:
        """End the connection for ``reason`` (the first reason given wins)."""
        if self._reason is not None or self._done.is_set():
            return
        self._reason, self._detail = reason, detail
        if reason is DisconnectReason.TOO_SLOW:
            # It is not reading: a goodbye would wait behind everything queued. Drop it all,
            # and the transport at once.
            self.sender.outbox.discard()
            attachment = self._attachment
            if attachment is not None:
                attachment.abandoned = True
                attachment.drop()
        self._scope.cancel()

    def stop(self) -> None:
        """The client ended the connection without a word over its transport (a Long Polling
        ``DELETE``): ``CLIENT_CLOSED``, and no goodbye is sent."""
        attachment = self._attachment
        if attachment is not None:
            self.transport_lost(attachment, broken=False, detail="stopped by the client")
        else:
            self.close(DisconnectReason.CLIENT_CLOSED)

    def post_inbox(self) -> PostInbox:
        """Where the client's bytes go when they come in POSTs (Server-Sent Events, Long Polling)."""
        if self._inbox is None:
            self._inbox = PostInbox()
            if self._done.is_set():
                self._inbox.close()
        return self._inbox

    def start_task(self, function: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start a task in the connection's nursery (calls and streams)."""
        assert self._tasks is not None
        self._tasks.start_soon(function, *args)

    def arm_client_timeout(self) -> None:
        """The client pinged: from now on, silence for ``client_timeout`` ends the connection."""
        if not self._client_timeout_armed:
            self._client_timeout_armed = True
            self._watchdog_woken.set()

    async def _wait_for_transport(self) -> bool:
        """Wait for the first transport, at most ``disconnect_timeout`` (a negotiate never followed up)."""
        timeout = self._options.disconnect_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self._attached.wait()
            return True
        logger.info("%s: gone: no transport came within disconnect_timeout (%s s)", self, timeout)
        return False

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
                logger.info("%s: handshake refused: %s", self, exc)
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

    async def _serve(self) -> None:
        assert self.protocol is not None
        logger.info(
            "%s: connected to %s over %s with %s%s%s",
            self,
            type(self.server.hub).__name__,
            self.transport_name,
            self.protocol.name,
            ", stateful reconnect on" if self.sender.replay is not None else "",
            f", as user {self.user_id!r}" if self.user_id is not None else "",
        )
        await self.server.backplane.add_connection(self)
        self._registered = True
        # From the handshake on, as ASP.NET: a slow on_connected must not look like a dead server.
        self._watchdog_woken.set()  # Pings are due from now on
        if self.sender.replay is not None:
            self.start_task(self._acknowledge, self.sender.replay)
        if not await self._call_on_connected():
            return
        self._connected = True
        await self._read_messages()

    async def _call_on_connected(self) -> bool:
        token = current_call.set(CallInfo(self, in_on_connected=True))
        try:
            await self.server.hub.on_connected()
        except Exception as exc:
            logger.error("%s: on_connected failed", self, exc_info=exc)
            text = error_text(_CLOSED_WITH_ERROR, exc, detailed=self._options.detailed_errors)
            self._goodbye = Close(text, allow_reconnect=False)  # as ASP.NET: the hub cannot serve it
            self.close(DisconnectReason.ABORTED, f"on_connected raised {exc!r}")
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
                    if not self._ack_wanted.is_set() and is_trackable(message):
                        self._ack_wanted.set()
                await dispatch(message)
        except ProtocolError as exc:
            logger.info("%s: closed: the client broke the protocol: %s", self, exc)
            self.close(DisconnectReason.PROTOCOL_ERROR, str(exc))
            self._goodbye = Close(
                error_text(_CLOSED_WITH_ERROR, exc, detailed=self._options.detailed_errors),
                allow_reconnect=True,
            )

    async def _receive(self) -> bytes | None:
        """The client's next bytes, from whichever transport carries them now.

        Returns ``None`` once the connection is ending (its transport closed,
        broke, or did not come back in time). Waits while a stateful client
        is between transports. Bytes from a transport that was replaced
        meanwhile are dropped: the client sends them again on the new one.
        """
        while not self.closing:
            attachment = self._attachment
            if attachment is None:
                await self._arrived.wait()  # a transport, or the end (the watchdog times it)
                continue
            self._waiting = True
            try:
                data = await attachment.transport.receive()
            except trio.BrokenResourceError as exc:
                self.transport_lost(attachment, broken=True, detail=describe_break("while receiving", exc))
                continue
            finally:
                self._waiting = False
            if self._attachment is not attachment:
                continue
            if data is None:
                self.transport_lost(attachment, broken=False, detail="closed by the client")
                continue
            self._last_received = trio.current_time()
            return data
        return None

    async def _watch(self) -> None:
        """The connection's timers, in one task: the Ping, the client timeout, the time away.

        Each is noted as a time by whoever changes it (the reader, the
        sender, the transports); this task sleeps until the earliest is due,
        then acts or looks again. Something that moves a timer sooner (a
        client's first Ping, a transport leaving) wakes it.
        """
        options = self._options
        interval = options.keep_alive_interval
        timeout = options.client_timeout
        disconnect = options.disconnect_timeout
        sender = self.sender
        ping: bytes | None = None
        while True:
            self._watchdog_woken = trio.Event()
            now = trio.current_time()
            due = math.inf
            away = self._away_since
            if away is not None and disconnect is not None:
                if now >= away + disconnect:
                    logger.info("%s: gone: %s (%s s)", self, self._away_detail, disconnect)
                    self.close(self._away_reason, f"{self._away_detail} ({disconnect:g} s)")
                    if self._attachment is not None:  # Long Polling: nobody will take a goodbye
                        self._attachment.drop()
                        self._attachment = self.sender.attachment = None
                    return
                due = away + disconnect
            if self.protocol is not None:
                if interval is not None and self._pings and away is None:
                    if now >= sender.last_sent + interval:
                        if ping is None:
                            ping = self.protocol.encode(Ping())
                        # A full queue means the transport is busy sending anyway: no Ping needed.
                        sender.try_put(ping, trackable=False)
                        sender.last_sent = now
                    due = min(due, sender.last_sent + interval)
                if self._client_timeout_armed and self._pings and timeout is not None and away is None:
                    silent_until = self._last_received + timeout
                    if now >= silent_until and self._waiting:
                        logger.info("%s: closed: nothing from the client for %s s", self, timeout)
                        self.close(DisconnectReason.TIMED_OUT)
                        return
                    # While the reader is busy (every call slot taken) the client is not timed out;
                    # look again a little later.
                    due = min(due, silent_until if now < silent_until else now + min(1.0, timeout))
            with trio.move_on_at(due):
                await self._watchdog_woken.wait()

    async def _acknowledge(self, replay: Replay) -> None:
        """Stateful reconnect: tell the client what arrived, a second after something new did."""
        assert self.protocol is not None
        while True:
            await self._ack_wanted.wait()
            await trio.sleep(_ACK_DELAY)
            self._ack_wanted = trio.Event()
            sequence_id = replay.ack_due()
            if sequence_id is None:
                continue
            ack = self.protocol.encode(Ack(sequence_id))
            if self._attachment is not None and self.sender.try_put(ack, trackable=False):
                replay.acked(sequence_id)
            else:
                self._ack_wanted.set()  # away, or no room: try again a second later

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
            self.dispatcher.fail_pending()
            if self._registered:
                await self.server.backplane.remove_connection(self)
            if self._connected and reason is not None:
                token = current_call.set(CallInfo(self))
                try:
                    await self.server.hub.on_disconnected(reason)
                except Exception as exc:
                    logger.error("%s: on_disconnected failed", self, exc_info=exc)
                finally:
                    current_call.reset(token)
            attachment = self._attachment
            if attachment is not None and not attachment.abandoned and self._attached.is_set():
                transport = attachment.transport
                # Shutting down, a Long Polling client between polls can't come back for its
                # goodbye (new requests get 503): wait only for a poll that is held.
                if not (
                    isinstance(transport, LongPollingTransport)
                    and transport.held is None
                    and self.server.closing
                ):
                    await self._flushed.wait()
        self._done.set()
        if self._inbox is not None:
            self._inbox.close()  # POSTs still waiting are answered 404
        attachment = self._attachment
        if attachment is not None:
            attachment.scope.cancel()  # the goodbye had its time: stop pumping, read or not
        self.server.forget(self)
        if self._connected:
            detail = f" ({self._detail})" if self._detail else ""
            logger.info("%s: closed: %s%s", self, reason.value if reason else "never connected", detail)

    # -- sending ----------------------------------------------------------------------------

    async def send_message(self, message: HubMessage) -> None:
        """Encode ``message`` and send it, waiting for room (see ``send_bytes``).

        Raises:
            TypeError, ValueError: a value in the message cannot be encoded.
        """
        assert self.protocol is not None
        await self.send_bytes(self.protocol.encode(message), trackable=is_trackable(message))

    async def send_bytes(self, data: bytes, *, droppable: bool = False, trackable: bool = True) -> None:
        """Send encoded bytes to this client, waiting at most ``slow_client_timeout`` for room.

        If no room comes, the connection is closed as too slow and the bytes
        are dropped; the caller carries on (it will be cancelled if it is
        one of this connection's own tasks).
        """
        if not await self.sender.send(data, droppable=droppable, trackable=trackable):
            self._too_slow(f"nothing could go out to it for {self._options.slow_client_timeout:g} s")

    def _too_slow(self, why: str) -> None:
        if not self.closing:
            logger.info("%s: closing: the client is too slow: %s", self, why)
            self.close(DisconnectReason.TOO_SLOW, why)

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

    async def invoke(self, target: str, arguments: Sequence[Any]) -> Any:
        return await self.dispatcher.invoke(target, arguments)

    # -- transports -------------------------------------------------------------------------

    def connect_transport(
        self, transport: Inbound, *, request: Request | None = None, push: Transport | None = None
    ) -> Attachment:
        """Attach ``transport``: from now on the client's bytes come from it and go to it.

        ``push`` is the transport itself when the connection writes to it
        (``attach`` does), ``None`` when it takes what is queued itself.
        ``request`` is the HTTP request that opened it: hub code sees it as
        ``context.request``. Under stateful reconnect, a new transport
        replaces the one attached (which is dropped) and starts with the
        Sequence message and the replay.

        Raises:
            ConnectionGone: the connection has ended.
            TransportInUse: another transport is attached and may not be replaced.
            TransportMismatch: the connection is carried by another kind of transport.
        """
        if self.closing:
            raise ConnectionGone(str(self))
        if self.transport_name is not None and transport.name != self.transport_name:
            raise TransportMismatch(f"{self} is carried by {self.transport_name}, not {transport.name}")
        current = self._attachment
        if current is not None:
            if not self.resumable:
                raise TransportInUse(str(self))
            logger.info("%s: a new %s takes over from the one attached", self, transport.name)
            current.abandoned = True
            current.drop()
        attachment = Attachment(transport, push)
        resuming = self._attached.is_set() and self.sender.replay is not None
        self._attachment = self.sender.attachment = attachment
        if request is not None:
            self.request = request
        self.transport_name = transport.name
        self._formats = transport.transfer_formats
        self._pings = transport.keep_alive
        if resuming:
            if self._away_since is not None:
                logger.info(
                    "%s: the client is back after %.3g s", self, trio.current_time() - self._away_since
                )
            assert self.sender.replay is not None
            self.sender.resume()
            self.sender.replay.reconnected()
        self._away_since = None
        self._last_received = trio.current_time()
        self._attached.set()
        self._arrived.set()
        self._watchdog_woken.set()
        self.sender.moved()
        # A reader still waiting on the replaced transport is freed when its task aborts it.
        return attachment

    def transport_lost(self, attachment: Attachment, *, broken: bool, detail: str) -> None:
        """``attachment``'s transport has gone: it closed (``broken=False``) or broke.

        The connection ends with it (``CLIENT_CLOSED`` or ``TRANSPORT_FAILED``),
        unless stateful reconnect lets a new transport take it over within
        ``disconnect_timeout``. Nothing happens if that transport was
        replaced, or reported gone, already.
        """
        if self._attachment is not attachment:
            return
        self._attachment = self.sender.attachment = None
        attachment.drop()
        self.sender.moved()
        if self.closing:
            return
        if broken and self.resumable:
            logger.info(
                "%s: the transport dropped (%s); waiting up to %s s for the client to come back",
                self,
                detail,
                self._options.disconnect_timeout,
            )
            self.sender.outbox.clear()  # what matters is in the replay buffer
            self._arrived = trio.Event()
            self.set_away(
                True, DisconnectReason.TRANSPORT_FAILED, "no new transport within disconnect_timeout"
            )
            return
        if broken:
            logger.info("%s: the transport failed: %s", self, detail)
            self.close(DisconnectReason.TRANSPORT_FAILED, detail)
        else:
            self.close(DisconnectReason.CLIENT_CLOSED)

    def set_away(
        self, away: bool, reason: DisconnectReason = DisconnectReason.TIMED_OUT, detail: str = ""
    ) -> None:
        """The client is between transports (or polls): past ``disconnect_timeout`` of that, the
        connection ends with ``reason``. ``set_away(False)`` when it is back."""
        if away:
            if self._away_since is None:
                self._away_since = trio.current_time()
                self._away_reason, self._away_detail = reason, detail
        else:
            self._away_since = None
        self._watchdog_woken.set()

    def flushed(self) -> None:
        """The transport has taken the last message queued (the connection's goodbye)."""
        self._flushed.set()

    async def attach(self, transport: Transport, *, request: Request | None = None) -> None:
        """Carry this connection's bytes over ``transport`` until one of them ends.

        Runs in the transport's own task (a WebSocket handler, say), which
        writes what is queued for the client (the pump); the connection's own
        task reads. When the connection ends, its last messages (the Close)
        are sent first; then the transport is closed (aborted, for a client
        too slow to read, or one replaced under stateful reconnect), and this
        returns once the connection is over (``on_disconnected`` has run),
        or, under stateful reconnect, once the transport has dropped. If
        this task is cancelled, the transport counts as broken.

        Raises:
            ConnectionGone: the connection has already ended.
            TransportInUse: another transport is attached.
            TransportMismatch: the connection is carried by another kind of transport.
        """
        attachment = self.connect_transport(transport, request=request, push=transport)
        try:
            with attachment.scope:
                await self.sender.pump(attachment)
        finally:
            # Nothing can reach the client over it any more, whatever ended the pump (even this
            # task being cancelled).
            self.transport_lost(attachment, broken=True, detail="the transport was detached")
            if attachment.abandoned:
                await transport.abort()
            else:
                await transport.aclose()
        if self.closing:
            await self._done.wait()  # return once the connection is over, not just its transport


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
