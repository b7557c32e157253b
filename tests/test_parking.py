"""``trio_ws._parking``: waits kept in plain lists, and ``Slots``, the semaphore built on them."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_ws._parking import Slots, parked, wake


async def test_a_woken_waiter_runs_and_a_cancelled_one_leaves_the_list() -> None:
    waiters: list[trio.lowlevel.Task] = []
    woken = []

    async def wait(name: str) -> None:
        await trio.lowlevel.wait_task_rescheduled(parked(waiters))
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "first")
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await trio.lowlevel.wait_task_rescheduled(parked(waiters))
        assert len(waiters) == 1  # the cancelled wait took itself out
        wake(waiters)
    assert woken == ["first"]
    assert waiters == []


async def test_slots_are_taken_until_none_is_free() -> None:
    slots = Slots(2)
    slots.acquire_nowait()
    assert not slots.locked()
    await slots.acquire()
    assert slots.locked()
    with pytest.raises(trio.WouldBlock):
        slots.acquire_nowait()
    slots.release()
    assert not slots.locked()
    slots.acquire_nowait()


async def test_a_released_slot_goes_to_the_longest_waiter_not_a_newcomer() -> None:
    lock = Slots(1)
    order: list[str] = []

    async def take(name: str) -> None:
        async with lock:
            order.append(name)
            await trio.lowlevel.checkpoint()

    await lock.acquire()
    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            nursery.start_soon(take, name)
            await trio.testing.wait_all_tasks_blocked()
        lock.release()
        # Handed to "a" already: a newcomer finds no free slot.
        with pytest.raises(trio.WouldBlock):
            lock.acquire_nowait()
    assert order == ["a", "b", "c"]
    assert not lock.locked()


async def test_a_waiter_cancelled_gives_up_its_place_and_takes_no_slot() -> None:
    lock = Slots(1)
    await lock.acquire()
    got: list[str] = []

    async def take(name: str) -> None:
        await lock.acquire()
        got.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "cancelled")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert got == []
    lock.release()
    lock.acquire_nowait()  # the slot came back, not to the cancelled waiter


async def test_acquire_is_a_checkpoint_even_when_a_slot_is_free() -> None:
    lock = Slots(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await lock.acquire()
    assert not lock.locked()  # cancelled before it took anything
    with trio.testing.assert_checkpoints():
        await lock.acquire()


def test_slots_need_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        Slots(0)
