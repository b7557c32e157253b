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
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from trio.lowlevel import Abort, Task

__all__ = ["parked", "wake"]


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
