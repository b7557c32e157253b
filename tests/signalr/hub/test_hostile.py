"""Hostile clients: huge messages, floods, unknown ids and types, streams that never end,
malformed JSON and MessagePack. Each is bounded and answered with a clear Close or error
completion, the other connections carry on, and no traceback is logged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_ws.signalr import DisconnectReason, Hub, HubStream
from trio_ws.signalr._protocol.framing import encode_varint
from trio_ws.signalr._protocol.messages import (
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    StreamInvocation,
    StreamItem,
)

from ..helpers import assert_no_tracebacks, connect, serve_hub


class Target(Hub):
    def __init__(self) -> None:
        self.reasons: list[DisconnectReason] = []
        self.echoes = 0
        self.release = trio.Event()
        self.blocked = trio.Event()

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.reasons.append(reason)

    async def echo(self, text: str) -> str:
        self.echoes += 1
        return text

    async def block(self) -> None:
        self.blocked.set()
        await self.release.wait()

    async def concat(self, items: HubStream[str]) -> str:
        return "".join([item async for item in items])

    async def ticks(self) -> AsyncIterator[int]:
        while True:
            yield 1
            await trio.sleep(1)


@pytest.mark.parametrize(
    ("protocol", "start"),
    [
        ("json", b'{"type":1,"target":"Echo","arguments":["' + b"x" * 40_000),
        ("messagepack", encode_varint(2**31 - 1)),
    ],
)
async def test_a_huge_message_closes_only_its_connection(
    protocol: str, start: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A message over max_message_size (32 KiB) is refused before it ends: Close with ASP.NET's
    error text (allowReconnect, as ASP.NET sends it), PROTOCOL_ERROR; a bystander is unharmed."""
    caplog.set_level(logging.INFO)
    hub = Target()
    async with serve_hub(hub) as server, connect(server) as bystander:
        async with connect(server, protocol) as attacker:
            await attacker.send_raw(start)  # never finished: no separator, or 2 GiB never sent
            assert await attacker.receive_close() == Close(
                "Connection closed with an error.", allow_reconnect=True
            )
        assert await bystander.call("Echo", "fine") == "fine"
    assert DisconnectReason.PROTOCOL_ERROR in hub.reasons
    assert any(
        "exceeds the 32768-byte limit" in r.getMessage() or "larger than the 32768" in r.getMessage()
        for r in caplog.records
    )
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("protocol", "garbage", "detail"),
    [
        ("json", b'{"type":1,"target":"Echo",}\x1e', "InvalidDataException: invalid JSON"),
        (
            "json",
            b'{"type":1,"target":"Echo"}\x1e',
            "InvalidDataException: missing required property 'arguments'",
        ),
        ("json", b"\xff\xfe\x1e", "InvalidDataException: invalid JSON"),
        ("messagepack", b"\x01\xc1", "InvalidDataException: invalid MessagePack"),
        ("messagepack", b"\x04\x92\xa1x\x02", "InvalidDataException: the first item"),
        ("messagepack", b"\x02\x91\x01", "InvalidDataException: a message of 1 items is too short"),
    ],
)
async def test_malformed_messages_close_with_a_clear_reason(
    protocol: str, garbage: bytes, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed JSON or MessagePack: Close with the reason (with detailed errors), logged at INFO."""
    caplog.set_level(logging.INFO)
    hub = Target()
    async with serve_hub(hub, detailed_errors=True) as server, connect(server) as bystander:
        async with connect(server, protocol) as attacker:
            await attacker.send_raw(garbage)
            close = await attacker.receive_close()
        assert close.allow_reconnect
        assert close.error is not None and close.error.startswith(
            "Connection closed with an error. " + detail
        )
        assert await bystander.call("Echo", "fine") == "fine"
    assert hub.reasons.count(DisconnectReason.PROTOCOL_ERROR) == 1
    assert any("closed: the client broke the protocol" in r.getMessage() for r in caplog.records)
    assert_no_tracebacks(caplog)


async def test_unknown_ids_and_types_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """Items, completions and cancels for ids nobody knows, and message types from the future, are
    dropped (as ASP.NET drops them); the connection carries on."""
    async with serve_hub(Target()) as server, connect(server) as client:
        for number in range(200):
            await client.send(StreamItem(f"s{number}", "x"))
            await client.send(Completion.with_result(f"c{number}", 1))
            await client.send(CancelInvocation(f"i{number}"))
            await client.send_raw(b'{"type":%d,"invocationId":"x"}\x1e' % (10 + number))
        assert await client.call("Echo", "fine") == "fine"
    assert_no_tracebacks(caplog)


async def test_a_flood_of_calls_is_slowed_down_not_stored(caplog: pytest.LogCaptureFixture) -> None:
    """While the one call slot is busy the server stops reading, so a client sending 4,000 calls
    waits in its own send (TCP back-pressure); no call piles up as a task. Then all are answered."""
    hub = Target()
    async with (
        serve_hub(hub) as server,
        connect(server, stream_pair=trio.testing.lockstep_stream_pair) as client,
    ):
        await client.send(Invocation("Block", (), "0"))
        await hub.blocked.wait()
        # 4,000 calls, about 230 KB: more than the few reads of 64 KiB the server may hold.
        flood = b"".join(
            client.protocol.encode(Invocation("Echo", (str(n),), str(n + 1))) for n in range(4000)
        )
        sent = trio.Event()

        async def send_flood() -> None:
            await client.send_raw(flood)
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_flood)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            assert hub.echoes == 0
            hub.release.set()
            assert await client.receive() == Completion.with_result("0", None)
            for n in range(4000):
                assert await client.receive() == Completion.with_result(str(n + 1), str(n))
    assert_no_tracebacks(caplog)


async def test_streams_past_the_limit_get_an_error_completion(caplog: pytest.LogCaptureFixture) -> None:
    """At most max_streams streams run per connection; the next one is refused, the others go on."""
    async with serve_hub(Target(), max_streams=5) as server, connect(server) as client:
        for number in range(5):
            await client.send(StreamInvocation(f"t{number}", "Ticks", ()))
        for _ in range(5):
            assert isinstance(await client.receive(), StreamItem)
        await client.send(StreamInvocation("extra", "Ticks", ()))
        while not isinstance(message := await client.receive(), Completion):
            pass
        assert message == Completion.with_error(
            "extra",
            "An unexpected error occurred invoking 'Ticks' on the server. "
            "HubException: This connection already runs 5 streams, the most the server allows.",
        )
    assert_no_tracebacks(caplog)


async def test_finished_streams_make_room_for_new_ones() -> None:
    """The stream limit counts running streams only: many short ones, one after another, all run."""
    async with serve_hub(Target(), max_streams=2) as server, connect(server) as client:
        for number in range(5):
            await client.send(StreamInvocation(f"t{number}", "Ticks", ()))
            assert await client.receive() == StreamItem(f"t{number}", 1)
            await client.send(CancelInvocation(f"t{number}"))
            while not isinstance(message := await client.receive(), Completion):
                pass
            assert message == Completion.void(f"t{number}")
        for number in range(5):
            await client.send(Invocation("Concat", (), f"c{number}", ("up",)))
            await client.send(Completion.void("up"))
            assert await client.receive() == Completion.with_result(f"c{number}", "")


async def test_a_client_stream_that_never_completes(autojump_clock: trio.testing.MockClock) -> None:
    """An upload left open holds no call slot: other calls go on; the method waits (bounded by
    max_streams) until the connection ends, then it is cancelled."""
    hub = Target()
    async with serve_hub(hub, max_streams=2) as server:
        async with connect(server) as client:
            await client.send(Invocation("Concat", (), "1", ("a",)))
            await client.send(StreamItem("a", "never ends"))
            await client.send(Invocation("Concat", (), "2", ("b",)))
            await trio.sleep(3600)
            assert await client.call("Echo", "meanwhile") == "meanwhile"
            third = await client.invoke("Concat", stream_ids=("c",))
            assert third.error is not None and "already runs 2 streams" in third.error
        assert server.statistics().connections == 0
    assert hub.reasons == [DisconnectReason.CLIENT_CLOSED]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=300), protocol=st.sampled_from(["json", "messagepack"]))
async def test_random_bytes_after_the_handshake(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, data: bytes, protocol: str
) -> None:
    """Whatever follows the handshake, the server answers, closes with a Close message, or waits
    for the rest of a message; when the client leaves, its connection is gone, and the hub server
    serves the next client. Nothing is logged with a traceback."""
    caplog.clear()
    async with serve_hub(Target()) as server:
        with trio.fail_after(600):
            async with connect(server, protocol) as attacker:
                await attacker.send_raw(data)
                await attacker.send(Invocation("Echo", ("after",), "last"))
                with trio.move_on_after(60):  # the bytes may have begun a message that never ends
                    try:
                        while True:
                            message = await attacker.receive()
                            if isinstance(message, Close) or message == Completion.with_result(
                                "last", "after"
                            ):
                                break
                    except EOFError:
                        pass
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics().connections == 0
            async with connect(server) as next_client:
                assert await next_client.call("Echo", "ok") == "ok"
    assert_no_tracebacks(caplog)
