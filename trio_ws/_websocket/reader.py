"""The reader task of a server WebSocket: socket bytes to the protocol, its events to the connection.

Rules (what ``connection.py`` builds on):

* It takes a checkpoint every ``EVENTS_PER_CHECKPOINT`` messages or events,
  so a peer that packs tens of thousands of tiny frames into one read
  (empty fragments, unsolicited Pongs) cannot keep every other connection
  waiting while they are handled.
* It reads from the socket only while the handler keeps up: while
  ``message_queue_size`` messages (at least one) wait for the handler, it
  waits too, instead of reading and putting together the next message (it
  puts together the whole frames of the last read, up to
  ``MESSAGES_PER_TURN`` messages, so that the handler can answer them in
  one step). What a peer that sends and never reads can pin is then the
  message the handler holds, those queued, and at most one read of bytes.
* While it waits for room and another task's write holds the socket
  (perhaps stuck on a peer that reads nothing), it still reads, a little at
  a time and only up to a data frame, and acts on the control frames it
  finds (``_watch``): a Close starts the closing phase, a Pong reaches the
  keep-alive, and the end of the stream or a reset ends the connection. A
  Ping is answered behind the write under way. Data frames wait, as bytes,
  until there is room.
* Frames that came in the same read as the request head are the
  connection's first bytes: they are parsed once the 101 has gone, and
  nothing is read before that.
* On plain TCP a read is appended straight to the protocol's buffer
  (``direct_socket.py``); other streams' reads go through ``receive_data``.
"""

from __future__ import annotations

import trio
from trio_websocket import ConnectionClosed

from .batching import MESSAGES_PER_TURN, BatchedIO
from .direct_socket import DirectSocket
from .protocol import Protocol, Received, State

__all__ = ["EVENTS_PER_CHECKPOINT", "Reader"]

# Handling one event takes a microsecond or two; 64 of them between checkpoints
# keep another connection's wait far below a millisecond, for about 1% more work.
EVENTS_PER_CHECKPOINT = 64
# What a reader watching the socket during a write reads at a time: room for any control frame
# (131 bytes at most), little for a peer that sends data meanwhile (see _watch).
_WATCH_READ = 1024


class Reader(BatchedIO):
    """The reader task's loop; what each event does is ``connection.py``'s (``_handle_event``)."""

    __slots__ = ("_early_bytes", "_read_size", "_reading")

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: Protocol,
        *,
        message_queue_size: int,
        read_size: int,
        early_bytes: bytes,
    ) -> None:
        super().__init__(stream, protocol, message_queue_size)
        # The most bytes one read asks for.
        self._read_size = read_size
        # Bytes that came after the request head, in the same read: the connection's first frames.
        self._early_bytes = early_bytes
        # Cleared when the reader must stop: the connection is over.
        self._reading = True

    async def _handle_event(self, event: Received) -> None:
        """Act on a Ping, Pong, Close or Failure (``connection.py``)."""
        raise NotImplementedError

    def _queue_message(self, message: str | bytes) -> None:
        """Hand a whole message to the handler (``connection.py``)."""
        raise NotImplementedError

    async def _read(self) -> None:
        protocol = self._protocol
        inbox = self._inbox
        budget = EVENTS_PER_CHECKPOINT
        while self._reading:
            capped = False
            for item in protocol.events():
                if type(item) is str or type(item) is bytes:
                    self._queue_message(item)  # a whole message
                else:
                    try:
                        await self._handle_event(item)
                    except ConnectionClosed:
                        self._reading = False
                        break
                budget -= 1
                if not budget:
                    budget = EVENTS_PER_CHECKPOINT
                    await trio.lowlevel.checkpoint()  # let other connections have a turn
                if len(inbox) >= MESSAGES_PER_TURN:
                    capped = True  # the rest of this read waits in the protocol's buffer, as bytes
                    break
            if not self._reading:
                break
            try:
                await self._wait_for_room()
            except ConnectionClosed:
                break  # writing the replies held back found TCP gone: the socket is closed, 1006
            if capped:
                continue  # put together the rest of the last read before reading more
            if self._early_bytes:
                # Frames that came with the request head: the connection's first bytes.
                protocol.receive_data(self._early_bytes)
                if self.tally is not None:
                    self.tally.bytes_in += len(self._early_bytes)
                self._early_bytes = b""
                continue
            try:
                io = self._io
                if type(io) is DirectSocket and io.drained:
                    # An idle connection's reader spends its life in this wait. Made here, not
                    # inside _receive, it keeps two coroutine frames fewer alive (~500 bytes).
                    await io.wait_readable()
                came = await self._receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._tcp_gone()
                break
            if not came:
                if protocol.state is not State.CLOSED:
                    await self._tcp_gone()  # TCP closed before the WebSocket: 1006
                break

    async def _receive(self, max_bytes: int | None = None) -> int:
        """Read once, ``receive_buffer_size`` bytes at most unless ``max_bytes`` says fewer, give
        the protocol what came and count it for ``/metrics``; how many bytes came (0: the peer
        closed TCP)."""
        io = self._io
        size = max_bytes or self._read_size
        if type(io) is DirectSocket:
            came = await io.receive_into(self._protocol.buffer, size)
        else:
            data = await io.receive_some(size)
            self._protocol.receive_data(data)
            came = len(data)
        if self.tally is not None:
            self.tally.bytes_in += came
        return came

    async def _wait_for_room(self) -> None:
        """Write the replies held back, then wait while the inbox is full (see ``batching.py``).

        While another task's write holds the socket, the reader does not wait for it: that write
        may be stuck on a peer that has stopped reading, so the reader watches the socket instead
        (``_watch``) until the write is done, if it has replies to write or no room to read into.
        """
        while True:
            if self._outbox:
                if self._write_lock.locked():
                    if not self._reading:
                        return
                    await self._watch()
                    continue
                await self._write(b"")
            if not (self._reading and self._inbox_full()):
                return
            if self._write_lock.locked():
                await self._watch()
            else:
                await self._reader_wait()

    async def _watch(self) -> None:
        """Read while a write holds the socket, and act on the control frames that come, until the
        write is done or the inbox has room (the third rule of the module docstring).

        Data frames are not put together here: a data frame at the head of the buffer stops the
        reading (what follows it waits with it), so a watching reader holds at most
        ``_WATCH_READ`` bytes more than a waiting one.
        """
        protocol = self._protocol
        # Most writes end in a moment (one that needs no wait still takes a schedule point now and
        # then, holding the socket): let it, and watch only a write that is still going. The flag
        # tells a handler that holds back a reply meanwhile that the reader will write it.
        self._reader_yielding = True
        try:
            await trio.lowlevel.checkpoint()
        finally:
            self._reader_yielding = False
        while self._reading:
            for event in protocol.control_events():
                try:
                    await self._handle_event(event)
                except ConnectionClosed:
                    self._reading = False
                    return
            if not self._write_lock.locked() or not self._reading:
                return
            came = -1
            with trio.CancelScope() as self._watch_scope:
                try:
                    if not protocol.control_frame_next() or not protocol.receiving:
                        await trio.sleep_forever()  # data waits at the head: until room, or the write is done
                    came = await self._receive(_WATCH_READ)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    came = 0
                finally:
                    self._watch_scope = None
            if not came:  # the stream ended, or broke: the connection is over
                if protocol.state is not State.CLOSED:
                    await self._tcp_gone()
                self._reading = False
            elif came < 0:
                return  # woken: the write is done, or there is room
