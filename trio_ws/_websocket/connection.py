"""trio-websocket's ``WebSocketConnection``, adapted to a server that reads the request head itself.

Handlers get a real ``trio_websocket.WebSocketConnection`` (this subclass of
it), so everything trio-websocket documents works as documented. This module
is the one place where trio_ws reaches into trio-websocket and wsproto, and
each reach is listed here so that an upgrade knows what to check (the test
suite covers every item):

1. Hand-over. ``_http/connection.py`` has already parsed the request head with h11, so
   the request is given to wsproto through its public
   ``initiate_upgrade_connection`` (meant for exactly this). Then, as
   trio-websocket's own ``wrap_server_stream`` does, the connection's reader
   task is run and ``_get_request`` waits for the parsed request. The bytes
   read past the head are frames a client sent without waiting for the 101:
   wsproto's server handshake would keep them in h11's buffer and never give
   them to the connection, so the reader feeds them to the connection once
   it is open (``_accept`` wakes it), and reads nothing before that.

2. The reader task is our own (``run_reader``), with trio-websocket's event
   handlers, and three rules trio-websocket's ``_reader_task`` lacks:

   * it takes a checkpoint every ``_EVENTS_PER_CHECKPOINT`` events or
     messages, so a peer that packs tens of thousands of tiny frames into
     one read (empty fragments, unsolicited Pongs) cannot keep every other
     connection waiting while they are handled;
   * it reads from the socket only while the handler keeps up: while
     ``message_queue_size`` messages (at least one) wait for the handler, it
     waits too, instead of reading and putting together the next message
     (it puts together the whole frames of the last read, up to
     ``MESSAGES_PER_TURN`` messages, so that the handler can answer them in
     one step). What a peer that sends and never reads can pin is then the
     message the handler holds, those queued, and at most one read of bytes;
   * while it waits for room and another task's write holds the socket
     (perhaps stuck on a peer that reads nothing), it still reads, a little
     at a time and only up to a data frame, and acts on the control frames
     it finds (``_watch``): a Close starts the closing phase of item 3, a Pong
     reaches the keep-alive, and the end of the stream or a reset ends the
     connection. A Ping is answered behind the write under way. Data frames
     wait, as bytes, until there is room;
   * when it ends, for whatever reason, TCP is closed, so that no task
     stays blocked on a socket nobody reads. So does a write that finds TCP
     broken (``_abort_web_socket``): the reader may be waiting for room.

   Messages come whole from ``frames.py`` (which bounds their size in
   bytes, UTF-8 bytes for text, and their number of frames), so
   trio-websocket's list of fragments is not used. Most come straight from
   the bytes, with no wsproto event (``FastWSConnection.received()``); the
   other frames' events go to trio-websocket's event handlers.

3. The closing phase is bounded (RFC 6455 section 7.1.1). From the moment a
   Close is received or sent, the connection has ``close_timeout`` seconds
   to finish: waiting for the handler, taking the stream lock, sending our
   Close and waiting for the peer's all count. Then the reader's cancel
   scope runs out and TCP is dropped, which also frees a handler stuck in
   ``send`` to a peer that stopped reading. (A peer's Close still
   unanswered then is answered first if no send holds the socket: the
   handler was merely slow.)

4. Finish replying before answering a Close. trio-websocket answers the
   peer's Close frame as soon as it reads it, so a reply to a message that
   arrived just before the Close is refused, and an echo server loses the
   last messages. RFC 6455 section 5.5.1 lets an endpoint send what it is
   sending before its Close. Here the Close is answered once the handler has
   no received message left unanswered (it has asked for the next message,
   sent something, or returned), within the closing phase of item 3.
   wsproto refuses data frames in the ``REMOTE_CLOSING`` state, so
   ``_ServerWSConnection`` lets them through its frame protocol until our
   Close is sent. Meanwhile ``ping()`` raises ``ConnectionClosed``: no pong
   will come.

5. No pong after our Close (trio-websocket issue #184): a Ping that arrives
   while our Close is in flight would make wsproto raise
   ``LocalProtocolError`` in the reader task and crash the connection.
   ``ClientConnection``, the client of ``trio_ws.testing``, needs the same
   fix, because the server's keep-alive pings can cross its Close.

6. ``close_now(code, reason)``: send a Close frame if the socket takes it at
   once, then drop TCP, for a peer that has stopped answering.

7. Fail the connection with a Close frame (RFC 6455 section 7.1.7). When the
   peer breaks the protocol (bad frame, bad UTF-8, a forbidden close code)
   or sends a message over the limits, wsproto reports a ``CloseConnection``
   with 1002, 1007 or 1009 while its state is still ``OPEN``, and
   trio-websocket would drop TCP without a word. Here the handler first
   answers the messages completed before the bad frame (as in item 4), then
   Close goes out with the code, then TCP is dropped without reading
   further.

8. Our own close reason. trio-websocket's ``aclose(code)`` records 1000
   whatever the code, so a peer that never answered our 1001 looked like a
   normal close; ``_aclose`` records the code it sends, and the connection
   notes which Close frames went each way for the log (``describe_close``).

9. Long messages go out in fragments of at most ``FRAGMENT_SIZE`` bytes (RFC
   6455 section 5.4), so sending one never makes a second copy of it whole:
   not when it is encoded to UTF-8, nor compressed, nor framed.

10. permessage-deflate. trio-websocket's ``_accept`` offers no way to pass
    wsproto extensions, so ``_accept`` is overridden to add
    :class:`~trio_ws._websocket.deflate.Deflate` when the client offered it.

11. Speed: the two classes here derive from ``frames.FastWSConnection``
    and ``batching.BatchedIO`` (the inbox and the outbox that batch replies),
    which keep wsproto's and trio-websocket's behaviour and list what they
    reach into themselves. Plain TCP is read and written directly
    (``_websocket/direct_socket.py``), other streams through their own methods.

Besides, the public :class:`WebSocketConnection` adds ``async for message in
ws`` (issue 10, item 8) to trio-websocket's class; it reaches into nothing.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, NoReturn, cast

import trio
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed, WebSocketRequest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.typing import Headers
from wsproto.utilities import RemoteProtocolError

from .._linger import linger
from .._options import Options, seconds
from .._printable import printable
from .batching import MESSAGES_PER_TURN, BatchedIO
from .deflate import Deflate, offers_deflate
from .direct_socket import DirectSocket
from .frames import FastWSConnection

if TYPE_CHECKING:
    from .._app.request import Request as HTTPRequest

logger = logging.getLogger("trio_ws.websocket")

__all__ = [
    "FRAGMENT_SIZE",
    "ClientConnection",
    "ServerConnection",
    "WebSocketConnection",
    "client_connection",
    "server_connection",
]

# A Close frame to a dead peer fits in the kernel's send buffer; if the buffer
# is full the peer has stopped reading, and waiting longer would not help.
_CLOSE_FRAME_BUDGET = 1.0
# Handling one event takes a microsecond or two; 64 of them between checkpoints
# keep another connection's wait far below a millisecond, for about 1% more work.
_EVENTS_PER_CHECKPOINT = 64
# What a reader watching the socket during a write reads at a time: room for any control frame
# (131 bytes at most), little for a peer that sends data meanwhile (see _watch).
_WATCH_READ = 1024
# Longer messages go out in fragments of at most this many bytes (item 9).
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


class _ServerWSConnection(FastWSConnection):
    """wsproto's server connection, which may send data while a peer's Close waits for an answer."""

    def __init__(self, max_message_size: int) -> None:
        super().__init__(ConnectionType.SERVER, max_message_size=max_message_size)

    def send(self, event: Event) -> bytes:
        connection = self.connection
        if (
            connection is not None
            and connection.state is ConnectionState.REMOTE_CLOSING
            and isinstance(event, Message)
        ):
            return bytes(connection._proto.send_data(event.data, event.message_finished))
        return super().send(event)

    def send_message(self, message: str | bytes) -> bytes | tuple[bytes, bytes]:
        # As send() above: data frames may still go while a peer's Close waits for an answer.
        connection = self.connection
        if connection is not None and connection._state is ConnectionState.REMOTE_CLOSING:
            return bytes(connection._proto.send_data(message, True))
        return super().send_message(message)


class ServerConnection(BatchedIO, WebSocketConnection):
    """The server side of a :class:`WebSocketConnection`, with the adaptations in the module docstring."""

    # Slots keep these out of the instance dict, which trio-websocket's own
    # attributes fill: one more key there makes it grow by 1.6 KiB per connection.
    __slots__ = (
        "_close_received",
        "_close_sent",
        "_close_timeout",
        "_deflate",
        "_early_bytes",
        "_ending",
        "_failed",
        "_handler_caught_up",
        "_holding_message",
        "_messages_queued",
        "_messages_taken",
        "_options",
        "_reader_done",
        "_reader_scope",
        "request",
    )

    #: The HTTP request this WebSocket was opened with (set by the front door before the handler runs).
    request: HTTPRequest

    def __init__(self, stream: trio.abc.Stream, options: Options) -> None:
        super().__init__(
            stream,
            _ServerWSConnection(options.max_message_size),
            message_queue_size=options.message_queue_size,
            max_message_size=options.max_message_size,
            receive_buffer_size=options.receive_buffer_size,
        )
        self._init_io(options.message_queue_size)
        # trio-websocket's own close handler (replaced here) is its only user.
        del self._for_testing_peer_closed_connection
        self._close_timeout = options.close_timeout
        self._options = options
        self._deflate: Deflate | None = None
        # Bytes that came after the request head, in the same read: frames, for the open connection.
        self._early_bytes = b""
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
        # Two events, made when first needed (an idle connection needs neither, and each costs
        # a quarter of a kilobyte): the handler has caught up with a Close, the reader is done.
        self._handler_caught_up: trio.Event | None = None
        self._reader_done: trio.Event | None = None
        # The reader runs in this scope; its deadline is the end of the closing phase (item 3).
        self._reader_scope = trio.CancelScope()
        # The Close frames that went each way, for the log line (item 8).
        self._close_received: CloseReason | None = None
        self._close_sent: CloseReason | None = None
        self._failed = False

    # -- 2. the reader task ---------------------------------------------------------

    async def run_reader(self) -> None:
        """The reader task: socket bytes to wsproto events, each handled in turn, until the end.

        Returns once the close handshake is over, TCP is gone or the closing
        phase ran out of time; in every case TCP is closed by then.
        """
        try:
            with self._reader_scope:
                try:
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
            if self._close_reason is None:
                # As RFC 6455 section 7.1.5 counts it: the peer's code if its Close came, else 1006.
                ending = self._close_received or CloseReason(1006, None)
                await self._close_web_socket(ending.code, ending.reason)
            self._close_handshake.set()
            await self._close_stream()
        finally:
            self._event("_reader_done").set()

    async def _read(self) -> None:
        wsproto = self._wsproto
        assert isinstance(wsproto, FastWSConnection)
        inbox = self._inbox
        budget = _EVENTS_PER_CHECKPOINT
        while self._reader_running:
            capped = False
            for item in wsproto.received():
                # Not isinstance(item, Event): wsproto's Event is an ABC, which makes that check slower.
                if isinstance(item, (str, bytes)):
                    self._queue_message(item)  # a whole message, straight from the fast path
                else:
                    try:
                        await self._handle_event(item)
                    except ConnectionClosed:
                        self._reader_running = False
                        break
                budget -= 1
                if not budget:
                    budget = _EVENTS_PER_CHECKPOINT
                    await trio.lowlevel.checkpoint()  # let other connections have a turn
                if len(inbox) >= MESSAGES_PER_TURN:
                    capped = True  # the rest of this read waits in wsproto's buffer, as bytes
                    break
            if not self._reader_running:
                break
            try:
                await self._wait_for_room()
            except ConnectionClosed:
                break  # writing the replies held back found TCP gone: the socket is closed, 1006
            if capped:
                continue  # put together the rest of the last read before reading more
            if self._early_bytes:
                # Frames that came with the request head: the connection's first bytes, once it is open.
                if wsproto.state is ConnectionState.CONNECTING:
                    await self._reader_wait()  # woken by _accept
                    continue
                if wsproto.state is ConnectionState.OPEN:
                    wsproto.receive_data(self._early_bytes)
                    if self.tally is not None:
                        self.tally.bytes_in += len(self._early_bytes)
                self._early_bytes = b""
                continue
            try:
                came = await self._receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._abort_web_socket()
                break
            except RemoteProtocolError as err:
                logger.debug("%s: remote protocol error: %s", self, printable(str(err)))
                if err.event_hint:
                    await self._send(err.event_hint)
                break
            if not came:
                if wsproto.state is not ConnectionState.CLOSED:
                    await self._abort_web_socket()  # TCP closed before the WebSocket: 1006
                break

    async def _receive(self, max_bytes: int | None = None) -> int:
        """Read once, ``receive_buffer_size`` bytes at most unless ``max_bytes`` says fewer, give
        wsproto what came and count it for ``/metrics``; how many bytes came (0: the peer closed TCP).

        On plain TCP, an open connection's read is appended straight to
        wsproto's receive buffer (see ``_websocket/direct_socket.py``); otherwise it
        comes as ``bytes`` and goes through ``receive_data``, and is not kept.
        """
        wsproto = self._wsproto
        assert isinstance(wsproto, FastWSConnection)
        io = self._io
        size = max_bytes or self._receive_buffer_size
        buffer = wsproto.receive_buffer()
        if buffer is not None and type(io) is DirectSocket:
            came = await io.receive_into(buffer, size)
        else:
            data = await io.receive_some(size)
            if data and wsproto.state is not ConnectionState.CLOSED:
                # wsproto types this as bytes, and takes any bytes-like object.
                wsproto.receive_data(cast("bytes", data))
            came = len(data)
        if self.tally is not None:
            self.tally.bytes_in += came
        return came

    async def _handle_event(self, event: Event) -> None:
        # Most events are messages; fragments before a message's last are empty (see frames.py).
        if isinstance(event, TextMessage | BytesMessage):
            if event.message_finished:
                await self._handle_message_event(event)
        elif isinstance(event, Ping):
            await self._handle_ping_event(event)
        elif isinstance(event, Pong):
            await self._handle_pong_event(event)
        elif isinstance(event, CloseConnection):
            await self._handle_close_connection_event(event)
        elif isinstance(event, Request):
            await self._handle_request_event(event)
        else:  # pragma: no cover - wsproto gives a server no other events
            logger.warning("%s: unexpected event %s; please report a bug", self, printable(repr(event)))

    async def _handle_message_event(self, event: TextMessage | BytesMessage) -> None:
        # Binary data is always bytes here: frames.py makes bytes of what it put together.
        self._queue_message(cast("str | bytes", event.data))

    def _queue_message(self, message: str | bytes) -> None:
        # A whole message, within max_message_size: _fastframes has put it together and checked it.
        if not self._inbox_closed:
            self._messages_queued += 1
            if self.tally is not None:
                self.tally.messages_in += 1
            self._put(message)

    async def _wait_for_room(self) -> None:
        """Write the replies held back, then wait while the inbox is full (see ``_websocket/batching.py``).

        While another task's write holds the socket, the reader does not wait for it: that write
        may be stuck on a peer that has stopped reading, so the reader watches the socket instead
        (``_watch``) until the write is done, if it has replies to write or no room to read into.
        """
        while True:
            if self._outbox:
                if self._stream_lock.locked():
                    if not self._reader_running:
                        return
                    await self._watch()
                    continue
                await self._write(b"")
            if not (self._reader_running and self._inbox_full()):
                return
            if self._stream_lock.locked():
                await self._watch()
            else:
                await self._reader_wait()

    async def _watch(self) -> None:
        """Read while a write holds the socket, and act on the control frames that come, until the
        write is done or the inbox has room (item 2 of the module docstring, third rule).

        A Close is then seen, and its closing phase begins, even while the handler is stuck
        sending to a peer that reads nothing; so are a Pong, the end of the stream and a reset.
        Data frames are not put together here: a data frame at the head of wsproto's buffer
        stops the reading (what follows it waits with it), so a watching reader holds at most
        ``_WATCH_READ`` bytes more than a waiting one.
        """
        wsproto = self._wsproto
        assert isinstance(wsproto, FastWSConnection)
        # Most writes end in a moment (one that needs no wait still takes a schedule point now and
        # then, holding the socket): let it, and watch only a write that is still going. The flag
        # tells a handler that holds back a reply meanwhile that the reader will write it.
        self._reader_yielding = True
        try:
            await trio.lowlevel.checkpoint()
        finally:
            self._reader_yielding = False
        while self._reader_running:
            for event in wsproto.control_events():
                try:
                    await self._handle_event(event)
                except ConnectionClosed:
                    self._reader_running = False
                    return
            if not self._stream_lock.locked() or not self._reader_running:
                return
            came = -1
            with trio.CancelScope() as self._watch_scope:
                try:
                    if not wsproto.control_frame_next():
                        await trio.sleep_forever()  # data waits at the head: until room, or the write is done
                    came = await self._receive(_WATCH_READ)
                except (trio.BrokenResourceError, trio.ClosedResourceError, RemoteProtocolError):
                    came = 0
                finally:
                    self._watch_scope = None
            if not came:  # the stream ended, or broke: the connection is over
                if wsproto.state is not ConnectionState.CLOSED:
                    await self._abort_web_socket()
                self._reader_running = False
            elif came < 0:
                return  # woken: the write is done, or there is room

    async def _close_stream(self) -> None:
        self._wake_reader()  # a reader waiting for room would never see the socket close
        await super()._close_stream()

    async def _abort_web_socket(self) -> None:
        # TCP broke under a read or a write, or ended. trio-websocket only marks the connection
        # closed (1006); TCP is closed too here, so that a reader waiting for room, and anything
        # else waiting on the socket, ends with it instead of waiting for good.
        await super()._abort_web_socket()
        await self._close_stream()

    def _event(self, name: str) -> trio.Event:
        """The event in slot ``name``, made now if it was not needed before."""
        event: trio.Event | None = getattr(self, name)
        if event is None:
            event = trio.Event()
            setattr(self, name, event)
        return event

    async def handshake(self) -> WebSocketRequest:
        """The client's handshake request, ready to ``accept()``."""
        return await self._get_request()

    async def wait_reader_done(self) -> None:
        """Return once the reader has finished: the close handshake is over or TCP is gone."""
        await self._event("_reader_done").wait()

    # -- 3. the closing phase is bounded ------------------------------------------------

    def _begin_closing(self) -> None:
        """Start the clock: ``close_timeout`` from now, the reader gives up and TCP is dropped."""
        scope = self._reader_scope
        scope.deadline = min(scope.deadline, trio.current_time() + seconds(self._close_timeout))

    async def _answer_close_if_the_socket_is_free(self) -> None:
        """The peer's Close waited for a handler that did not catch up in time: answer it now,
        if no send holds the socket and it takes the frame at once; the handler's replies from
        now on are refused. A send stuck on a peer that stopped reading leaves no such chance."""
        received = self._close_received
        if received is None or self._close_sent is not None or self._stream_lock.locked():
            return
        if self._wsproto.state is ConnectionState.REMOTE_CLOSING:
            self._close_reason = received
            with trio.move_on_after(_CLOSE_FRAME_BUDGET), contextlib.suppress(ConnectionClosed):
                await self._send_close(_answer_to(received.code, received.reason))

    # -- 4. finish replying before answering a Close ------------------------------------

    async def get_message(self) -> str | bytes:
        self._note_handler_progress()
        try:
            message = await self._take()
        except ConnectionClosed:
            if self._close_reason is None:
                # The peer's Close is waiting for us: let it be answered, then report it.
                self._event("_handler_caught_up").set()
                await self._close_handshake.wait()
                raise ConnectionClosed(self._close_reason) from None
            raise
        self._messages_taken += 1
        self._holding_message = True
        return message

    async def send_message(self, message: str | bytes) -> None:
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

    def _note_handler_progress(self) -> None:
        self._holding_message = False
        if self._ending is not None and not self._owes_replies():
            self._event("_handler_caught_up").set()

    def _owes_replies(self) -> bool:
        """Whether the handler has a received message it has not answered or asked past."""
        return self._holding_message or self._messages_taken < self._messages_queued

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        state = self._wsproto.state
        if state is ConnectionState.OPEN:
            # No Close came from the peer: wsproto found a protocol error in its bytes.
            await self._fail(event.code, _failure_reason(event, self._max_message_size))
        self._close_received = CloseReason(event.code, event.reason or None)
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer closes first: answer with the same code (1000 for none), once the handler
            # has caught up.
            self._begin_closing()
            await self._wait_for_handler(self._close_received)
            self._close_reason = self._close_received
            await self._send_close(_answer_to(event.code, event.reason))
        await self._close_web_socket(event.code, event.reason or None)
        self._close_handshake.set()
        # RFC 6455 section 7.1.1: the server closes TCP first.
        await self._close_stream()

    async def _wait_for_handler(self, ending: CloseReason) -> None:
        """Let the handler answer every message it was given before the connection ends."""
        self._ending = ending
        # get_message() still returns what is queued, then finds the end.
        self._close_inbox()
        if self._owes_replies():
            await self._event("_handler_caught_up").wait()

    async def ping(self, payload: bytes | None = None) -> None:
        if self._ending is not None:
            # The connection is ending and no pong will come.
            raise ConnectionClosed(self._ending)
        await super().ping(payload)

    @property
    def closing(self) -> bool:
        """Whether a Close has been sent or received: the connection is on its way out."""
        return self._close_reason is not None or self._ending is not None

    # -- 5. no pong after our Close ------------------------------------------------------

    async def _handle_ping_event(self, event: Ping) -> None:
        if self._wsproto.state is not ConnectionState.OPEN:
            return
        if self._stream_lock.locked():
            # A write holds the socket, maybe stuck: the Pong waits behind it in the outbox, and
            # the reader goes on reading (see _watch). Whoever writes next sends it first.
            pong = self._wsproto.send(event.response())
            self._outbox.append(pong)
            self._outbox_size += len(pong)
            return
        await super()._handle_ping_event(event)

    # -- 6. close a connection whose peer has stopped answering ---------------------------

    async def close_now(self, code: int, reason: str) -> None:
        """Send Close ``code`` if the socket takes it at once, then close TCP.

        Unlike ``aclose()``, this does not wait for the peer's answer. The
        handler's next ``get_message()`` raises ``ConnectionClosed`` with
        ``code`` and ``reason``. While another task's write holds the socket
        (stuck on a peer that reads nothing, as when keep-alive gives up),
        the frame could only go after it, so it is not waited for.
        """
        patience = 0.0 if self._stream_lock.locked() else _CLOSE_FRAME_BUDGET
        await self._send_close_frame(code, reason, patience)
        self._event("_handler_caught_up").set()
        await self._close_stream()

    async def _send_close_frame(self, code: int, reason: str, patience: float = _CLOSE_FRAME_BUDGET) -> None:
        """Make Close ``code`` our close reason and send it, if the connection is still open.

        The frame goes only if the socket takes it within ``patience`` seconds:
        the caller closes TCP next either way.
        """
        if self._close_reason is None and self._wsproto.state is ConnectionState.OPEN:
            self._close_reason = CloseReason(code, reason)
            self._begin_closing()
            with trio.move_on_after(patience), contextlib.suppress(ConnectionClosed):
                await self._send_close(CloseConnection(code=code, reason=reason))

    async def _send_close(self, close: CloseConnection) -> None:
        await self._send(close)
        self._close_sent = CloseReason(close.code, close.reason or None)

    # -- 7. fail the connection with a Close frame ------------------------------------

    async def _fail(self, code: int, reason: str) -> NoReturn:
        """Fail the WebSocket connection (RFC 6455 section 7.1.7) with Close ``code``.

        The peer's data after the bad frame is never read: the reader stops.
        Raises ``ConnectionClosed``, which is how an event handler ends the
        reader task.
        """
        logger.debug("%s: failing the connection with %d (%s)", self, code, printable(reason))
        self._failed = True
        self._begin_closing()
        await self._wait_for_handler(CloseReason(code, reason))
        await self._send_close_frame(code, reason)
        if self._close_reason is None:  # nothing could be sent, but this is why the connection ended
            self._close_reason = CloseReason(code, reason)
        self._close_handshake.set()
        await self._linger()
        await self._close_stream()
        # Stops the reader before it handles any event after the bad one.
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

    # -- 8. our own close reason -----------------------------------------------------------

    async def _aclose(self, code: int, reason: str | None) -> None:
        # The handler is done with the connection, so a waiting Close can be answered.
        self._event("_handler_caught_up").set()
        if self._close_reason is not None:
            return  # closed or closing already; aclose() may be called again
        self._begin_closing()
        self._wake_reader()  # it must read on, for the peer's answer
        try:
            if self._wsproto.state is ConnectionState.OPEN:
                self._close_reason = CloseReason(code, reason)
                await self._send_close(CloseConnection(code=code, reason=reason))
            elif self._wsproto.state in (ConnectionState.CONNECTING, ConnectionState.REJECTING):
                self._close_handshake.set()
            self._close_inbox(discard=True)
            # The reader sets this when the peer answers, or when the closing phase runs out.
            await self._close_handshake.wait()
        except ConnectionClosed:
            pass
        finally:
            await self._close_stream()

    @property
    def close_code(self) -> int:
        """How the connection ended, as a code: the peer's Close, else ours, else 1006 (none)."""
        reason = self._close_received or self._close_sent
        return 1006 if reason is None else reason.code

    def describe_close(self) -> str:
        """How the connection ended, for the log: the close code, and whether both sides said so."""
        received, sent = self._close_received, self._close_sent
        if received is not None:
            text = f"closed with {_code_and_reason(received)}"
            return text if sent is not None else f"{text}; our answer did not go out"
        if sent is not None:
            text = f"closed with {_code_and_reason(sent)}"
            return text if self._failed else f"{text}; no Close came back"
        return "closed with 1006 (TCP closed without a Close frame)"

    # -- 9. long messages go out in fragments -----------------------------------------------

    async def _send_in_fragments(self, message: str | bytes) -> None:
        """Send ``message`` as frames of at most ``FRAGMENT_SIZE`` bytes, holding the stream lock throughout.

        Only control frames may go between the fragments of a message, so
        the lock is held from the first to the last; each fragment is
        encoded, compressed and framed on its own, as it goes.
        """
        if self._close_reason is not None:
            raise ConnectionClosed(self._close_reason)
        step = _fragment_length(message)
        async with self._stream_lock:
            self._writing()
            try:
                if self._outbox:  # the replies held back go first
                    await self._send_fragment(self._take_outbox())
                for start in range(0, len(message), step):
                    if self._close_reason is not None:
                        # A Close was made ready meanwhile (by close_now): wsproto takes no more data.
                        raise ConnectionClosed(self._close_reason)
                    end = start + step
                    last = end >= len(message)
                    event: TextMessage | BytesMessage
                    if isinstance(message, str):
                        event = TextMessage(data=message[start:end], message_finished=last)
                    else:
                        event = BytesMessage(data=message[start:end], message_finished=last)
                    await self._send_fragment(self._wsproto.send(event))
            finally:
                self._written()

    async def _send_fragment(self, data: bytes | list[bytes]) -> None:
        try:
            await self._send_out(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self._abort_web_socket()
            assert self._close_reason is not None
            raise ConnectionClosed(self._close_reason) from None

    # -- 10. permessage-deflate ------------------------------------------------------------

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
        if self._early_bytes:
            self._wake_reader()  # the frames that came with the request are the first to handle
        # Only trio-websocket's client waits for this event; a server can let it go.
        del self._open_handshake

    @property
    def extensions(self) -> list[str]:
        """The extensions in use on this connection, such as ``["permessage-deflate"]``."""
        return [self._deflate.name] if self._deflate and self._deflate.enabled() else []


def _fragment_length(message: str | bytes) -> int:
    """How many bytes or characters of ``message`` go in one fragment: at most ``FRAGMENT_SIZE`` bytes.

    ASCII text takes one byte a character; other text up to four, in UTF-8 and
    in Python's own string (``str.isascii()`` is free: CPython knows it).
    """
    if isinstance(message, str) and not message.isascii():
        return FRAGMENT_SIZE // 4
    return FRAGMENT_SIZE


def _answer_to(code: int, reason: str | None) -> CloseConnection:
    """The Close that answers the peer's: its own code, or 1000 for a Close that carried none
    (1005 may not be sent). RFC 6455 allows an empty answer too; ASP.NET answers 1000, and
    clients such as the official SignalR tests expect it."""
    if code == 1005:
        return CloseConnection(code=1000)
    return CloseConnection(code=code, reason=reason)


def _failure_reason(event: CloseConnection, max_message_size: int) -> str:
    """The reason to send with a Close for a protocol error that wsproto found."""
    if event.code == 1009 and event.reason == "error in extension":
        # permessage-deflate stopped inflating at max_message_size (see _websocket/deflate.py).
        return f"decompressed message larger than {max_message_size} bytes"
    return event.reason or "protocol error"


def _code_and_reason(reason: CloseReason) -> str:
    """``4000 (reason)`` for the log; a peer's reason may hold anything, so it is made printable."""
    return f"{reason.code} ({printable(reason.reason)})" if reason.reason else str(reason.code)


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
    # Not given to wsproto now: its handshake would keep them in h11's buffer, and the connection
    # it opens on accept would never see them (item 1). The reader gives them to the connection.
    connection._early_bytes = trailing_data
    return connection


class ClientConnection(WebSocketConnection):
    """trio-websocket's client connection, with item 5 of the module docstring applied (and ``async for``)."""

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
