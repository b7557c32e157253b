"""The server's one timer task (``_transports/timers.py``), with ``autojump_clock``: each
connection's time comes in order and on time, a sooner time replaces a later one, and a
cancelled entry neither fires nor keeps its connection."""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
import trio.testing

from trio_ws.signalr._transports.timers import Timers


class Clocked:
    """Stands for a connection: notes when it fired, and may ask again."""

    def __init__(self, name: str, fired: list[tuple[str, float]], again: float | None = None) -> None:
        self.name = name
        self.fired = fired
        self.again = again
        self.timers: Timers | None = None

    def timer_fired(self, now: float) -> None:
        self.fired.append((self.name, now))
        if self.again is not None and self.timers is not None:
            self.timers.call_at(now + self.again, self)


async def test_each_fires_once_at_its_time_in_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    timers = Timers()
    nursery.start_soon(timers.run)
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    for name, delay in [("c", 30.0), ("a", 10.0), ("b", 20.0)]:
        timers.call_at(start + delay, Clocked(name, fired))
    await trio.sleep(100)
    assert [name for name, _ in fired] == ["a", "b", "c"]
    assert [when - start for _, when in fired] == pytest.approx([10, 20, 30])
    assert len(timers) == 0


async def test_a_time_asked_while_it_sleeps_wakes_it_sooner(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The task sleeps until the earliest entry; an earlier one asked meanwhile is not late."""
    timers = Timers()
    nursery.start_soon(timers.run)
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    timers.call_at(start + 60, Clocked("late", fired))
    await trio.sleep(5)
    timers.call_at(trio.current_time() + 1, Clocked("soon", fired))
    await trio.sleep(1.5)
    assert [name for name, _ in fired] == ["soon"]
    assert fired[0][1] - start == pytest.approx(6)


async def test_one_that_asks_again_each_time_fires_on_its_period(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The keep-alive's shape: each look asks for the next one."""
    timers = Timers()
    nursery.start_soon(timers.run)
    fired: list[tuple[str, float]] = []
    pinger = Clocked("ping", fired, again=15)
    pinger.timers = timers
    start = trio.current_time()
    timers.call_at(start + 15, pinger)
    await trio.sleep(61)
    assert [when - start for _, when in fired] == pytest.approx([15, 30, 45, 60])
    assert len(timers) == 1  # the next one, at 75


async def test_a_cancelled_entry_never_fires_and_lets_its_connection_go(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    timers = Timers()
    nursery.start_soon(timers.run)
    fired: list[tuple[str, float]] = []
    gone = Clocked("gone", fired)
    entry = timers.call_at(trio.current_time() + 10, gone)
    timers.cancel(entry)
    timers.cancel(entry)  # twice is once
    kept = weakref.ref(gone)
    del gone
    gc.collect()
    assert kept() is None  # the heap still holds the entry, not the connection
    await trio.sleep(20)
    assert fired == []


async def test_mostly_cancelled_entries_are_swept_from_the_heap(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Connections that come and go leave no trail until their times come: once most of the heap
    is cancelled entries it is rebuilt without them, and the live ones still fire on time."""
    timers = Timers()
    nursery.start_soon(timers.run)
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    entries = [timers.call_at(start + 100 + i, Clocked(str(i), fired)) for i in range(1000)]
    for entry in entries[:900]:
        timers.cancel(entry)
    assert len(timers) < 200
    await trio.sleep(2000)
    assert [name for name, _ in fired] == [str(i) for i in range(900, 1000)]
    assert fired[0][1] - start == pytest.approx(1000)
