"""Tasks parked in a plain list: the waits a connection keeps, at the cost of a list each.

A server holds thousands of connections, and most of each one's waits are
rare (a transport to come back, the goodbye to go out, the end) or have
one waiter at a time (the pump, a poll, the invoker). A ``trio.Event``
costs 272 bytes even once set, a ``ParkingLot`` 240; an empty list 56.
The pattern is a condition variable's::

    while not condition():
        await trio.lowlevel.wait_task_rescheduled(parked(waiters))
    ...
    change the state; wake(waiters)      # each waiter looks at its condition again

Rules: whoever changes the state a waiter looks at wakes the list; a woken
task looks again (a wake may not be for it); a cancelled waiter leaves the
list itself (the abort function ``parked`` returns).

``Slots`` is ``trio.Semaphore`` (and, with one slot, ``trio.StrictFIFOLock``)
built the same way, for the ones every connection keeps: its write lock,
its hub calls' slots.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import trio
from trio.lowlevel import Abort, Task

__all__ = ["Slots", "parked", "wake"]


def parked(waiters: list[Task]) -> Callable[[object], Abort]:
    """Put the current task in ``waiters``; what ``wait_task_rescheduled`` calls if it is cancelled.

    (A function, not a coroutine: a parked task's await chain is one frame shorter.)
    """
    task = trio.lowlevel.current_task()
    waiters.append(task)
    return _Unpark(waiters, task)


class _Unpark:
    """Take a cancelled task out of the list it waits in.

    An object with slots, not a closure: it lives as long as the wait, and an idle
    connection's waits last its whole life (48 bytes, where a closure and its cells take 290).
    """

    __slots__ = ("_task", "_waiters")

    def __init__(self, waiters: list[Task], task: Task) -> None:
        self._waiters = waiters
        self._task = task

    def __call__(self, _: object) -> Abort:
        self._waiters.remove(self._task)
        return Abort.SUCCEEDED


def wake(waiters: list[Task]) -> None:
    """Wake every task in ``waiters``."""
    for task in waiters:
        trio.lowlevel.reschedule(task)
    waiters.clear()


class Slots:
    """A first-come, first-served semaphore: ``count`` tasks at most hold a slot at once.

    What ``trio.Semaphore`` does (``trio.StrictFIFOLock`` with ``count=1``,
    without its check of who releases), at 110 bytes where those cost 330
    (their ``ParkingLot``). A released slot goes straight to the task that
    has waited longest, so no newcomer overtakes it.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"Slots needs at least one slot, not {count}")
        self._free = count
        self._waiters: list[Task] = []

    def locked(self) -> bool:
        """Whether every slot is taken (an ``acquire`` would wait)."""
        return self._free == 0

    def acquire_nowait(self) -> None:
        """Take a slot if one is free now.

        Raises:
            trio.WouldBlock: every slot is taken.
        """
        if self._free == 0:
            raise trio.WouldBlock
        self._free -= 1

    async def acquire(self) -> None:
        """Take a slot, waiting for one if need be (a checkpoint, as trio's locks are)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._free == 0:
            await trio.lowlevel.wait_task_rescheduled(parked(self._waiters))  # release() hands one over
        else:
            self._free -= 1
            await trio.lowlevel.cancel_shielded_checkpoint()

    def release(self) -> None:
        """Give a slot back: to the task that has waited longest, if any waits."""
        if self._waiters:
            trio.lowlevel.reschedule(self._waiters.pop(0))
        else:
            self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
