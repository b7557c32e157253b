"""The send queue of one connection: bounded, droppable messages, a goodbye past the limit."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_ws.signalr._transports.outbox import Outbox


async def test_put_waits_for_room_and_get_joins_messages() -> None:
    """Past the limit a put waits; a get hands out several queued messages as one chunk."""
    outbox = Outbox(limit=10)
    assert outbox.put_nowait(b"12345")
    assert outbox.put_nowait(b"67890")
    assert not outbox.put_nowait(b"x")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.put, b"abc")
        await trio.testing.wait_all_tasks_blocked()
        assert outbox.queued_bytes == 10
        assert await outbox.get(max_bytes=100) == b"1234567890"
    assert outbox.get_nowait(max_bytes=100) == b"abc"
    with pytest.raises(trio.WouldBlock):
        outbox.get_nowait(max_bytes=100)


def test_one_message_of_any_size_fits_an_empty_queue_and_chunks_respect_max_bytes() -> None:
    """A message bigger than the limit is not refused forever; chunks stop at max_bytes."""
    outbox = Outbox(limit=4)
    assert outbox.put_nowait(b"x" * 100)
    assert outbox.get_nowait(max_bytes=10) == b"x" * 100
    outbox.force_put(b"aaa")
    outbox.force_put(b"bbb")
    outbox.force_put(b"ccc")
    assert outbox.get_nowait(max_bytes=6) == b"aaabbb"
    assert outbox.get_nowait(max_bytes=6) == b"ccc"


def test_drop_oldest_drops_only_droppable_messages() -> None:
    """Replies are never dropped; the oldest droppable message is."""
    outbox = Outbox(limit=100)
    outbox.put_nowait(b"reply", droppable=False)
    outbox.put_nowait(b"old", droppable=True)
    outbox.put_nowait(b"new", droppable=True)
    assert outbox.drop_oldest()
    assert outbox.get_nowait(max_bytes=100) == b"replynew"
    outbox.put_nowait(b"reply", droppable=False)
    assert not outbox.drop_oldest()


async def test_close_sends_a_goodbye_past_the_limit_then_ends() -> None:
    """``close(final)`` queues one last message even when full; then gets end and puts are dropped."""
    outbox = Outbox(limit=1)
    outbox.put_nowait(b"full")
    outbox.close(b"bye")
    assert outbox.closed
    assert outbox.put_nowait(b"ignored")
    await outbox.put(b"ignored too")
    assert await outbox.get(max_bytes=100) == b"fullbye"
    with pytest.raises(trio.EndOfChannel):
        await outbox.get(max_bytes=100)


async def test_close_wakes_a_waiting_put_and_discard_forgets_everything() -> None:
    """A put waiting for room returns when the queue closes; discard drops what is queued."""
    outbox = Outbox(limit=1)
    outbox.put_nowait(b"x")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.put, b"waiting")
        await trio.testing.wait_all_tasks_blocked()
        outbox.discard()
    assert outbox.queued_bytes == 0
    with pytest.raises(trio.EndOfChannel):
        outbox.get_nowait(max_bytes=10)
