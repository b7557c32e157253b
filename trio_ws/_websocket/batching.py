"""The handler's inbox and outbox: many messages per trip through the scheduler, one write for many replies.

trio-websocket hands each message to the handler through a memory channel
and writes each reply with its own ``send``: every message costs a
``send`` system call and about four trips through trio's run queue, whatever
the traffic. Here a connection has an inbox (the messages the reader has put
together from what it read) and an outbox (reply frames not yet
written), with these rules:

* ``get_message()`` takes the next message from the inbox. When there is
  one, it does not wait, so a handler answers all the messages of one read
  in one step; it stays a cancel point every time and takes a schedule point
  every ``MESSAGES_PER_TURN`` messages, so one busy connection cannot keep
  the others waiting. Only when the inbox is empty does it wait, after
  writing the outbox.
* ``send_message()`` is written at once, unless the handler already has
  more received messages to answer: then it waits in the outbox for the
  replies to those, and goes out with them in one ``send``. It never waits
  longer than the handler's current step: the reader, woken when the first
  reply is held back, writes the outbox when it next runs, and so does the
  handler itself once its inbox is empty. A lone reply goes out at once.
* Every write takes the write lock and writes the outbox first, so frames
  keep their order (a Close never overtakes a reply) and are never
  interleaved. The lock is taken without a trip through the scheduler when
  it is free.
* One write takes no lock, because it never waits: ``_write_now``, for a
  sender that must not await a write (``connection.py``'s ``_send_now``,
  used by the hubs). It runs only on plain TCP, with the outbox empty, the
  lock free and the connection open, and frames its message in the same
  step: every other frame is built by a task that writes it under the lock
  or puts it in the outbox in its own step, so nothing can be framed
  between, and the order holds, compressed (permessage-deflate) or not. It
  makes one non-blocking system call; what the socket does not take (all
  of it, when it has no room or is broken) is put at the head of the
  outbox, where every later frame waits behind it and the next write sends
  it first (and finds the error, if any); the caller sees that a write
  comes. No cancellation can cut it in half: there is no ``await`` in it.
* The outbox holds the pieces to write in order: whole frames, and the
  header and the payload of a long frame apart (see ``protocol.py``).
  Several pieces that make ``LONG_PAYLOAD`` bytes or more go out with one
  ``writev`` (``send_pieces``) on plain TCP, so a long payload is never
  copied to join it to its header or to the frames around it; shorter
  ones, and all of them on any other stream, are joined into one
  ``bytes`` (copying a few short frames costs less than a ``writev`` of
  them).
* Bytes are read and written through ``direct_socket.direct_io``: on plain
  TCP the socket itself, with no trip through the scheduler when it is
  ready; on any other stream, the stream's own methods.
* The inbox holds at most ``max(1, message_queue_size)`` messages before
  the reader stops reading from the socket (it does put together the whole
  frames already read, at most ``MESSAGES_PER_TURN`` of them), so what a
  peer that never reads can pin stays bounded (see ``reader.py``). If a
  write holds the socket meanwhile, the reader is woken to watch the
  socket for control frames, the end of the stream or a reset until the
  write is done: a write can be stuck on a peer that stopped reading.

The frames come from the protocol (``protocol.py``); nothing here reaches
into trio-websocket or wsproto.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import trio
from trio_websocket import CloseReason, ConnectionClosed

from .._parking import Slots, parked
from .._printable import printable
from .direct_socket import MOST_PIECES, ByteStream, DirectSocket, direct_io
from .frames import LONG_PAYLOAD
from .protocol import Protocol

if TYPE_CHECKING:
    from .._observe.metrics import WebSocketTally

__all__ = ["MESSAGES_PER_TURN", "BatchedIO"]

_logger = logging.getLogger("trio_ws.websocket")

# The most messages the handler takes (and the reader puts together) between two schedule points.
MESSAGES_PER_TURN = 64
# Held-back replies are written once they reach this many bytes, whatever else is queued.
_OUTBOX_LIMIT = 64 * 1024


class BatchedIO:
    """A connection's inbox and outbox, as the module docstring describes them."""

    __slots__ = (
        "_closed",
        "_handler_tasks",
        "_handler_woken",
        "_inbox",
        "_inbox_closed",
        "_inbox_limit",
        "_io",
        "_outbox",
        "_outbox_size",
        "_pieces",
        "_protocol",
        "_reader_task_waiting",
        "_reader_yielding",
        "_taken",
        "_tcp",
        "_watch_scope",
        "_write_lock",
        "tally",
    )

    def __init__(self, stream: trio.abc.Stream, protocol: Protocol, message_queue_size: int) -> None:
        self._tcp = stream
        self._protocol = protocol
        # Every write holds it, so frames are never interleaved (see the module docstring).
        self._write_lock = Slots(1)
        # Why the connection was or is being closed, once it is; the public ``closed``.
        self._closed: CloseReason | None = None
        # Where bytes are read and written: the socket itself for plain TCP (see _websocket/direct_socket.py).
        self._io: ByteStream = direct_io(stream)
        # The most outbox pieces written without joining them: one writev's worth on plain TCP.
        self._pieces = MOST_PIECES if isinstance(self._io, DirectSocket) else 1
        # A list, not a deque: it never holds more than MESSAGES_PER_TURN, and an empty deque
        # costs 600 bytes more, on every idle connection.
        self._inbox: list[str | bytes] = []
        # The reader reads from the socket only while fewer messages than this wait.
        self._inbox_limit = max(1, message_queue_size)
        # No message will come any more: get_message() raises once the inbox is empty.
        self._inbox_closed = False
        self._outbox: list[bytes] = []  # pieces of frames, in order
        self._outbox_size = 0  # bytes in the outbox
        # The tasks waiting in get_message() (first come, first served; usually one), and the
        # reader waiting to be told to go on.
        self._handler_tasks: list[trio.lowlevel.Task] = []
        # The handler was woken for a message it has not taken yet: the reader need not wait for that.
        self._handler_woken = False
        self._reader_task_waiting: trio.lowlevel.Task | None = None
        # Set while the reader watches the socket during a write (``_websocket/connection.py``): cancelling it
        # wakes the reader, as rescheduling it does when it waits in _reader_wait.
        self._watch_scope: trio.CancelScope | None = None
        # The reader is letting a write finish before it watches the socket: it runs again soon.
        self._reader_yielding = False
        # Messages taken since the handler's last schedule point.
        self._taken = 0
        #: Where messages and bytes are counted for ``/metrics``; ``None`` with metrics off.
        self.tally: WebSocketTally | None = None

    # -- the inbox ------------------------------------------------------------------------

    def _put(self, message: str | bytes) -> None:
        """The reader's side: one more whole message for the handler."""
        self._inbox.append(message)
        self._wake_handler()

    def _close_inbox(self, *, discard: bool = False) -> None:
        """No more messages will come; the handler gets what is queued (unless ``discard``), then the end."""
        self._inbox_closed = True
        if discard:
            self._inbox.clear()
        while self._handler_tasks:
            self._wake_handler()

    def _wake_handler(self) -> None:
        if self._handler_tasks:
            self._handler_woken = True
            trio.lowlevel.reschedule(self._handler_tasks.pop(0))

    def _inbox_full(self) -> bool:
        """Whether the reader should wait before it reads (or puts together) more."""
        return len(self._inbox) - self._handler_woken >= self._inbox_limit and not self._inbox_closed

    async def _take(self) -> str | bytes:
        """The next message, waiting for one if need be; ``ConnectionClosed`` once there are no more."""
        inbox = self._inbox
        if inbox:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._taken += 1
            if self._taken >= MESSAGES_PER_TURN:
                self._taken = 0
                await trio.lowlevel.cancel_shielded_checkpoint()  # let the others have a turn
        else:
            # About to wait: the replies held back for this step go out first.
            await self._flush()
            while not inbox:
                if self._inbox_closed:
                    await trio.lowlevel.checkpoint()
                    raise ConnectionClosed(self._closed)
                await trio.lowlevel.wait_task_rescheduled(parked(self._handler_tasks))
            self._taken = 0
        self._handler_woken = False
        message = inbox.pop(0)
        if not self._inbox_full():
            self._wake_reader()
        return message

    # -- the reader's waits -----------------------------------------------------------------

    async def _reader_wait(self) -> None:
        """Wait until ``_wake_reader`` (room in the inbox, replies to write, or the end)."""
        self._reader_task_waiting = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort_reader_wait)

    def _abort_reader_wait(self, _: object) -> trio.lowlevel.Abort:
        self._reader_task_waiting = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake_reader(self) -> None:
        task = self._reader_task_waiting
        if task is not None:
            self._reader_task_waiting = None
            trio.lowlevel.reschedule(task)
        elif self._watch_scope is not None:
            self._watch_scope.cancel()

    # -- the outbox ---------------------------------------------------------------------------

    async def send_message(self, message: str | bytes) -> None:
        if self._closed:
            raise ConnectionClosed(self._closed)
        if not isinstance(message, str | bytes):
            raise ValueError("message must be str or bytes")
        frame = self._protocol.send_message(message)
        outbox = self._outbox
        # Replies held back before this one: the reader was woken for them.
        others_held = bool(outbox)
        if isinstance(frame, tuple):
            header, payload = frame  # a long frame, in two pieces
            outbox += frame
            self._outbox_size += len(header) + len(payload)
        else:
            outbox.append(frame)
            self._outbox_size += len(frame)
        # More received messages wait for replies: hold this one back, to go out with theirs. The
        # reader (waiting for room or watching the socket, and woken by the first reply held back)
        # writes the outbox when it next runs, after this step of the handler's, unless the handler
        # has done it by then.
        if (
            self._inbox
            and (
                others_held
                or self._reader_task_waiting is not None
                or self._watch_scope is not None
                or self._reader_yielding
            )
            and self._outbox_size < _OUTBOX_LIMIT
        ):
            self._wake_reader()
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        await self._flush()

    def _write_now(self, frame: bytes | tuple[bytes, bytes]) -> int:
        """Write ``frame`` at once, without waiting: for ``_send_now`` (``connection.py``), which
        calls it only on plain TCP, with the outbox empty and the write lock free.

        What the socket does not take (all of it when it has no room, or when it is broken) waits
        at the head of the outbox, as one piece, for the next write, which finds any error. How
        many bytes wait.
        """
        if isinstance(frame, tuple):
            pieces: tuple[bytes, ...] = frame
            size = len(frame[0]) + len(frame[1])
        else:
            pieces = (frame,)
            size = len(frame)
        io: DirectSocket = self._io  # type: ignore[assignment]  # (no cast: this runs for every delivery)
        try:
            sent = io.send_now(pieces)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            sent = 0  # the next write raises it again, and ends the connection as a failed write does
        if _logger.isEnabledFor(logging.DEBUG):
            _logger.debug("%s sent %d bytes at once", self, sent)
        if self.tally is not None:
            self.tally.bytes_out += sent
        if sent == size:
            return 0
        rest = b"".join(pieces)[sent:]
        self._outbox.append(rest)
        self._outbox_size += len(rest)
        return len(rest)

    async def _flush(self) -> None:
        """Write the outbox, if there is anything in it."""
        if self._outbox:
            await self._write(b"")

    async def _tcp_gone(self) -> None:
        """TCP broke under a write: the connection ends (``connection.py`` does the rest)."""
        raise NotImplementedError

    def _take_outbox(self, then: bytes = b"") -> bytes | list[bytes]:
        """The pieces held back, followed by ``then``, as one ``bytes`` or as a list for
        ``send_pieces`` (see the module docstring); the outbox is empty after."""
        outbox = self._outbox
        if not outbox:
            return then
        if then:
            outbox.append(then)
        if len(outbox) == 1:
            data: bytes | list[bytes] = outbox[0]  # one piece: no copy
        elif len(outbox) <= self._pieces and self._outbox_size + len(then) >= LONG_PAYLOAD:
            data = outbox[:]
        else:
            data = b"".join(outbox)  # short pieces: joining them costs less than writev's bookkeeping
        outbox.clear()
        self._outbox_size = 0
        return data

    async def _send_out(self, data: bytes | list[bytes]) -> None:
        """Send what ``_take_outbox`` gave."""
        if type(data) is list:
            assert isinstance(self._io, DirectSocket)
            await self._io.send_pieces(data)
        else:
            assert isinstance(data, bytes)
            await self._io.send_all(data)

    async def _write(self, data: bytes) -> None:
        """Send the outbox, then ``data``, in one system call under the write lock."""
        lock = self._write_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        if self._reader_task_waiting is not None:
            self._wake_reader()  # to watch the socket while this write holds it, as _writing() says
        try:
            out = self._take_outbox(data)
            if not out:
                await trio.lowlevel.checkpoint()
                return
            if _logger.isEnabledFor(logging.DEBUG):
                size = sum(map(len, out)) if type(out) is list else len(out)
                _logger.debug("%s sending %d bytes", self, size)
            if self.tally is not None:
                self.tally.bytes_out += sum(map(len, out)) if type(out) is list else len(out)
            try:
                if type(out) is list:  # as _send_out, without a coroutine more per write
                    await cast("DirectSocket", self._io).send_pieces(out)
                else:
                    await self._io.send_all(cast("bytes", out))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._tcp_gone()
                assert self._closed is not None
                raise ConnectionClosed(self._closed) from None
        finally:
            lock.release()
            if self._watch_scope is not None:
                self._watch_scope.cancel()  # as _written() does

    def _writing(self) -> None:
        """A write has the write lock: a reader waiting for room must watch the socket meanwhile
        (the write may be stuck on a peer that has stopped reading; see ``_websocket/connection.py``)."""
        if self._reader_task_waiting is not None:
            self._wake_reader()

    def _written(self) -> None:
        """The stream lock is free again: a reader watching the socket goes back to its own work."""
        if self._watch_scope is not None:
            self._watch_scope.cancel()

    # -- the end ------------------------------------------------------------------------------

    async def _mark_closed(self, code: int, reason: str | None = None) -> None:
        """Record why the connection ended; the handler's get_message() raises once the inbox is empty."""
        self._closed = CloseReason(code, reason)
        _logger.debug("%s websocket closed with %d (%s)", self, code, printable(reason or ""))
        self._close_inbox()
        await trio.lowlevel.checkpoint()
