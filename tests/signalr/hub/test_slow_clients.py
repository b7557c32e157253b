"""Slow clients: one member that does not read never stalls a send to many, whatever the policy,
and a client that never reads is closed as too slow instead of filling memory.

The slow client uses ``trio.testing.lockstep_stream_pair``: every byte the server sends waits
until the client reads it. ``autojump_clock`` makes every wait visible as a jump of the clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_ws.signalr import DisconnectReason, Hub, SlowClientPolicy
from trio_ws.signalr._protocol.messages import Close, Completion, Invocation, StreamInvocation, StreamItem

from ..helpers import connect, serve_hub

ITEM = "x" * 4096


class Feed(Hub):
    def __init__(self) -> None:
        self.reasons: dict[str, DisconnectReason] = {}
        self.gone = trio.Event()

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.reasons[self.context.connection_id] = reason
        self.gone.set()

    async def join(self) -> str:
        await self.groups.add(self.context.connection_id, "feed")
        return self.context.connection_id

    async def publish(self, count: int) -> float:
        start = trio.current_time()
        for number in range(count):
            await self.clients.group("feed").send("Item", number, ITEM)
        return trio.current_time() - start

    async def items(self, count: int) -> AsyncIterator[str]:
        for _ in range(count):
            yield ITEM


async def published(policy: SlowClientPolicy) -> tuple[Feed, float, list[int], str]:
    """A fast and a slow member; the fast one publishes 200 items of 4 KiB (800 KiB, more than the
    256 KiB send buffer). Returns how long publishing took and the numbers the slow one got."""
    hub = Feed()
    async with (
        serve_hub(hub, slow_client=policy, close_timeout=1) as server,
        connect(server) as fast,
        connect(server, stream_pair=trio.testing.lockstep_stream_pair) as slow,
    ):
        await fast.call("Join")
        slow_id = await slow.call("Join")
        await fast.send(Invocation("Publish", (200,), "p"))
        received = []
        while not isinstance(message := await fast.receive(), Completion):
            assert isinstance(message, Invocation)
            received.append(message.arguments[0])
        assert received == list(range(200))  # the fast member got everything
        took = message.result
        slow_got = []
        try:
            while True:
                message = await slow.receive()
                if isinstance(message, Close):
                    break
                assert isinstance(message, Invocation)
                slow_got.append(message.arguments[0])
                if slow_got[-1] == 199:
                    break
        except EOFError:
            pass
    return hub, took, slow_got, slow_id


async def test_close_policy_closes_the_slow_member_without_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """CLOSE (the default): the send to the group never waits; the slow member is closed TOO_SLOW."""
    hub, took, slow_got, slow_id = await published(SlowClientPolicy.CLOSE)
    assert took == 0
    assert hub.reasons[slow_id] is DisconnectReason.TOO_SLOW
    assert len(slow_got) < 200


async def test_drop_oldest_keeps_the_slow_member_and_the_newest_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """DROP_OLDEST: the send never waits; the slow member stays, missing older messages, not newer."""
    hub, took, slow_got, slow_id = await published(SlowClientPolicy.DROP_OLDEST)
    assert took == 0
    assert slow_id not in hub.reasons or hub.reasons[slow_id] is DisconnectReason.CLIENT_CLOSED
    assert slow_got[-1] == 199
    assert len(slow_got) < 200
    assert slow_got == sorted(slow_got)


async def test_wait_policy_waits_at_most_the_slow_client_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """WAIT: the send waits for the slow member, but only slow_client_timeout (10 s), then closes it."""
    hub, took, _, slow_id = await published(SlowClientPolicy.WAIT)
    assert took == pytest.approx(10)
    assert hub.reasons[slow_id] is DisconnectReason.TOO_SLOW


async def test_a_client_that_never_reads_is_closed_as_too_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stream to a client that reads nothing fills its send buffer; after slow_client_timeout the
    connection is closed TOO_SLOW and the stream is cancelled: memory stays bounded."""
    hub = Feed()
    async with (
        serve_hub(hub, close_timeout=1) as server,
        connect(server, stream_pair=trio.testing.lockstep_stream_pair) as client,
    ):
        await client.send(StreamInvocation("s", "Items", (10_000,)))
        start = trio.current_time()
        await hub.gone.wait()
        assert trio.current_time() - start == pytest.approx(10, abs=1)
        assert list(hub.reasons.values()) == [DisconnectReason.TOO_SLOW]


async def test_a_client_that_reads_slowly_gets_everything(autojump_clock: trio.testing.MockClock) -> None:
    """Back-pressure, not loss: a stream to a client reading a little at a time arrives whole."""
    hub = Feed()
    async with serve_hub(hub) as server:
        async with connect(server, stream_pair=trio.testing.lockstep_stream_pair) as client:
            await client.send(StreamInvocation("s", "Items", (300,)))
            count = 0
            while not isinstance(message := await client.receive(), Completion):
                assert message == StreamItem("s", ITEM)
                count += 1
                await trio.sleep(0.5)
            assert count == 300
        assert hub.reasons and set(hub.reasons.values()) == {DisconnectReason.CLIENT_CLOSED}
