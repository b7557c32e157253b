"""Stateful reconnect's books (``_replay.py``), pure: numbering, acks, replay, duplicates, Sequence."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_ws.signalr._protocol.errors import ProtocolError
from trio_ws.signalr._protocol.messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    Sequence_,
    StreamInvocation,
    StreamItem,
)
from trio_ws.signalr._transports.replay import Replay


def test_sent_messages_are_kept_until_acked_and_replayed_from_the_oldest() -> None:
    """Each recorded message is numbered from 1; an Ack forgets up to its id; the replay starts
    with Sequence(oldest unacked) and holds exactly the rest, in order."""
    replay = Replay()
    assert [replay.record(bytes([i]) * 10) for i in range(1, 5)] == [1, 2, 3, 4]
    assert replay.unacked_bytes == 40
    replay.ack(2)
    assert replay.unacked_count == 2
    assert replay.replay() == (Sequence_(3), [b"\x03" * 10, b"\x04" * 10])
    replay.ack(1)  # an old Ack changes nothing
    assert replay.unacked_count == 2


def test_with_nothing_unacked_the_sequence_is_the_next_id() -> None:
    """Nothing waiting: Sequence carries the number sent plus one (what both official sides send)."""
    replay = Replay()
    assert replay.replay() == (Sequence_(1), [])
    replay.record(b"a")
    replay.record(b"b")
    replay.ack(2)
    assert replay.replay() == (Sequence_(3), [])


async def test_a_full_buffer_makes_senders_wait_for_an_ack() -> None:
    """Past ``limit`` bytes unacknowledged there is no room; ``wait_for_room`` returns on the Ack
    that makes some (one message of any size fits in an empty buffer)."""
    replay = Replay(limit=100)
    replay.record(b"x" * 500)
    assert not replay.has_room()
    done = trio.Event()

    async def waiter() -> None:
        await replay.wait_for_room()
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        replay.ack(1)
    assert done.is_set() and replay.has_room()


async def test_closing_wakes_waiters_and_keeps_nothing() -> None:
    """The connection's end frees whoever waits for room, and nothing is kept afterwards."""
    replay = Replay(limit=1)
    replay.record(b"xx")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(replay.wait_for_room)
        await trio.testing.wait_all_tasks_blocked()
        replay.close()
    replay.record(b"more")
    assert replay.unacked_count == 0 and replay.has_room()


def test_received_messages_are_numbered_and_duplicates_dropped_after_a_sequence() -> None:
    """Only trackable messages count; after a reconnect everything before the client's Sequence
    is ignored, and what it sends again that was already processed is dropped."""
    replay = Replay()
    trackable: list[HubMessage] = [
        Invocation("A", (), "1"),
        StreamItem("s", 1),
        Completion("c"),
        StreamInvocation("2", "B"),
        CancelInvocation("2"),
    ]
    assert all(replay.accept(message) for message in trackable)
    assert replay.accept(Ping()) and replay.accept(Close()) and replay.accept(Ack(3))
    assert replay.ack_due() == 5
    replay.acked(5)
    assert replay.ack_due() is None
    replay.reconnected()
    assert not replay.accept(Invocation("ignored", (), "9"))
    assert not replay.accept(Sequence_(4))  # the client replays from its 4th message
    assert not replay.accept(StreamInvocation("2", "B"))  # 4: processed already
    assert not replay.accept(CancelInvocation("2"))  # 5: processed already
    assert replay.accept(Invocation("New", (), "3"))  # 6: new
    assert replay.ack_due() == 6


def test_a_sequence_ahead_of_what_arrived_is_a_protocol_error() -> None:
    """A Sequence beyond the next expected number would mean lost messages: the connection fails."""
    replay = Replay()
    replay.accept(Invocation("A"))
    replay.reconnected()
    with pytest.raises(ProtocolError, match="Sequence ID 5 greater"):
        replay.accept(Sequence_(5))
