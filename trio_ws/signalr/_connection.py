"""One hub connection, from its handshake to its last message, in one nursery.

::

    HubConnection.run                       a task in the hub server's nursery
    └─ hub connection nursery               cancelled when the connection ends
       ├─ keep-alive task                   a Ping after keep_alive_interval with nothing sent
       ├─ one task per call or stream       at most max_parallel_invocations calls
       └─ (run itself)                      handshake, on_connected, then read and dispatch

    HubConnection.attach(transport)         in the transport's own task (a WebSocket handler)
    ├─ pump in                              transport.receive() -> inbound queue (1 chunk)
    └─ pump out                             send queue (Outbox) -> transport.send()

A connection lives in the hub server's nursery, not in the task of the
transport that carries its bytes: a transport is attached to it and pumps
bytes in and out while attached. That is what lets Long Polling carry one
connection over many requests, and a reconnecting WebSocket take over a
connection, without a rewrite.

Rules of this module:

* Reading is one task: it reads the handshake, then one message at a
  time, and hands each to the dispatcher before reading the next. When the
  dispatcher waits (every call slot busy), reading waits, and the transport
  stops receiving: back-pressure reaches the client through TCP.
* A connection ends once, for one reason (``close(reason)``, first caller
  wins). Ending cancels the nursery: calls, streams, the keep-alive. Then,
  shielded from cancellation and bounded by ``close_timeout``: the Close
  message is queued (when the transport can still carry it; a client too
  slow to read gets none: what is queued is dropped and its transport
  aborted at once, ``Transport.abort``), client
  results still awaited fail, the connection leaves the backplane (and so
  its groups), ``on_disconnected`` runs, and the Close message is given
  time to go out.
* When its transport goes (the client closed it, it broke, or the task
  carrying it was cancelled) the connection ends with it: ``CLIENT_CLOSED``
  or ``TRANSPORT_FAILED``. The transports that can resume a connection
  (Long Polling between polls, stateful reconnect) will instead wait, at
  most a disconnect timeout, for the next one to attach.
* The client timeout starts with the client's first Ping, as ASP.NET's
  does, and counts only time spent waiting for the client's bytes.
* A peer's mistake (bad handshake, malformed message, a message over the
  size limit) is logged at INFO without a traceback, and answered as
  ASP.NET answers it: a handshake refusal, or a Close message with
  "Connection closed with an error." (plus the reason, with detailed errors).
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
from ._hub import CallInfo, HubCallerContext, current_call
from ._options import SlowClientPolicy
from ._outbox import Outbox
from ._protocol.errors import HandshakeError, ProtocolError
from ._protocol.handshake import CANCELED, HandshakeReader, choose_protocol, encode_response
from ._protocol.messages import Close, HubMessage, Ping, TransferFormat

if TYPE_CHECKING:
    from .._request import Request
    from ._backplane import SerializedMessage
    from ._protocol.codec import HubProtocol, MessageReader
    from ._server import HubServer
    from ._transport import Transport

__all__ = ["ConnectionGone", "HubConnection", "TransportInUse"]

logger = logging.getLogger("trio_ws.signalr")

_CHUNK = 64 * 1024  # most bytes joined into one transport write
_CLOSED_WITH_ERROR = "Connection closed with an error."


class ConnectionGone(Exception):
    """The connection has ended: a transport cannot attach to it (HTTP answers 404)."""


class TransportInUse(Exception):
    """The connection already has a transport attached (HTTP answers 409)."""


class _TransportLost:
    """Put in the inbound queue, after the data, when the client closes the transport."""


class _Timeout(Exception):
    pass


def new_id() -> str:
    """A connection id or token: 16 random bytes in URL-safe base64, as ASP.NET makes them."""
    return secrets.token_urlsafe(16)


class HubConnection:
    """One client's connection to a hub, whatever transport carries it."""

    def __init__(
        self,
        server: HubServer,
        *,
        user_id: str | None = None,
        request: Request | None = None,
        token_is_id: bool = False,
    ) -> None:
        self.server = server
        self.connection_id = new_id()
        # Negotiate version 0 has no token: the client uses the connection id as ``?id=``.
        self.token = self.connection_id if token_is_id else new_id()
        self.user_id = user_id
        self.request = request
        self.protocol: HubProtocol | None = None
        self.transport_name: str | None = None
        self.context = HubCallerContext(self)
        self.dispatcher = Dispatcher(self)
        options = server.options
        self._options = options
        self._outbox = Outbox(options.send_buffer_size)
        self._inbound_send, self._inbound = trio.open_memory_channel[bytes | _TransportLost](1)
        self._transport: Transport | None = None
        self._attached = trio.Event()  # a transport has attached, once
        self._abandoned = False  # too slow: its transport is aborted, not closed
        self._pumps: trio.CancelScope | None = None
        self._formats: frozenset[TransferFormat] = frozenset()
        self._transport_pings = True
        self._transport_gone = False
        self._binary = False
        self._reader: MessageReader | None = None
        self._scope = trio.CancelScope()
        self._tasks: trio.Nursery | None = None
        self._reason: DisconnectReason | None = None
        self._detail: str | None = None
        self._goodbye: Close | None = None
        self._registered = False
        self._connected = False
        self._client_timeout_armed = False
        self._last_received = self._last_sent = -math.inf
        self._flushed = trio.Event()  # the transport has written the last message
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
        return self._transport is not None

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
                    if await self._wait_for_transport() and await self._handshake():
                        await self._serve()
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
        self._scope.cancel()

    def start_task(self, function: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start a task in the connection's nursery (calls and streams)."""
        assert self._tasks is not None
        self._tasks.start_soon(function, *args)

    def arm_client_timeout(self) -> None:
        """The client pinged: from now on, silence for ``client_timeout`` ends the connection."""
        self._client_timeout_armed = True

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
        timeout = options.handshake_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout):
            try:
                while (request := reader.next_request()) is None:
                    chunk = await self._next_chunk(timed=False)
                    if chunk is None:
                        return False
                    reader.receive_data(chunk)
                protocol = choose_protocol(request, self.server.protocols, self._formats)
            except HandshakeError as exc:
                reply = exc.reply
                if str(exc) != exc.reply and options.detailed_errors:
                    reply = error_text(exc.reply, exc, detailed=True)
                logger.info("%s: handshake refused: %s", self, exc)
                self._outbox.close(encode_response(reply))
                return False
            self.protocol = protocol
            self._binary = protocol.transfer_format is TransferFormat.BINARY
            self._reader = protocol.reader(options.max_message_size)
            self._reader.receive_data(reader.take_rest())
            self._outbox.put_nowait(encode_response())
            self._last_sent = trio.current_time()
            return True
        logger.info("%s: handshake refused: not completed within handshake_timeout", self)
        self._outbox.close(encode_response(CANCELED))
        return False

    async def _serve(self) -> None:
        assert self.protocol is not None
        logger.info(
            "%s: connected to %s over %s with %s%s",
            self,
            type(self.server.hub).__name__,
            self.transport_name,
            self.protocol.name,
            f" as user {self.user_id!r}" if self.user_id is not None else "",
        )
        await self.server.backplane.add_connection(self)
        self._registered = True
        async with trio.open_nursery() as nursery:
            self._tasks = nursery
            if self._options.keep_alive_interval is not None:
                # From the handshake on, as ASP.NET: a slow on_connected must not look like a dead server.
                nursery.start_soon(self._keep_alive, self._options.keep_alive_interval)
            if not await self._call_on_connected():
                return
            self._connected = True
            await self._read_messages()
            nursery.cancel_scope.cancel()

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
        assert reader is not None
        try:
            while not self.closing:
                message = reader.next_message()
                if message is None:
                    chunk = await self._next_chunk(timed=True)
                    if chunk is None:
                        return
                    reader.receive_data(chunk)
                    continue
                await self.dispatcher.dispatch(message)
        except ProtocolError as exc:
            logger.info("%s: closed: the client broke the protocol: %s", self, exc)
            self.close(DisconnectReason.PROTOCOL_ERROR, str(exc))
            self._goodbye = Close(
                error_text(_CLOSED_WITH_ERROR, exc, detailed=self._options.detailed_errors),
                allow_reconnect=True,
            )
        except _Timeout:
            logger.info("%s: closed: nothing from the client for %s s", self, self._options.client_timeout)
            self.close(DisconnectReason.TIMED_OUT)

    async def _next_chunk(self, *, timed: bool) -> bytes | None:
        """The client's next bytes; ``None`` once its transport has closed (the connection ends)."""
        timeout = self._options.client_timeout
        deadline = math.inf
        if timed and self._client_timeout_armed and timeout is not None:
            deadline = self._last_received + timeout
        with trio.move_on_at(deadline):
            item = await self._inbound.receive()
            if isinstance(item, _TransportLost):
                self.close(DisconnectReason.CLIENT_CLOSED)
                return None
            self._last_received = trio.current_time()
            return item
        raise _Timeout

    async def _keep_alive(self, interval: float) -> None:
        assert self.protocol is not None
        ping = self.protocol.encode(Ping())
        while True:
            await trio.sleep_until(self._last_sent + interval)
            if trio.current_time() >= self._last_sent + interval:
                # A full queue means the transport is busy sending anyway: no Ping needed.
                if self._transport_pings:
                    self._outbox.put_nowait(ping)
                self._last_sent = trio.current_time()

    async def _finish(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(self._options.close_timeout):
            reason = self._reason
            if reason is DisconnectReason.TOO_SLOW:
                # It is not reading: a goodbye would wait behind everything queued. Drop it all,
                # and the transport at once.
                self._abandoned = True
                self._outbox.discard()
                if self._pumps is not None:
                    self._pumps.cancel()
            elif self._transport_gone or self.protocol is None:
                self._outbox.close()
            else:
                goodbye = self._goodbye or _goodbye_for(reason, self._detail, self._options.detailed_errors)
                self._outbox.close(None if goodbye is None else self.protocol.encode(goodbye))
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
            if not (self._transport_gone or self._abandoned) and self._attached.is_set():
                await self._flushed.wait()
        self._done.set()
        if self._pumps is not None:
            self._pumps.cancel()  # the goodbye had its time: stop pumping, read or not
        self.server.forget(self)
        if self._connected:
            detail = f" ({self._detail})" if self._detail else ""
            logger.info("%s: closed: %s%s", self, reason.value if reason else "never connected", detail)

    # -- sending ----------------------------------------------------------------------------

    async def send_message(self, message: HubMessage) -> None:
        """Encode ``message`` and queue it, waiting for room (see ``send_bytes``).

        Raises:
            TypeError, ValueError: a value in the message cannot be encoded.
        """
        assert self.protocol is not None
        await self.send_bytes(self.protocol.encode(message))

    async def send_bytes(self, data: bytes, *, droppable: bool = False) -> None:
        """Queue encoded bytes, waiting at most ``slow_client_timeout`` for room.

        If no room comes, the connection is closed as too slow and the bytes
        are dropped; the caller carries on (it will be cancelled if it is
        one of this connection's own tasks).
        """
        if self._outbox.put_nowait(data, droppable=droppable):
            self._last_sent = trio.current_time()
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(self._options.slow_client_timeout):
            await self._outbox.put(data, droppable=droppable)
            self._last_sent = trio.current_time()
            return
        self._too_slow(f"no room in its send buffer for {self._options.slow_client_timeout:g} s")

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
        if self._outbox.put_nowait(data, droppable=True):
            self._last_sent = trio.current_time()
            return True
        policy = self._options.slow_client
        if policy is SlowClientPolicy.DROP_OLDEST:
            while not self._outbox.put_nowait(data, droppable=True):
                if not self._outbox.drop_oldest():
                    # Only replies wait in the queue: let this one in past the limit; the next
                    # send to many will drop it first.
                    self._outbox.force_put(data, droppable=True)
                    break
            self._last_sent = trio.current_time()
            return True
        if policy is SlowClientPolicy.CLOSE:
            self._too_slow("its send buffer is full")
            return True
        return False

    async def deliver(self, message: SerializedMessage) -> None:
        if self.protocol is None or self.closing:
            await trio.lowlevel.checkpoint()
            return
        await self.send_bytes(message.encode(self.protocol), droppable=True)

    async def invoke(self, target: str, arguments: Sequence[Any]) -> Any:
        return await self.dispatcher.invoke(target, arguments)

    # -- transports -------------------------------------------------------------------------

    async def attach(self, transport: Transport, *, request: Request | None = None) -> None:
        """Carry this connection's bytes over ``transport`` until one of them ends.

        Runs in the transport's own task (a WebSocket handler, say): one task
        pumps the client's bytes in, another pumps queued messages out. When
        the connection ends, its last messages (the Close) are sent first;
        then the transport is closed. ``request`` is the HTTP request that
        opened the transport: hub code sees it as ``context.request`` (the
        official TestHub reads its headers and cookies there).

        Raises:
            ConnectionGone: the connection has already ended.
            TransportInUse: another transport is attached.
        """
        if self.closing:
            raise ConnectionGone(str(self))
        if self._transport is not None:
            raise TransportInUse(str(self))
        self._transport = transport
        if request is not None:
            self.request = request
        self.transport_name = self.transport_name or transport.name
        self._attached.set()
        self._formats = transport.transfer_formats
        self._transport_pings = transport.keep_alive
        try:
            async with trio.open_nursery() as pumps:
                # Cancelled by whichever ends first: the transport (pump in), the connection
                # once its Close is sent (pump out), or the connection's end after close_timeout.
                self._pumps = pumps.cancel_scope
                if self._done.is_set() or self._abandoned:
                    pumps.cancel_scope.cancel()
                pumps.start_soon(self._pump_out, transport, pumps.cancel_scope)
                await self._pump_in(transport)
                pumps.cancel_scope.cancel()
        finally:
            # Nothing can reach the client any more, whatever ended the attachment (even the
            # transport's task being cancelled): the connection ends too. A transport that can
            # resume a connection (Long Polling, stateful reconnect) will keep it instead.
            self._transport = None
            self._pumps = None
            self._transport_gone = True
            self._outbox.discard()
            self._flushed.set()
            if not self.closing:
                self._transport_broke("the transport was detached")
            if self._abandoned:
                await transport.abort()
            else:
                await transport.aclose()

    async def _pump_in(self, transport: Transport) -> None:
        while True:
            try:
                data = await transport.receive()
            except trio.BrokenResourceError as exc:
                self._transport_broke(f"while receiving: {exc}" if str(exc) else "while receiving")
                return
            if data is None:
                # The client closed cleanly: what it sent before still counts, so the end
                # goes in the queue behind its data (unless the reader is stuck).
                self._transport_gone = True
                with trio.move_on_after(self._options.close_timeout):
                    await self._send_inbound(_TransportLost())
                    return
                self.close(DisconnectReason.CLIENT_CLOSED)
                return
            if not await self._send_inbound(data):
                return

    async def _send_inbound(self, item: bytes | _TransportLost) -> bool:
        try:
            await self._inbound_send.send(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _pump_out(self, transport: Transport, pumps: trio.CancelScope) -> None:
        try:
            while True:
                try:
                    chunk = await self._outbox.get(_CHUNK)
                except trio.EndOfChannel:
                    self._flushed.set()
                    break
                await transport.send(chunk, binary=self._binary)
        except trio.BrokenResourceError as exc:
            self._transport_broke(f"while sending: {exc}" if str(exc) else "while sending")
        pumps.cancel()

    def _transport_broke(self, detail: str) -> None:
        self._transport_gone = True
        if not self.closing:
            logger.info("%s: the transport failed: %s", self, detail)
        self.close(DisconnectReason.TRANSPORT_FAILED, detail)


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
