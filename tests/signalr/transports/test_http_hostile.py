"""Hostile clients on the HTTP transports' endpoints: each is bounded, answered clearly, and logged
without a traceback.

Polls, POSTs and DELETEs for ids that do not exist; POST bodies far over the limits; POST
floods; pollers and event streams that never read what they asked for. The hub is served in
memory, so ``autojump_clock`` drives the timeouts, and a "client that never reads" is a
``lockstep_stream_pair``, whose writes wait until the other side reads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing

import trio_ws
import trio_ws.testing
from trio_ws.signalr import DisconnectReason, Hub, HubOptions, HubServer, map_hub
from trio_ws.signalr._protocol.messages import Close, Completion, Invocation

from ..helpers import assert_no_tracebacks
from ..http_helpers import HttpHubClient, exchange

STREAM = ("Accept", "text/event-stream")


class Target(Hub):
    def __init__(self) -> None:
        self.reasons: list[DisconnectReason] = []
        self.echoes = 0
        self.sent = 0

    async def echo(self, text: str) -> str:
        self.echoes += 1
        return text

    async def flood(self, count: int, size: int) -> None:
        for _ in range(count):
            await self.clients.caller.send("Bulk", "x" * size)
            self.sent += 1

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.reasons.append(reason)


@dataclass
class Served:
    memory: trio_ws.testing.MemoryServer
    hub: Target
    hub_server: HubServer

    async def connect(self) -> trio.abc.Stream:
        return await self.memory.listener.connect()

    def client(self) -> HttpHubClient:
        return HttpHubClient(self.connect, "/hub")


@asynccontextmanager
async def serve(**options: object) -> AsyncIterator[Served]:
    app = trio_ws.App()
    hub = Target()
    hub_server = map_hub(app, "/hub", hub, options=HubOptions(**options), auth=None)  # type: ignore[arg-type]
    async with trio_ws.testing.open_memory_server(app) as memory:
        yield Served(memory, hub, hub_server)


async def test_requests_for_unknown_or_missing_ids_get_clear_answers(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A thousand polls, event streams, POSTs and DELETEs for ids that do not exist are each
    answered 404 (400 without an id), create nothing, and log no traceback."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with serve() as served:
        for i in range(250):
            target = f"/hub?id=nobody{i}"
            poll = await exchange(await served.connect(), "GET", target)
            events = await exchange(await served.connect(), "GET", target, headers=[STREAM])
            post = await exchange(await served.connect(), "POST", target, body=b'{"type":6}\x1e')
            delete = await exchange(await served.connect(), "DELETE", target)
            for answer in (poll, events, post, delete):
                assert (answer.status, answer.body) == (404, b"No Connection with that ID\n"), answer
        for method in ("GET", "POST", "DELETE"):
            missing = await exchange(await served.connect(), method, "/hub")
            assert (missing.status, missing.body) == (400, b"Connection ID required\n"), missing
        assert served.hub_server.statistics().connections == 0
    assert_no_tracebacks(caplog)


async def test_a_post_body_over_the_front_doors_limit_is_refused_413(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A POST announcing 64 MiB is refused 413 before its body is read, and the connection it
    was for carries on."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with serve() as served:
        client = served.client()
        await client.negotiate()
        await client.handshake_by_polling()
        stream = await served.connect()
        head = f"POST /hub?id={client.token} HTTP/1.1\r\nHost: hub.test\r\nContent-Length: {64 << 20}\r\n\r\n"
        await stream.send_all(head.encode() + b"x" * 65536)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive_some()
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        await stream.aclose()
        assert (await client.send(Invocation("Echo", ("fine",), "1"))).status == 200
        assert client.decode((await client.poll()).body) == [Completion.with_result("1", "fine")]
        assert not served.hub.reasons
    assert_no_tracebacks(caplog)


async def test_an_endless_chunked_post_is_cut_off_at_the_message_limit(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked POST carrying one message that never ends is cut off once the message passes
    max_message_size (32 KiB): the connection closes with ASP.NET's error, which waits in the
    next poll; the POST is answered and nothing more is read; a bystander carries on."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with serve() as served:
        bystander = served.client()
        await bystander.negotiate()
        await bystander.handshake_by_polling()
        attacker = served.client()
        await attacker.negotiate()
        await attacker.handshake_by_polling()
        # Lockstep: each chunk goes only as far as the server reads.
        stream = await served.memory.listener.connect(trio.testing.lockstep_stream_pair)
        head = (
            f"POST /hub?id={attacker.token} HTTP/1.1\r\nHost: hub.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        start = b'{"type":1,"target":"Echo","arguments":["'
        sent = 0

        async def send_forever() -> None:
            nonlocal sent
            await stream.send_all(head.encode() + f"{len(start):x}\r\n".encode() + start + b"\r\n")
            while True:
                await stream.send_all(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
                sent += 0x4000

        answer = b""
        polled: list[bytes] = []

        async def poll() -> None:  # a client always has a poll out, which hears the goodbye
            polled.append((await attacker.poll()).body)

        async with trio.open_nursery() as polling:
            polling.start_soon(poll)
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_forever)
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive_some()
                read = sent
                nursery.cancel_scope.cancel()  # the server discards the rest until it hangs up (linger)
        assert answer.startswith(b"HTTP/1.1 404 "), answer  # the connection it fed has ended
        assert b"connection: close" in answer.lower()
        assert read < 128 * 1024  # no more was read than the message limit and a chunk or two
        await trio.aclose_forcefully(stream)
        assert attacker.decode(polled[0]) == [Close("Connection closed with an error.", allow_reconnect=True)]
        assert served.hub.reasons == [DisconnectReason.PROTOCOL_ERROR]
        assert (await bystander.send(Invocation("Echo", ("fine",), "1"))).status == 200
        assert bystander.decode((await bystander.poll()).body) == [Completion.with_result("1", "fine")]
    assert_no_tracebacks(caplog)


async def test_a_flood_of_calls_in_posts_with_no_poll_is_bounded(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of calls POSTed by a client that never polls for the answers: the replies stop
    at the send buffer, the POST waits meanwhile (nothing more is read), concurrent POSTs are
    refused 409, and the client is closed as too slow after slow_client_timeout."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with serve(send_buffer_size=16 * 1024, slow_client_timeout=10) as served:
        client = served.client()
        await client.negotiate()
        await client.handshake_by_polling()
        calls = b"".join(
            client.protocol.encode(Invocation("Echo", ("y" * 100,), str(i))) for i in range(5000)
        )
        answers: list[int] = []

        async def flood() -> None:
            answers.append((await client.post(calls)).status)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked()
            echoes = served.hub.echoes
            assert 0 < echoes < 5000  # the replies filled the send buffer; reading stopped
            refused = [(await client.post(b'{"type":6}\x1e')).status for _ in range(100)]
            assert refused == [409] * 100
            await trio.sleep(9)
            assert served.hub.echoes == echoes and not served.hub.reasons
        assert served.hub.reasons == [DisconnectReason.TOO_SLOW]
        assert answers == [404]  # the rest of the body had no connection to go to
    assert_no_tracebacks(caplog)


@pytest.mark.parametrize("events", [False, True], ids=["long-polling", "server-sent-events"])
async def test_a_client_that_never_reads_its_poll_or_stream_is_cut_off(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, events: bool
) -> None:
    """A poll or an event stream whose client never reads: what the hub sends stops at the send
    buffer, the connection is closed as too slow after slow_client_timeout, the front door gives
    up the write (nothing taken for 10 s) and hangs up; a bystander is unharmed."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    # slow_client_timeout before the front door's own 10 s for a write nobody takes.
    async with serve(send_buffer_size=16 * 1024, slow_client_timeout=5, close_timeout=2) as served:
        bystander = served.client()
        await bystander.negotiate()
        await bystander.handshake_by_polling()
        client = served.client()
        await client.negotiate()
        # Lockstep: every write of the server's waits until this client reads, which it never does.
        stuck = await served.memory.listener.connect(trio.testing.lockstep_stream_pair)
        if events:
            request = (
                f"GET /hub?id={client.token} HTTP/1.1\r\nHost: hub.test\r\nAccept: text/event-stream\r\n\r\n"
            )
            await stuck.send_all(request.encode())  # returns once the server has read it
            assert (await client.post(b'{"protocol":"json","version":1}\x1e')).status == 200
        else:
            await client.handshake_by_polling()
            await stuck.send_all(f"GET /hub?id={client.token} HTTP/1.1\r\nHost: hub.test\r\n\r\n".encode())
        assert (await client.send(Invocation("Flood", (10_000, 1000)))).status == 200
        await trio.testing.wait_all_tasks_blocked()
        assert served.hub.sent < 100  # held back: the send buffer, and one write in flight
        await trio.sleep(6)
        assert served.hub.reasons == [DisconnectReason.TOO_SLOW]
        assert (await bystander.send(Invocation("Echo", ("fine",), "1"))).status == 200
        assert bystander.decode((await bystander.poll()).body) == [Completion.with_result("1", "fine")]
        await trio.sleep(60)
        # The front door gave up on it (nothing taken for 10 s): what it was writing, at most one
        # poll's answer or event, then the end.
        assert served.memory.server.statistics().streaming_responses == 0
        got = 0
        with trio.fail_after(1):
            while data := await stuck.receive_some(1 << 20):
                got += len(data)
        assert got < 32 * 1024
        await stuck.aclose()
    assert_no_tracebacks(caplog)
