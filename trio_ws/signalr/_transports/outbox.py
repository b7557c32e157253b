"""The bytes waiting to go to one client: a bounded queue with room for a goodbye.

Every message for a connection, whoever sends it, is encoded in the
sender's task and put here; the transport attached to the connection takes
them out (``get``) and writes them. Rules:

* The queue holds at most ``limit`` bytes (one message of any size fits in
  an empty queue). ``put`` waits for room; ``put_nowait`` says whether
  there was room, so the caller can apply the slow-client policy.
* Messages that nobody awaits (a ``send`` to many) are marked droppable;
  ``drop_oldest`` removes the oldest of those and nothing else.
* ``close(final)`` adds one last message past the limit (the Close message
  or a handshake refusal) and refuses everything after it; ``get`` then
  hands out what is left and raises ``trio.EndOfChannel``.
* ``get`` joins queued messages into one chunk of at most ``max_bytes``
  (but always at least one message), which the protocols allow and which
  saves frames when a client falls behind.
* ``clear`` forgets what is queued but keeps the queue open: under stateful
  reconnect a new transport starts from the replay buffer instead.
"""

from __future__ import annotations

from collections.abc import Awaitable

import trio
from trio.lowlevel import Task

from ..._parking import parked, wake

__all__ = ["Outbox"]


class Outbox:
    """A bounded queue of encoded messages for one connection."""

    __slots__ = ("_closed", "_items", "_limit", "_readers", "_size", "_writers")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # A list, not a deque: most connections are idle most of the time, an empty deque costs
        # 760 bytes (an empty list 56), and one made per message costs more than the list's
        # shifts (``get_nowait`` takes a run of messages at once).
        self._items: list[tuple[bytes, bool]] = []
        self._size = 0
        self._closed = False
        # Who waits to take (the pump, or a poll; rarely two polls at once), and who waits for
        # room: woken directly, which costs less than a ParkingLot on the path every message
        # takes (and an idle connection's empty list 56 bytes, a ParkingLot's 240).
        self._readers: list[Task] = []
        self._writers: list[Task] = []

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued_bytes(self) -> int:
        return self._size

    @property
    def empty(self) -> bool:
        return not self._items

    @property
    def exhausted(self) -> bool:
        """Closed, and everything queued has been taken: the last message is on its way."""
        return self._closed and not self._items

    def _has_room(self) -> bool:
        return not self._items or self._size < self._limit

    def _append(self, data: bytes, droppable: bool) -> None:
        self._items.append((data, droppable))
        self._size += len(data)
        if self._readers:
            wake(self._readers)

    def _wake_writers(self) -> None:
        if self._writers:
            wake(self._writers)

    def put_nowait(self, data: bytes, *, droppable: bool = False) -> bool:
        """Queue ``data`` if there is room, and say whether it was taken.

        After ``close()`` every message is taken and dropped: the client is gone.
        """
        if self._closed:
            return True
        if not self._has_room():
            return False
        self._append(data, droppable)
        return True

    async def put(self, data: bytes, *, droppable: bool = False) -> None:
        """Queue ``data``, waiting for room first."""
        if self._has_room() or self._closed:
            await trio.lowlevel.checkpoint()
        while not self._has_room() and not self._closed:
            await trio.lowlevel.wait_task_rescheduled(parked(self._writers))
        if not self._closed:
            self._append(data, droppable)

    def force_put(self, data: bytes, *, droppable: bool = False) -> None:
        """Queue ``data`` past the limit (unless closed): for one message, never a habit."""
        if not self._closed:
            self._append(data, droppable)

    def drop_oldest(self) -> bool:
        """Drop the oldest droppable message; ``False`` if there is none."""
        items = self._items
        for index, (data, droppable) in enumerate(items):
            if droppable:
                del items[index]
                self._size -= len(data)
                self._wake_writers()
                return True
        return False

    def close(self, final: bytes | None = None) -> None:
        """Queue ``final`` (past the limit) as the last message, and take no more."""
        if self._closed:
            return
        if final is not None:
            self._append(final, False)
        self._closed = True
        wake(self._readers)
        self._wake_writers()

    def discard(self) -> None:
        """Close and forget everything queued: nobody is left to send it to."""
        self.clear()
        self.close()

    def clear(self) -> None:
        """Forget everything queued, and stay open."""
        self._items.clear()
        self._size = 0
        self._wake_writers()

    async def wait_writable(self) -> None:
        """Wait until there is room, or the queue is closed."""
        if self._has_room() or self._closed:
            await trio.lowlevel.checkpoint()
            return
        while not (self._has_room() or self._closed):
            await trio.lowlevel.wait_task_rescheduled(parked(self._writers))

    def wait_readable(self) -> Awaitable[None]:
        """Wait until something is queued or the queue is closed, or (rarely) for a wake that
        brought neither: the caller looks (``get_nowait``), and waits again if need be.

        Not a coroutine of its own: it hands back trio's wait, so the pump, idle in it for most
        of a connection's life, keeps one coroutine frame fewer alive (about 220 bytes).
        """
        if self._items or self._closed:
            return trio.lowlevel.checkpoint()  # noqa: ASYNC105 (the caller awaits it)
        return trio.lowlevel.wait_task_rescheduled(parked(self._readers))  # noqa: ASYNC105 (the caller awaits it)

    def get_nowait(self, max_bytes: int) -> bytes:
        """Queued messages joined into one chunk, without waiting.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel: closed, and everything has been taken.
        """
        items = self._items
        if not items:
            if self._closed:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        chunk = items[0][0]
        taken, total = 1, len(chunk)
        while taken < len(items) and total + len(items[taken][0]) <= max_bytes:
            total += len(items[taken][0])
            taken += 1
        if taken > 1:
            chunk = b"".join([data for data, _ in items[:taken]])
        del items[:taken]  # one shift for the run, not one per message
        self._size -= len(chunk)
        self._wake_writers()
        return chunk

    async def get(self, max_bytes: int) -> bytes:
        """Like ``get_nowait``, but waits for a message.

        A get that waited has been through the scheduler already; only one
        that did not takes a schedule point, so a woken reader sends at once
        instead of waiting one more turn.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                chunk = self.get_nowait(max_bytes)
            except trio.WouldBlock:
                await trio.lowlevel.wait_task_rescheduled(parked(self._readers))
                waited = True
            else:
                if not waited:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return chunk
