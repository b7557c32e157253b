"""The Redis link's outbox: sends waiting to be published, and how they are batched.

Rules of this module:

* Sends are kept in the order they were made, and leave it only once
  Redis has taken them (``peek`` then ``confirm``): one sent during a
  failure is sent again after it.
* The outbox is bounded in bytes (``buffer_size``); one send always fits
  into an empty outbox, so a message longer than the bound is never
  refused for its size alone.
* Consecutive messages for one channel go as one ``wire.Batch`` (up to
  ``_BATCH_BYTES``): one PUBLISH for Redis to fan out, one message for each
  subscriber to read.
"""

from __future__ import annotations

from collections import deque

import trio

from . import redis_wire as wire

__all__ = ["Outbox", "joined"]

_BATCH_BYTES = 64 * 1024  # most bytes joined into one wire.Batch; a longer message goes on its own


class Outbox:
    """Sends waiting to be published, in order, bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: deque[tuple[str, bytes]] = deque()
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def fits(self, data: bytes) -> bool:
        return not self._items or self.size + len(data) <= self.limit

    def append(self, channel: str, data: bytes) -> None:
        self._items.append((channel, data))
        self.size += len(data)
        self.wake()

    def peek(self, count: int) -> list[tuple[str, bytes]]:
        return [self._items[i] for i in range(min(count, len(self._items)))]

    def confirm(self, count: int) -> None:
        for _ in range(count):
            self.size -= len(self._items.popleft()[1])
        self.wake()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def wake(self) -> None:
        """Wake whoever waits for room: it has changed, or the link has (a sender then fails)."""
        self._changed.set()
        self._changed = trio.Event()


def joined(batch: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``batch``'s messages as PUBLISH commands, in order: each run of messages for one channel
    becomes one ``wire.Batch`` (up to ``_BATCH_BYTES``), and a lone message goes as it is."""
    runs: list[tuple[str, list[bytes]]] = []
    size = 0
    for channel, data in batch:
        if runs and runs[-1][0] == channel and size + len(data) <= _BATCH_BYTES:
            runs[-1][1].append(data)
            size += len(data)
        else:
            runs.append((channel, [data]))
            size = len(data)
    return [(channel, run[0] if len(run) == 1 else wire.encode(wire.Batch(run))) for channel, run in runs]
