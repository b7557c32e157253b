"""The connection a WebSocket handler gets: trio-websocket's public surface on trio_ws's own protocol.

Handlers see what trio-websocket users know: ``get_message``,
``send_message``, ``ping``, ``pong``, ``aclose``, ``closed``, ``local``,
``remote``, ``path``, ``subprotocol``, ``handshake_headers``, ``is_client``,
``is_server``, ``async for``, and ``trio_websocket.ConnectionClosed`` with
its ``CloseReason``. ``ServerConnection`` is an instance of
``trio_websocket.WebSocketConnection`` for the type checks handlers may do,
but inherits nothing from it: it never calls its ``__init__`` and defines
every public member itself (a test fails when trio-websocket grows one).

Each part has its module, with its rules: the frames and the close states
are ``protocol.py``'s (no I/O), permessage-deflate ``deflate.py``'s, the
handshake ``handshake.py``'s, the inbox and outbox ``batching.py``'s, the
reader task ``reader.py``'s, and the close ``closing.py``'s. Here: the
public surface, the 101, the events the reader finds, and one rule of
sending: long messages go out in fragments of at most ``FRAGMENT_SIZE``
bytes (RFC 6455 section 5.4), so sending one never makes a second copy of
it whole: not when it is encoded to UTF-8, nor compressed, nor framed.
"""

from __future__ import annotations

import itertools
import logging
import random
import struct
from typing import TYPE_CHECKING

import trio
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed, Endpoint

from .._options import Options
from .closing import Closing, preserve_current_exception
from .deflate import Deflate
from .direct_socket import DirectSocket
from .handshake import Handshake
from .protocol import Close, Failure, Ping, Pong, Protocol, Received, State

if TYPE_CHECKING:
    from types import TracebackType

    from .._app.request import Request as HTTPRequest

logger = logging.getLogger("trio_ws.websocket")

__all__ = ["FRAGMENT_SIZE", "BaseConnection", "ServerConnection", "WebSocketConnection", "server_connection"]

# Longer messages go out in fragments of at most this many bytes.
FRAGMENT_SIZE = 64 * 1024
# No message of this many characters or bytes, or fewer, needs fragments (see _fragment_length).
_NEVER_FRAGMENTED = FRAGMENT_SIZE // 4
# Close codes that end `async for message in ws` quietly, as in the websockets library:
# Normal Closure, Going Away, and a Close frame with no code at all (a browser's plain close()).
_NORMAL_CLOSES = frozenset({1000, 1001, 1005})


class WebSocketConnection(trio_websocket.WebSocketConnection):
    """The connection a handler gets: trio-websocket's ``WebSocketConnection``, plus ``async for``.

    Everything trio-websocket documents works as documented. In addition,
    a handler can read messages with ``async for message in ws:``. The loop
    ends quietly when the connection closes normally (1000, 1001, or a
    Close frame without a code, as the ``websockets`` library's loop does);
    any other close raises ``ConnectionClosed``, as ``get_message()`` does.
    """

    __slots__ = ()

    def __aiter__(self) -> WebSocketConnection:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.get_message()
        except ConnectionClosed as exc:
            if exc.reason is not None and exc.reason.code in _NORMAL_CLOSES:
                raise StopAsyncIteration from None
            raise


class BaseConnection(Closing, WebSocketConnection):
    """What the server connection and the test client share: trio-websocket's public surface."""

    CONNECTION_ID = itertools.count()

    __slots__ = (
        "_agreed_subprotocol",
        "_handshake_headers",
        "_number",
        "_pings_in_flight",
        "_target",
        "_upgrade",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: Protocol,
        *,
        message_queue_size: int,
        read_size: int,
        early_bytes: bytes,
        close_timeout: float | None,
        upgrade: Handshake | None = None,
        target: str | None = None,
        subprotocol: str | None = None,
        handshake_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        # trio-websocket's __init__ is never called: nothing of its state is used.
        Closing.__init__(
            self,
            stream,
            protocol,
            message_queue_size=message_queue_size,
            read_size=read_size,
            early_bytes=early_bytes,
            close_timeout=close_timeout,
        )
        self._number = next(self.CONNECTION_ID)
        # The server's handshake, until the 101 has gone.
        self._upgrade = upgrade
        self._target = target
        self._agreed_subprotocol = subprotocol
        self._handshake_headers = handshake_headers
        # Pings in flight: payload -> the event its Pong sets (made on the first ping).
        self._pings_in_flight: dict[bytes, trio.Event] | None = None

    # -- trio-websocket's public surface ---------------------------------------------------

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection was or is being closed; ``None`` while it is open."""
        return self._closed

    @property
    def is_client(self) -> bool:
        return self._protocol.client

    @property
    def is_server(self) -> bool:
        return not self._protocol.client

    @property
    def local(self) -> Endpoint | str:
        """Our end of the connection (the stream's ``repr`` for a stream that is not a socket)."""
        return _endpoint(self._tcp, local=True)

    @property
    def remote(self) -> Endpoint | str:
        """The peer's end of the connection (the stream's ``repr`` for one that is not a socket)."""
        return _endpoint(self._tcp, local=False)

    @property
    def path(self) -> str | None:
        """The request target, with its query string (set once the handshake is accepted)."""
        return self._target

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, if any."""
        return self._agreed_subprotocol

    @property
    def handshake_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The headers of the server's handshake answer, names in lower case (a server gets none)."""
        return self._handshake_headers

    @property
    def extensions(self) -> list[str]:
        """The extensions in use on this connection, such as ``["permessage-deflate"]``."""
        return ["permessage-deflate"] if self._protocol.deflate is not None else []

    @property
    def closing(self) -> bool:
        """Whether a Close has been sent or received: the connection is on its way out."""
        return self._closed is not None or self._ending is not None

    def __str__(self) -> str:
        return f"{'client' if self._protocol.client else 'server'}-{self._number}"

    async def __aenter__(self) -> BaseConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def get_message(self) -> str | bytes:
        """The next message; ``ConnectionClosed`` once the connection has ended and none is left."""
        self._note_handler_progress()
        try:
            message = await self._take()
        except ConnectionClosed:
            if self._closed is None:
                # The peer's Close is waiting for us: let it be answered, then report it.
                self._event("_handler_caught_up").set()
                await self._event("_closing_done").wait()
                raise ConnectionClosed(self._closed) from None
            raise
        self._messages_taken += 1
        self._holding_message = True
        return message

    async def send_message(self, message: str | bytes) -> None:
        """Send a Text message for ``str``, a Binary one for ``bytes``."""
        if (
            isinstance(message, str | bytes)
            and len(message) > _NEVER_FRAGMENTED
            and len(message) > _fragment_length(message)
        ):
            await self._send_in_fragments(message)
        else:
            await super().send_message(message)
        if self.tally is not None:
            self.tally.messages_out += 1
        self._note_handler_progress()

    def _send_now(self, message: str | bytes, *, text: bool = False) -> int | None:
        """Send ``message`` without waiting, if nothing else is on its way: for a sender that must
        not write itself (``signalr/_transports/sender.py``), so never a checkpoint.

        Only on plain TCP, with the outbox empty, no write holding the socket, the connection open
        and a message that needs no fragments: then nothing else can be framed or written before
        this frame (see ``batching.py``), so the order holds, with permessage-deflate too. Not
        while received messages wait in the inbox either: their replies will follow, and
        ``send_message`` lets them leave in one write. Returns ``None`` when it sent nothing (send
        it with ``send_message``); otherwise how many of its bytes wait at the head of the outbox
        because the socket did not take them at once: the next write sends them first, and the
        caller sees that one comes (``_flush``). ``text``: ``message`` is text the caller has
        encoded as UTF-8 already, sent as a Text message (a hub's JSON, encoded once for every
        recipient of a broadcast).
        """
        if (
            self._outbox
            or self._inbox
            or self._closed is not None
            or self._upgrade is not None
            or type(self._io) is not DirectSocket
            or len(message) > _NEVER_FRAGMENTED
            or self._write_lock.locked()
        ):
            return None
        waiting = self._write_now(self._protocol.send_message(message, text=text))
        if self.tally is not None:
            self.tally.messages_out += 1
        self._note_handler_progress()
        return waiting

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a Ping and wait for its Pong (a Pong also answers every earlier ping in flight).

        Raises:
            ConnectionClosed: the connection is closed or closing: no pong will come.
            ValueError: a ping with the same payload is in flight.
        """
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        if self._ending is not None:
            raise ConnectionClosed(self._ending)
        pings = self._pings_in_flight
        if pings is None:
            pings = self._pings_in_flight = {}
        if payload in pings:
            raise ValueError(f"Payload value {payload!r} is already in flight.")
        if payload is None:
            payload = struct.pack("!I", random.getrandbits(32))
        event = pings[payload] = trio.Event()
        await self._write(self._protocol.send_ping(payload))
        await event.wait()

    async def pong(self, payload: bytes | None = None) -> None:
        """Send an unsolicited Pong."""
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        await self._write(self._protocol.send_pong(payload or b""))

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code`` and ``reason`` and wait for the peer's answer (at most
        ``close_timeout``); calling it again does nothing."""
        with preserve_current_exception():
            await self._close_and_wait(code, reason)

    async def _close_and_wait(self, code: int, reason: str | None) -> None:
        # The handler is done with the connection, so a waiting Close can be answered.
        self._event("_handler_caught_up").set()
        if self._closed is not None:
            return  # closed or closing already; aclose() may be called again
        self._begin_closing()
        self._wake_reader()  # it must read on, for the peer's answer
        try:
            if self._upgrade is not None:
                self._event("_closing_done").set()  # never opened: nothing to say
            elif self._protocol.state is State.OPEN:
                self._closed = CloseReason(code, reason)
                await self._send_close(code, reason)
            self._close_inbox(discard=True)
            # The reader sets this when the peer answers, or when the closing phase runs out.
            await self._event("_closing_done").wait()
        except ConnectionClosed:
            pass
        finally:
            await self._close_tcp()

    # -- the reader task -------------------------------------------------------------------

    async def run_reader(self) -> None:
        """The reader task: socket bytes to messages and events, each handled in turn, until the end.

        Returns once the close handshake is over, TCP is gone or the closing
        phase ran out of time; in every case TCP is closed by then.
        """
        try:
            with self._reader_scope:
                try:
                    while self._upgrade is not None and self._reading:
                        await self._reader_wait()  # woken by accept()
                    await self._read()
                finally:
                    self._close_inbox()  # the handler's get_message() ends once it has what is queued
            if self._reader_scope.cancelled_caught:
                logger.info(
                    "%s: the close did not finish within close_timeout (%s s); dropping TCP",
                    self,
                    self._close_timeout,
                )
                await self._answer_close_if_the_socket_is_free()
            if self._closed is None:
                # As RFC 6455 section 7.1.5 counts it: the peer's code if its Close came, else 1006.
                ending = self._close_received or CloseReason(1006, None)
                await self._mark_closed(ending.code, ending.reason)
            self._event("_closing_done").set()
            await self._close_tcp()
        finally:
            self._event("_reader_done").set()

    def _queue_message(self, message: str | bytes) -> None:
        if not self._inbox_closed:
            self._messages_queued += 1
            if self.tally is not None:
                self.tally.messages_in += 1
            self._put(message)

    async def _handle_event(self, event: Received) -> None:
        if type(event) is Ping:
            await self._handle_ping(event)
        elif type(event) is Pong:
            self._handle_pong(event)
        elif type(event) is Close:
            await self._handle_close(event)
        elif type(event) is Failure:
            await self._fail(event.code, event.reason)
        # A Fragment: nothing to do until the message's last frame.

    async def _handle_ping(self, event: Ping) -> None:
        if self._protocol.state is not State.OPEN:
            return  # no Pong after our Close (item 2)
        pong = self._protocol.send_pong(event.payload)
        if self._write_lock.locked():
            # A write holds the socket, maybe stuck: the Pong waits behind it in the outbox, and
            # the reader goes on reading. Whoever writes next sends it first.
            self._outbox.append(pong)
            self._outbox_size += len(pong)
            return
        await self._write(pong)

    def _handle_pong(self, event: Pong) -> None:
        """Wake the ping this Pong answers, and every ping sent before it."""
        pings = self._pings_in_flight
        if not pings or event.payload not in pings:
            return  # unsolicited
        for payload in list(pings):
            pings.pop(payload).set()
            if payload == event.payload:
                break

    # -- long messages go out in fragments -----------------------------------------------

    async def _send_in_fragments(self, message: str | bytes) -> None:
        """Send ``message`` as frames of at most ``FRAGMENT_SIZE`` bytes, holding the write lock throughout.

        Only control frames may go between the fragments of a message, so
        the lock is held from the first to the last; each fragment is
        encoded, compressed and framed on its own, as it goes.
        """
        if self._closed is not None:
            raise ConnectionClosed(self._closed)
        step = _fragment_length(message)
        async with self._write_lock:
            self._writing()
            try:
                if self._outbox:  # the replies held back go first
                    await self._send_fragment(self._take_outbox())
                for start in range(0, len(message), step):
                    if self._closed is not None:
                        # A Close was made ready meanwhile (by close_now): no more data may go.
                        raise ConnectionClosed(self._closed)
                    end = start + step
                    frame = self._protocol.send_fragment(message[start:end], last=end >= len(message))
                    await self._send_fragment(frame)
            except trio.Cancelled:
                if self._protocol.fragmenting and self._closed is None:
                    # Part of the message went: no other message can follow it, so the connection ends.
                    with trio.CancelScope(shield=True):
                        await self._tcp_gone()
                raise
            finally:
                self._written()

    async def _send_fragment(self, data: bytes | list[bytes]) -> None:
        try:
            await self._send_out(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self._tcp_gone()
            assert self._closed is not None
            raise ConnectionClosed(self._closed) from None


class ServerConnection(BaseConnection):
    """The server side of a :class:`WebSocketConnection`: the connection a handler gets."""

    __slots__ = ("_options", "request")

    #: The HTTP request this WebSocket was opened with (set by ``_http`` before the handler runs).
    request: HTTPRequest

    def __init__(
        self, stream: trio.abc.Stream, upgrade: Handshake, options: Options, early_bytes: bytes = b""
    ) -> None:
        super().__init__(
            stream,
            Protocol(max_message_size=options.max_message_size),
            message_queue_size=options.message_queue_size,
            read_size=options.receive_buffer_size or 65536,
            early_bytes=early_bytes,
            close_timeout=options.close_timeout,
            upgrade=upgrade,
        )
        self._options = options

    # -- the handshake -----------------------------------------------------------------------

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered in its handshake."""
        return () if self._upgrade is None else self._upgrade.proposed_subprotocols

    async def accept(self, subprotocol: str | None = None) -> None:
        """Send the 101 that opens the WebSocket, with ``subprotocol`` and permessage-deflate
        if the client offered it; the reader starts on the frames that came with the request."""
        upgrade = self._upgrade
        assert upgrade is not None, "accept() once"
        options = self._options
        agreed = upgrade.deflate(options.compression_window_bits) if options.compression else None
        response = upgrade.accept(subprotocol, None if agreed is None else agreed[0])
        if agreed is not None:
            self._protocol.deflate = Deflate(agreed[1], min_size=options.compression_min_size)
        self._target = upgrade.path
        self._agreed_subprotocol = subprotocol
        await self._write(response)
        self._upgrade = None
        self._wake_reader()


def _fragment_length(message: str | bytes) -> int:
    """How many bytes or characters of ``message`` go in one fragment: at most ``FRAGMENT_SIZE`` bytes.

    ASCII text takes one byte a character; other text up to four, in UTF-8 and
    in Python's own string (``str.isascii()`` is free: CPython knows it).
    """
    if isinstance(message, str) and not message.isascii():
        return FRAGMENT_SIZE // 4
    return FRAGMENT_SIZE


def _endpoint(stream: trio.abc.Stream, *, local: bool) -> Endpoint | str:
    """A socket stream's address as trio-websocket's ``Endpoint``; any other stream's ``repr``."""
    is_ssl = isinstance(stream, trio.SSLStream)
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(inner, trio.SocketStream):
        return repr(stream)
    address, port, *_ = inner.socket.getsockname() if local else inner.socket.getpeername()
    return Endpoint(address, port, is_ssl)


def server_connection(
    stream: trio.abc.Stream,
    headers: list[tuple[bytes, bytes]],
    target: str,
    trailing_data: bytes,
    options: Options,
) -> ServerConnection:
    """A connection for an upgrade request whose head was already read by h11.

    Nothing runs yet: start ``connection.run_reader`` in the connection's
    nursery, then ``await connection.accept(subprotocol)``.

    Raises:
        wsproto.utilities.RemoteProtocolError: the head is not a valid
            WebSocket handshake; its ``event_hint`` says what to answer.
    """
    return ServerConnection(stream, Handshake(headers, target), options, trailing_data)
