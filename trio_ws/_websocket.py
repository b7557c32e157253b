"""trio-websocket's ``WebSocketConnection``, adapted to a server that reads the request head itself.

Handlers get a real ``trio_websocket.WebSocketConnection`` (this subclass of
it), so everything trio-websocket documents works as documented. This module
is the one place where trio_ws reaches into trio-websocket and wsproto, and
each reach is listed here so that an upgrade knows what to check (the test
suite covers every item):

1. Hand-over. ``_http.py`` has already parsed the request head with h11, so
   the request is given to wsproto through its public
   ``initiate_upgrade_connection`` (meant for exactly this), and the bytes
   read past the head are fed after it. Then, as trio-websocket's own
   ``wrap_server_stream`` does, the connection's ``_reader_task`` is run
   and ``_get_request`` waits for the parsed request.

2. Finish replying before answering a Close. trio-websocket answers the
   peer's Close frame as soon as it reads it, so a reply to a message that
   arrived just before the Close is refused, and an echo server loses the
   last messages. RFC 6455 section 5.5.1 lets an endpoint send what it is
   sending before its Close. Here the Close is answered once the handler has
   no received message left unanswered (it has asked for the next message,
   sent something, or returned), or after ``close_timeout``. wsproto refuses
   data frames in the ``REMOTE_CLOSING`` state, so ``_ServerWSConnection``
   lets them through its frame protocol until our Close is sent.
   Meanwhile ``ping()`` raises ``ConnectionClosed``: no pong will come.

3. No pong after our Close (trio-websocket issue #184): a Ping that arrives
   while our Close is in flight would make wsproto raise
   ``LocalProtocolError`` in the reader task and crash the connection.
   ``ClientConnection``, the client of ``trio_ws.testing``, needs the same
   fix, because the server's keep-alive pings can cross its Close.

4. ``close_now(code, reason)``: send a Close frame if the socket takes it at
   once, then drop TCP, for a peer that has stopped answering.

5. Fail the connection with a Close frame (RFC 6455 section 7.1.7). When the
   peer breaks the protocol (bad frame, bad UTF-8, a forbidden close code),
   wsproto reports a ``CloseConnection`` with 1002 or 1007 while its state is
   still ``OPEN``, and trio-websocket would drop TCP without a word. An
   oversized message makes trio-websocket send 1009 at once and discard the
   messages that came before it. Here both cases first let the handler answer
   the messages completed before the bad frame (as in item 2), then send
   Close with the code, then drop TCP without reading further.

6. permessage-deflate. trio-websocket's ``_accept`` offers no way to pass
   wsproto extensions, so ``_accept`` is overridden to add
   :class:`~trio_ws._deflate.Deflate` when the client offered it.

7. Speed: the two classes here derive from ``_fastframes.FastWSConnection``
   and ``_fastio.FewerCheckpoints``, which keep wsproto's and
   trio-websocket's behaviour and list what they reach into themselves.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, NoReturn

import trio
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, WebSocketRequest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.typing import Headers

from ._deflate import Deflate, offers_deflate
from ._fastframes import FastWSConnection
from ._fastio import FewerCheckpoints
from ._linger import linger
from ._options import Options, seconds

if TYPE_CHECKING:
    from ._request import Request as HTTPRequest

logger = logging.getLogger("trio_ws.websocket")

__all__ = ["ClientConnection", "ServerConnection", "client_connection", "server_connection"]

# A Close frame to a dead peer fits in the kernel's send buffer; if the buffer
# is full the peer has stopped reading, and waiting longer would not help.
_CLOSE_FRAME_BUDGET = 1.0


class _ServerWSConnection(FastWSConnection):
    """wsproto's server connection, which may send data while a peer's Close waits for an answer."""

    def __init__(self) -> None:
        super().__init__(ConnectionType.SERVER)

    def send(self, event: Event) -> bytes:
        connection = self.connection
        if (
            connection is not None
            and connection.state is ConnectionState.REMOTE_CLOSING
            and isinstance(event, Message)
        ):
            return bytes(connection._proto.send_data(event.data, event.message_finished))
        return super().send(event)


class ServerConnection(FewerCheckpoints):
    """A server-side ``WebSocketConnection`` with the adaptations listed in the module docstring."""

    # Slots keep these out of the instance dict, which trio-websocket's own
    # attributes fill: one more key there makes it grow by 1.6 KiB per connection.
    __slots__ = (
        "_close_timeout",
        "_deflate",
        "_ending",
        "_handler_caught_up",
        "_holding_message",
        "_messages_queued",
        "_messages_taken",
        "_options",
        "_reader_done",
        "request",
    )

    #: The HTTP request this WebSocket was opened with (set by ``_http.py`` before the handler runs).
    request: HTTPRequest

    def __init__(self, stream: trio.abc.Stream, options: Options) -> None:
        super().__init__(
            stream,
            _ServerWSConnection(),
            message_queue_size=options.message_queue_size,
            max_message_size=options.max_message_size,
            receive_buffer_size=options.receive_buffer_size,
        )
        self._close_timeout = options.close_timeout
        self._options = options
        self._deflate: Deflate | None = None
        # Set when the peer's Close has arrived, or the peer broke the protocol:
        # the connection ends once the handler has answered what came before.
        self._ending: CloseReason | None = None
        # Messages the reader has queued, and messages the handler has taken. A
        # message handed straight to a waiting get_message() never shows in the
        # queue's statistics, so the two are counted here.
        self._messages_queued = 0
        self._messages_taken = 0
        # The handler took a message and has not yet replied or asked for the next one.
        self._holding_message = False
        self._handler_caught_up = trio.Event()
        self._reader_done = trio.Event()

    async def run_reader(self) -> None:
        """trio-websocket's reader task: socket bytes to wsproto events to the message queue."""
        try:
            await self._reader_task()
        finally:
            self._reader_done.set()

    async def handshake(self) -> WebSocketRequest:
        """The client's handshake request, ready to ``accept()``."""
        return await self._get_request()

    async def wait_reader_done(self) -> None:
        """Return once the reader has finished: the close handshake is over or TCP is gone."""
        await self._reader_done.wait()

    # -- 2. finish replying before answering a Close ----------------------------

    async def get_message(self) -> str | bytes:
        self._note_handler_progress()
        try:
            message = await super().get_message()
        except ConnectionClosed:
            if self._close_reason is None:
                # The peer's Close is waiting for us: let it be answered, then report it.
                self._handler_caught_up.set()
                await self._close_handshake.wait()
                raise ConnectionClosed(self._close_reason) from None
            raise
        self._messages_taken += 1
        self._holding_message = True
        return message

    async def send_message(self, message: str | bytes) -> None:
        await super().send_message(message)
        self._note_handler_progress()

    def _note_handler_progress(self) -> None:
        self._holding_message = False
        if self._ending is not None and not self._owes_replies():
            self._handler_caught_up.set()

    def _owes_replies(self) -> bool:
        """Whether the handler has a received message it has not answered or asked past."""
        return self._holding_message or self._messages_taken < self._messages_queued

    async def _handle_message_event(self, event: TextMessage | BytesMessage) -> None:
        if self._message_size + len(event.data) > self._max_message_size:
            await self._fail(1009, f"message larger than {self._max_message_size} bytes")
        if event.message_finished:
            self._messages_queued += 1  # counted before the queue can block
        await super()._handle_message_event(event)

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            # No Close came from the peer: wsproto found a protocol error in its bytes.
            await self._fail(event.code, _failure_reason(event, self._max_message_size))
        if self._wsproto.state is ConnectionState.REMOTE_CLOSING:
            await self._wait_for_handler(CloseReason(event.code, event.reason or None))
        await super()._handle_close_connection_event(event)

    async def _wait_for_handler(self, ending: CloseReason) -> None:
        """Let the handler answer every message it was given before the connection ends."""
        self._ending = ending
        # get_message() still returns what is queued, then finds the end.
        self._send_channel.close()
        if self._owes_replies():
            with trio.move_on_after(seconds(self._close_timeout)):
                await self._handler_caught_up.wait()

    async def ping(self, payload: bytes | None = None) -> None:
        if self._ending is not None:
            # The connection is ending and no pong will come.
            raise ConnectionClosed(self._ending)
        await super().ping(payload)

    async def _aclose(self, code: int, reason: str | None) -> None:
        # The handler is done with the connection, so a waiting Close can be answered.
        self._handler_caught_up.set()
        await super()._aclose(code, reason)

    # -- 3. no pong after our Close ----------------------------------------------

    async def _handle_ping_event(self, event: Ping) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            await super()._handle_ping_event(event)

    # -- 4. close a connection whose peer has stopped answering ------------------

    async def close_now(self, code: int, reason: str) -> None:
        """Send Close ``code`` if the socket takes it at once, then close TCP.

        Unlike ``aclose()``, this does not wait for the peer's answer. The
        handler's next ``get_message()`` raises ``ConnectionClosed`` with
        ``code`` and ``reason``.
        """
        await self._send_close_frame(code, reason)
        self._handler_caught_up.set()
        await self._close_stream()

    async def _send_close_frame(self, code: int, reason: str) -> None:
        """Make Close ``code`` our close reason and send it, if the connection is still open.

        The frame goes only if the socket takes it within ``_CLOSE_FRAME_BUDGET``:
        the caller closes TCP next either way.
        """
        if self._close_reason is None and self._wsproto.state is ConnectionState.OPEN:
            self._close_reason = CloseReason(code, reason)
            with trio.move_on_after(_CLOSE_FRAME_BUDGET), contextlib.suppress(ConnectionClosed):
                await self._send(CloseConnection(code=code, reason=reason))

    # -- 5. fail the connection with a Close frame --------------------------------

    async def _fail(self, code: int, reason: str) -> NoReturn:
        """Fail the WebSocket connection (RFC 6455 section 7.1.7) with Close ``code``.

        The peer's data after the bad frame is never read: the reader stops.
        Raises ``ConnectionClosed``, which is how a trio-websocket event handler
        ends the reader task.
        """
        logger.debug("%s: failing the connection with %d (%s)", self, code, reason)
        self._message_parts, self._message_size = [], 0
        await self._wait_for_handler(CloseReason(code, reason))
        await self._send_close_frame(code, reason)
        if self._close_reason is None:  # nothing could be sent, but this is why the connection ended
            self._close_reason = CloseReason(code, reason)
        self._close_handshake.set()
        await self._linger()
        await self._close_stream()
        # Stops trio-websocket's reader before it handles any event after the bad one.
        raise ConnectionClosed(self._close_reason)

    async def _linger(self) -> None:
        """Let the peer read our Close before TCP closes, even if it is still sending (``_linger.py``)."""
        with (
            trio.move_on_after(_CLOSE_FRAME_BUDGET),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            # The lock: half-closing must not cut into a frame another task is sending.
            async with self._stream_lock:
                await linger(self._stream)

    # -- 6. permessage-deflate ------------------------------------------------------

    async def _accept(self, request: Request, subprotocol: str | None, extra_headers: Headers) -> None:
        # trio-websocket's own _accept, with the extensions that it cannot pass.
        options = self._options
        if options.compression and offers_deflate(request.extensions):
            self._deflate = Deflate(
                window_bits=options.compression_window_bits,
                min_size=options.compression_min_size,
                max_message_size=options.max_message_size,
            )
        self._subprotocol = subprotocol
        self._path = request.target
        extensions: list[Extension] = [self._deflate] if self._deflate else []
        await self._send(
            AcceptConnection(subprotocol=subprotocol, extra_headers=extra_headers, extensions=extensions)
        )
        self._open_handshake.set()

    @property
    def extensions(self) -> list[str]:
        """The extensions in use on this connection, such as ``["permessage-deflate"]``."""
        return [self._deflate.name] if self._deflate and self._deflate.enabled() else []


def _failure_reason(event: CloseConnection, max_message_size: int) -> str:
    """The reason to send with a Close for a protocol error that wsproto found."""
    if event.code == 1009:
        # Only permessage-deflate reports this, and wsproto calls it "error in extension".
        return f"decompressed message larger than {max_message_size} bytes"
    return event.reason or "protocol error"


def server_connection(
    stream: trio.abc.Stream,
    headers: list[tuple[bytes, bytes]],
    target: str,
    trailing_data: bytes,
    options: Options,
) -> ServerConnection:
    """A connection for an upgrade request whose head was already read by h11.

    Nothing runs yet: start ``connection.run_reader`` in the connection's
    nursery, then ``await connection.handshake()``.

    Raises:
        wsproto.utilities.RemoteProtocolError: the head is not a valid
            WebSocket handshake; its ``event_hint`` says what to answer.
    """
    connection = ServerConnection(stream, options)
    connection._wsproto.initiate_upgrade_connection(headers, target)
    if trailing_data:
        connection._wsproto.receive_data(trailing_data)
    return connection


class ClientConnection(WebSocketConnection):
    """trio-websocket's client connection, with item 3 of the module docstring applied."""

    async def _handle_ping_event(self, event: Ping) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            await super()._handle_ping_event(event)


async def client_connection(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    path: str,
    *,
    subprotocols: list[str],
    extra_headers: list[tuple[bytes, bytes]],
    message_queue_size: int,
    max_message_size: int,
) -> ClientConnection:
    """Open a client WebSocket over ``stream``, as ``trio_websocket.wrap_client_stream`` does.

    Raises:
        trio_websocket.ConnectionRejected: from the reader task in ``nursery``,
            when the server answers the handshake over HTTP.
    """
    connection = ClientConnection(
        stream,
        WSConnection(ConnectionType.CLIENT),
        host="localhost",
        path=path,
        client_subprotocols=subprotocols,
        client_extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
    )
    nursery.start_soon(connection._reader_task)
    await connection._open_handshake.wait()
    return connection
