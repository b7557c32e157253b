"""Stateful reconnect: sequence numbers, acknowledgements and the bounded replay buffer.

Under stateful reconnect (HubProtocol.md, "Ack" and "Sequence"; negotiated
with ``useStatefulReconnect`` and a handshake of version 2) a connection
survives a dropped WebSocket: the client opens a new one to the same token,
and each side sends again what the other has not acknowledged. One
``Replay`` per connection keeps the books for both directions. Rules:

* Only the "trackable" messages count: Invocation, StreamItem, Completion,
  StreamInvocation and CancelInvocation (types 1 to 5). Each side numbers
  what it sends from 1, never resets, and does not send the numbers: both
  count.
* Sending: every trackable message is ``record``-ed, in the order it goes
  out, and kept until the client's Ack covers it. At most ``limit`` bytes
  wait for an Ack (one message of any size fits in an empty buffer); a
  sender finding no room waits (``wait_for_room``): that is the
  backpressure. Sends to many, which may not wait, check against a larger
  bound of their own (``has_room(limit)``, ``HubOptions.away_buffer_size``).
  ``replay()`` gives what a new transport must carry: the Sequence id, then
  every message still unacknowledged.
* The Sequence id is the id of the oldest unacknowledged message, or the
  number sent plus one when none waits. That is what ASP.NET and the
  TypeScript client send, whatever the newest spec text says.
* Receiving: after a reconnect, everything before the client's Sequence is
  ignored; a Sequence ahead of what was received is a protocol error;
  trackable messages whose number was already received are duplicates and
  dropped (``accept``). What was received is acknowledged at most once a
  second (``ack_due``), as ASP.NET does.

Pure bookkeeping, apart from the one wait: no I/O, so it is tested by
calling it.
"""

from __future__ import annotations

from collections import deque

import trio
from trio.lowlevel import ParkingLot

from .._protocol.errors import ProtocolError
from .._protocol.messages import HubMessage, Sequence_, is_trackable

__all__ = ["DEFAULT_BUFFER_SIZE", "Replay"]

DEFAULT_BUFFER_SIZE = 100_000
"""Bytes that may wait for an Ack, as ASP.NET's ``StatefulReconnectBufferSize``."""


class Replay:
    """One connection's stateful-reconnect books, both ways."""

    def __init__(self, limit: int = DEFAULT_BUFFER_SIZE) -> None:
        self.limit = limit
        # Sending: (sequence id, encoded bytes) not yet acknowledged, oldest first.
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._unacked_bytes = 0
        self._sent = 0
        self._room = ParkingLot()
        self._closed = False
        # Receiving.
        self._next_id = 1  # the number the next trackable message from the client has
        self._received = 0  # the highest number processed
        self._acked = 0  # the highest number acknowledged to the client
        self.waiting_for_sequence = False

    # -- sending ------------------------------------------------------------------------------

    @property
    def unacked_bytes(self) -> int:
        return self._unacked_bytes

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    def has_room(self, limit: int | None = None) -> bool:
        """Whether a message may be recorded now, with at most ``limit`` bytes (default: the
        buffer's own) waiting for an Ack; always, once closed: nothing waits for a dead connection."""
        return (
            self._closed
            or not self._unacked
            or self._unacked_bytes < (self.limit if limit is None else limit)
        )

    async def wait_for_room(self) -> None:
        """Wait until an Ack makes room (or the connection ends, see ``close``)."""
        if self.has_room():
            await trio.lowlevel.checkpoint()
            return
        while not self.has_room():
            await self._room.park()

    def record(self, data: bytes) -> int:
        """Number a trackable message about to go out, and keep it until acknowledged."""
        self._sent += 1
        if not self._closed:
            self._unacked.append((self._sent, data))
            self._unacked_bytes += len(data)
        return self._sent

    def ack(self, sequence_id: int) -> None:
        """The client has everything up to ``sequence_id``: forget it, and let senders in."""
        unacked = self._unacked
        while unacked and unacked[0][0] <= sequence_id:
            _, data = unacked.popleft()
            self._unacked_bytes -= len(data)
        if self.has_room():
            self._room.unpark_all()

    def replay(self) -> tuple[Sequence_, list[bytes]]:
        """What a new transport carries first: the Sequence message, then every unacknowledged message."""
        first = self._unacked[0][0] if self._unacked else self._sent + 1
        return Sequence_(first), [data for _, data in self._unacked]

    def close(self) -> None:
        """The connection has ended: drop what was kept, and wake whoever waits for room."""
        self._closed = True
        self._unacked.clear()
        self._unacked_bytes = 0
        self._room.unpark_all()

    # -- receiving ----------------------------------------------------------------------------

    def reconnected(self) -> None:
        """A new transport took over: ignore the client until its Sequence message."""
        self.waiting_for_sequence = True

    def accept(self, message: HubMessage) -> bool:
        """Whether to act on ``message`` from the client (``False``: ignore or drop it).

        Raises:
            ProtocolError: a Sequence ahead of what was received (a message would be lost).
        """
        if self.waiting_for_sequence:
            if not isinstance(message, Sequence_):
                return False
            self.waiting_for_sequence = False
        if isinstance(message, Sequence_):
            if message.sequence_id > self._next_id:
                raise ProtocolError(
                    f"Sequence ID {message.sequence_id} greater than amount of messages we've received "
                    f"({self._next_id - 1})."
                )
            self._next_id = message.sequence_id
            return False
        if not is_trackable(message):
            return True
        number = self._next_id
        self._next_id += 1
        if number <= self._received:
            return False  # sent again after a reconnect, and already processed
        self._received = number
        return True

    def ack_due(self) -> int | None:
        """The number to acknowledge now, or ``None`` when nothing new arrived since the last Ack."""
        if self._received > self._acked:
            return self._received
        return None

    def acked(self, sequence_id: int) -> None:
        """An Ack for ``sequence_id`` went out."""
        self._acked = max(self._acked, sequence_id)
