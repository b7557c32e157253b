"""The close of a server WebSocket: the handshake's end, bounded in time, and failing a peer.

Rules (``ServerConnection`` in ``connection.py`` builds on this class):

1. The closing phase is bounded (RFC 6455 section 7.1.1). From the moment a
   Close is received or sent, the connection has ``close_timeout`` seconds
   to finish: waiting for the handler, taking the write lock, sending our
   Close and waiting for the peer's all count. Then the reader's cancel
   scope runs out and TCP is dropped, which also frees a handler stuck in
   ``send`` to a peer that stopped reading. (A peer's Close still
   unanswered then is answered first if no send holds the socket: the
   handler was merely slow.)
2. Finish replying before answering a Close. RFC 6455 section 5.5.1 lets an
   endpoint send what it is sending before its Close, so the peer's Close is
   answered once the handler has no received message left unanswered (it
   has asked for the next message, sent something, or returned), within the
   closing phase. Meanwhile ``ping()`` raises ``ConnectionClosed``: no pong
   will come. No Pong goes out after our Close.
3. ``close_now(code, reason)``: send a Close frame if the socket takes it at
   once, then drop TCP, for a peer that has stopped answering.
4. Fail the connection with a Close frame (RFC 6455 section 7.1.7). When the
   peer breaks the protocol or a limit (the protocol's ``Failure``: 1002,
   1007 or 1009), the handler first answers the messages completed before
   the bad frame (as in item 2), then Close goes out with the code, then TCP
   is dropped without reading further.
5. ``closed`` is the code we sent when we closed first (trio-websocket's
   ``aclose(code)`` recorded 1000 whatever the code), and the connection
   notes which Close frames went each way for the log (``describe_close``).
6. When the reader ends, for whatever reason, TCP is closed, so that no task
   stays blocked on a socket nobody reads. So does a write that finds TCP
   broken: the reader may be waiting for room.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import NoReturn

import trio
from trio_websocket import CloseReason, ConnectionClosed

from .._linger import linger
from .._options import seconds
from .._printable import printable
from .protocol import Close, Protocol, State
from .reader import Reader

__all__ = ["Closing", "preserve_current_exception"]

logger = logging.getLogger("trio_ws.websocket")

# A Close frame to a dead peer fits in the kernel's send buffer; if the buffer
# is full the peer has stopped reading, and waiting longer would not help.
_CLOSE_FRAME_BUDGET = 1.0


class Closing(Reader):
    """The closing rules of the module docstring, over the reader and the inbox and outbox."""

    __slots__ = (
        "_close_received",
        "_close_sent",
        "_close_timeout",
        "_closing_done",
        "_ending",
        "_failed",
        "_handler_caught_up",
        "_holding_message",
        "_messages_queued",
        "_messages_taken",
        "_reader_done",
        "_reader_scope",
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
    ) -> None:
        super().__init__(
            stream,
            protocol,
            message_queue_size=message_queue_size,
            read_size=read_size,
            early_bytes=early_bytes,
        )
        self._close_timeout = close_timeout
        # Set when the peer's Close has arrived, or the peer broke the protocol:
        # the connection ends once the handler has answered what came before.
        self._ending: CloseReason | None = None
        # Messages the reader has queued, and messages the handler has taken.
        self._messages_queued = 0
        self._messages_taken = 0
        # The handler took a message and has not yet replied or asked for the next one.
        self._holding_message = False
        # Events made when first needed (an idle connection needs none, and each costs a quarter
        # of a kilobyte): the close handshake is over, the handler has caught up with a Close,
        # the reader is done.
        self._closing_done: trio.Event | None = None
        self._handler_caught_up: trio.Event | None = None
        self._reader_done: trio.Event | None = None
        # The reader runs in this scope; its deadline is the end of the closing phase (item 1).
        self._reader_scope = trio.CancelScope()
        # The Close frames that went each way, for the log line (item 4).
        self._close_received: CloseReason | None = None
        self._close_sent: CloseReason | None = None
        self._failed = False

    async def _handle_close(self, event: Close) -> None:
        received = self._close_received = CloseReason(event.code, event.reason or None)
        if self._protocol.state is State.REMOTE_CLOSING:
            # The peer closes first: answer with the same code (1000 for none), once the handler
            # has caught up.
            self._begin_closing()
            await self._wait_for_handler(received)
            self._closed = received
            await self._send_close(*_answer_to(event.code, event.reason))
        await self._mark_closed(event.code, event.reason or None)
        self._event("_closing_done").set()
        # RFC 6455 section 7.1.1: the server closes TCP first.
        await self._close_tcp()

    async def _close_tcp(self) -> None:
        """Close TCP (a reader waiting for room would never see the socket close: it is woken)."""
        self._reading = False
        self._wake_reader()
        with preserve_current_exception(), contextlib.suppress(trio.BrokenResourceError):
            await self._tcp.aclose()

    async def _tcp_gone(self) -> None:
        # TCP broke under a read or a write, or ended: 1006, and TCP is closed too, so that a
        # reader waiting for room, and anything else waiting on the socket, ends with it.
        self._protocol.state = State.CLOSED
        if self._closed is None:
            await self._mark_closed(1006)
        self._reading = False
        self._event("_closing_done").set()
        await self._close_tcp()

    def _event(self, name: str) -> trio.Event:
        """The event in slot ``name``, made now if it was not needed before."""
        event: trio.Event | None = getattr(self, name)
        if event is None:
            event = trio.Event()
            setattr(self, name, event)
        return event

    async def wait_reader_done(self) -> None:
        """Return once the reader has finished: the close handshake is over or TCP is gone."""
        await self._event("_reader_done").wait()

    # -- 1. the closing phase is bounded ------------------------------------------------

    def _begin_closing(self) -> None:
        """Start the clock: ``close_timeout`` from now, the reader gives up and TCP is dropped."""
        scope = self._reader_scope
        scope.deadline = min(scope.deadline, trio.current_time() + seconds(self._close_timeout))

    async def _answer_close_if_the_socket_is_free(self) -> None:
        """The peer's Close waited for a handler that did not catch up in time: answer it now,
        if no send holds the socket and it takes the frame at once; the handler's replies from
        now on are refused. A send stuck on a peer that stopped reading leaves no such chance."""
        received = self._close_received
        if received is None or self._close_sent is not None or self._write_lock.locked():
            return
        if self._protocol.state is State.REMOTE_CLOSING:
            self._closed = received
            with trio.move_on_after(_CLOSE_FRAME_BUDGET), contextlib.suppress(ConnectionClosed):
                await self._send_close(*_answer_to(received.code, received.reason))

    # -- 2. finish replying before answering a Close ------------------------------------

    def _note_handler_progress(self) -> None:
        self._holding_message = False
        if self._ending is not None and not self._owes_replies():
            self._event("_handler_caught_up").set()

    def _owes_replies(self) -> bool:
        """Whether the handler has a received message it has not answered or asked past."""
        return self._holding_message or self._messages_taken < self._messages_queued

    async def _wait_for_handler(self, ending: CloseReason) -> None:
        """Let the handler answer every message it was given before the connection ends."""
        self._ending = ending
        # get_message() still returns what is queued, then finds the end.
        self._close_inbox()
        if self._owes_replies():
            await self._event("_handler_caught_up").wait()

    # -- 3. close a connection whose peer has stopped answering ---------------------------

    async def close_now(self, code: int, reason: str) -> None:
        """Send Close ``code`` if the socket takes it at once, then close TCP.

        Unlike ``aclose()``, this does not wait for the peer's answer. The
        handler's next ``get_message()`` raises ``ConnectionClosed`` with
        ``code`` and ``reason``. While another task's write holds the socket
        (stuck on a peer that reads nothing, as when keep-alive gives up),
        the frame could only go after it, so it is not waited for.
        """
        patience = 0.0 if self._write_lock.locked() else _CLOSE_FRAME_BUDGET
        await self._send_close_frame(code, reason, patience)
        self._event("_handler_caught_up").set()
        await self._close_tcp()

    async def _send_close_frame(self, code: int, reason: str, patience: float = _CLOSE_FRAME_BUDGET) -> None:
        """Make Close ``code`` our close reason and send it, if the connection is still open.

        The frame goes only if the socket takes it within ``patience`` seconds:
        the caller closes TCP next either way.
        """
        if self._closed is None and self._protocol.state is State.OPEN:
            self._closed = CloseReason(code, reason)
            self._begin_closing()
            with trio.move_on_after(patience), contextlib.suppress(ConnectionClosed):
                await self._send_close(code, reason)

    async def _send_close(self, code: int, reason: str | None) -> None:
        await self._write(self._protocol.send_close(code, reason))
        self._close_sent = CloseReason(code, reason or None)

    # -- 4. fail the connection with a Close frame ------------------------------------

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
        if self._closed is None:  # nothing could be sent, but this is why the connection ended
            self._closed = CloseReason(code, reason)
        self._event("_closing_done").set()
        await self._linger()
        await self._close_tcp()
        # Stops the reader before it handles any event after the bad one.
        raise ConnectionClosed(self._closed)

    async def _linger(self) -> None:
        """Let the peer read our Close before TCP closes, even if it is still sending (``_linger.py``)."""
        with (
            trio.move_on_after(_CLOSE_FRAME_BUDGET),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            # The lock: half-closing must not cut into a frame another task is sending.
            async with self._write_lock:
                await linger(self._tcp)

    # -- 5. our own close reason -----------------------------------------------------------

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


def _answer_to(code: int, reason: str | None) -> tuple[int, str | None]:
    """The Close that answers the peer's: its own code, or 1000 for a Close that carried none
    (1005 may not be sent). RFC 6455 allows an empty answer too; ASP.NET answers 1000, and
    clients such as the official SignalR tests expect it."""
    if code == 1005:
        return 1000, None
    return code, reason


def _code_and_reason(reason: CloseReason) -> str:
    """``4000 (reason)`` for the log; a peer's reason may hold anything, so it is made printable."""
    return f"{reason.code} ({printable(reason.reason)})" if reason.reason else str(reason.code)


@contextlib.contextmanager
def preserve_current_exception() -> Iterator[None]:
    """Inside an ``except`` or ``finally`` that handles an exception, a ``trio.Cancelled``
    raised by the body is dropped, so that it does not hide the exception being handled."""
    handling = sys.exc_info()[1] is not None
    try:
        yield
    except trio.Cancelled:
        if not handling:
            raise
