"""One task for the timers of every connection of a server: Pings, client timeouts, time away.

::

    ConnectionServer.run (_endpoints/server.py)
    └─ server nursery
       ├─ Timers.run                    sleeps until the earliest connection is due, then calls
       │                                its timer_fired(now), and so on
       └─ one task per connection       none of them sleeps for a timer of its own

A connection's timers (the keep-alive Ping, the client timeout, the time
without a transport, a stateful client's Ack) were a task per connection:
a task, its context, its coroutines, an Event and a cancel scope for each
of thousands of idle connections. Here one task serves them all, the
classic timer heap. Rules of this module:

* A connection asks to be looked at (``call_at(when, connection)``) and
  gets an entry it can take back (``cancel(entry)``); at ``when`` or a
  little later the task calls ``connection.timer_fired(now)``, once. What
  it does there must not wait (queue a Ping, close the connection), must
  not raise (a bug is the connection's to contain: it ends that connection
  alone), and asks again for the next time.
* Only the earliest time matters: a connection whose next time moves
  later need not say so (it is looked at, finds nothing due, and asks for
  the later time), one whose time moves sooner cancels its entry and asks
  again. That is what keeps a message free of timer work: the reader and
  the sender only note the time.
* A cancelled entry forgets its connection at once (an ended connection
  is not kept alive by the heap) and is dropped when it comes up, or when
  cancelled entries are more than half the heap.
* The task sleeps in one cancel scope until the earliest time; an earlier
  entry moves that scope's deadline rather than waking the task. trio keeps
  an entry in its own deadline heap for every deadline a scope has had,
  pruned only now and then: a new scope per wake would keep up to a
  thousand finished scopes alive there, where moved deadlines keep only
  small tuples.
"""

from __future__ import annotations

import heapq
import math
from typing import Protocol

import trio

__all__ = ["TimerEntry", "Timed", "Timers"]

# Cancelled entries the heap may hold before it is rebuilt without them (if they are most of it).
_REBUILD_AFTER = 32


class Timed(Protocol):
    """What the timers call: a connection."""

    def timer_fired(self, now: float) -> None: ...  # pragma: no cover (a signature)


class TimerEntry:
    """One time a connection asked to be looked at (``timed`` is ``None`` once cancelled or fired)."""

    __slots__ = ("timed", "when")

    def __init__(self, when: float, timed: Timed) -> None:
        self.when = when
        self.timed: Timed | None = timed

    def __lt__(self, other: TimerEntry) -> bool:
        return self.when < other.when


class Timers:
    """The timers of one server's connections, and the task that fires them (``run``)."""

    __slots__ = ("_cancelled", "_heap", "_sleep")

    def __init__(self) -> None:
        self._heap: list[TimerEntry] = []
        self._cancelled = 0  # cancelled entries still in the heap
        self._sleep: trio.CancelScope | None = None  # the task's sleep, until the earliest entry

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, timed: Timed) -> TimerEntry:
        """Call ``timed.timer_fired(now)`` once, at ``when`` (on ``trio.current_time()``'s clock)."""
        entry = TimerEntry(when, timed)
        heap = self._heap
        heapq.heappush(heap, entry)
        if heap[0] is entry and self._sleep is not None and when < self._sleep.deadline:
            self._sleep.deadline = when  # the task wakes then, not at the later time it slept for
        return entry

    def cancel(self, entry: TimerEntry) -> None:
        """Take ``entry`` back (nothing happens if it has fired already)."""
        if entry.timed is None:
            return
        entry.timed = None
        self._cancelled += 1
        if self._cancelled > _REBUILD_AFTER and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry.timed is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    async def run(self) -> None:
        """Fire the timers as they come due, until cancelled (with the server's nursery)."""
        while True:
            self._fire(trio.current_time())
            with trio.CancelScope(deadline=self._heap[0].when if self._heap else math.inf) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._sleep = None

    def _fire(self, now: float) -> None:
        """Fire the entries due by ``now``. (No reference to the heap outlives this: a rebuilt heap
        lets the old one, and its cancelled entries, go.)"""
        while self._heap and self._heap[0].when <= now:
            entry = heapq.heappop(self._heap)
            timed = entry.timed
            if timed is None:
                self._cancelled -= 1
                continue
            entry.timed = None
            timed.timer_fired(now)  # it may ask again, or cancel (and rebuild the heap)
