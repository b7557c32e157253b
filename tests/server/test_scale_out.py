"""The conformance hub on several workers, as a user runs it: ``python -m trio_ws
examples.signalr.testhub:app --workers N --backplane redis://...``, with clients on real sockets.

The workers share one port (``SO_REUSEPORT``), so the kernel spreads each new
TCP connection over them: clients land on every worker (``WorkerId`` says
which), and the HTTP requests of a Long Polling or Server-Sent Events client,
each on a new connection here, land on any worker, the holder or not.
Each test uses a Redis database of its own, so the hubs' keys never meet.
"""

from __future__ import annotations

import itertools
import secrets
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from trio_ws.signalr._protocol.messages import Completion, Invocation

from ..processes import RunningWorkers, running_workers
from ..signalr.helpers import WebSocketHubClient, open_hub_websocket
from ..signalr.http_helpers import HttpHubClient, open_request
from ..signalr.redis_helpers import RedisServer, redis, redis_server

__all__ = ["redis", "redis_server"]  # fixtures, imported for pytest

DEADLINE = 30
_databases = itertools.count(1)


@contextmanager
def conformance_workers(redis: RedisServer, count: int) -> Iterator[RunningWorkers]:
    """The conformance hub on ``count`` workers sharing a Redis database of its own.

    A worker listens once its hubs' links to Redis are up (their first attempt ended), so the
    banner is the event: every worker is subscribed by then.
    """
    url = f"redis://127.0.0.1:{redis.port}/{next(_databases)}"
    args = ("examples.signalr.testhub:app", "--workers", str(count), "--backplane", url)
    with running_workers(*args) as served:
        with urllib.request.urlopen(served.url + "healthz", timeout=10) as response:
            assert response.read().decode().count("Redis connected") == 4  # three hubs, the echo handler
        yield served
        code, _ = served.stop(signal.SIGTERM)
        assert code == 0
        assert "Traceback" not in served.log.text()


async def negotiated_websocket(
    stack: AsyncExitStack, port: int, path: str = "/testhub"
) -> WebSocketHubClient:
    """Negotiate (on whichever worker), then open the WebSocket (on whichever worker: it opens the
    connection there); the handshake done."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"http://127.0.0.1:{port}{path}/negotiate?negotiateVersion=1")
    token = answer.json()["connectionToken"]
    return await stack.enter_async_context(open_hub_websocket(f"ws://127.0.0.1:{port}{path}?id={token}"))


async def received(client: WebSocketHubClient, targets: set[str]) -> dict[str, list[Any]]:
    """The first invocation of each of ``targets``, by target."""
    found: dict[str, list[Any]] = {}
    while set(found) != targets:
        message = await client.receive()
        if isinstance(message, Invocation) and message.target in targets:
            found[message.target] = list(message.arguments)
    return found


@pytest.mark.parametrize("count", [2, 4])
async def test_the_conformance_hub_on_several_workers(redis: RedisServer, count: int) -> None:
    """Clients land on every worker; GroupCount agrees on every one; a group send and a broadcast
    reach every client; a client result is asked through whichever worker /clientresult reaches; a
    JWT one worker signed is accepted by all."""
    with conformance_workers(redis, count) as served, trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            clients = [await negotiated_websocket(stack, served.port) for _ in range(10 * count)]
            workers = [await client.call("WorkerId") for client in clients]
            assert set(workers) == set(served.pids), "the kernel spread the clients over every worker"
            for client in clients:
                await client.call("JoinGroup", "everyone")
            counts = {await client.call("GroupCount", "everyone") for client in clients}
            assert counts == {len(clients)}
            # From a client outside the group (a call skips what arrives before its answer).
            sender = await negotiated_websocket(stack, served.port)
            await sender.call("SendToGroup", "everyone", "to the group")
            await sender.call("Broadcast", "to all")
            for client in clients:
                said = await received(client, {"GroupMessage", "Broadcast"})
                assert said == {"GroupMessage": ["everyone", "to the group"], "Broadcast": ["to all"]}
            # Client results: the client answers its Result handler; the HTTP request that asks
            # lands on any worker.
            connection_id = await clients[1].call("GetCallerConnectionId")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_answer_results, clients[1], "the answer")
                for _ in range(2 * count):
                    async with httpx.AsyncClient() as fresh:  # a new connection: any worker
                        asked = await fresh.get(f"{served.url}clientresult?id={connection_id}")
                    assert asked.text == "the answer"
                nursery.cancel_scope.cancel()
            # A token that one worker signed is good on every worker (they share one key).
            async with httpx.AsyncClient() as fresh:
                token = (await fresh.get(f"{served.url}generateJwtToken")).text
            for _ in range(4 * count):
                async with httpx.AsyncClient() as fresh:  # a new connection: any worker
                    answer = await fresh.post(
                        f"{served.url}authorizedhub/negotiate?negotiateVersion=1",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                assert answer.status_code == 200, answer.text


async def _answer_results(client: WebSocketHubClient, value: str) -> None:
    while True:
        message = await client.receive()
        if isinstance(message, Invocation) and message.target == "Result" and message.invocation_id:
            await client.send(Completion.with_result(message.invocation_id, value))


async def _connect_anywhere(port: int) -> trio.abc.Stream:
    return await trio.open_tcp_stream("127.0.0.1", port)


@pytest.mark.parametrize("count", [2, 4])
async def test_long_polling_and_sse_clients_on_several_workers(redis: RedisServer, count: int) -> None:
    """Long Polling and Server-Sent Events clients whose every request is a new connection (any
    worker): handshake, calls, group sends and broadcasts all work, whichever worker holds them."""
    with conformance_workers(redis, count) as served, trio.fail_after(DEADLINE):
        port = served.port

        async def connect() -> trio.abc.Stream:
            return await _connect_anywhere(port)

        polling = [HttpHubClient(connect, "/testhub") for _ in range(3)]
        holders = set()
        for client in polling:
            await client.negotiate()
            assert await client.handshake_by_polling() == b"{}\x1e"
            holders.add(await _poll_call(client, "WorkerId"))
            await _poll_call(client, "JoinGroup", "polling")
        assert await _poll_call(polling[0], "GroupCount", "polling") == len(polling)
        # An SSE client: the stream on one worker, its POSTs on any.
        sse = HttpHubClient(connect, "/testhub")
        await sse.negotiate()
        headers = [("Accept", "text/event-stream")]
        target = f"/testhub?id={sse.token}"
        async with open_request(await connect(), "GET", target, headers=headers) as events:
            seen = bytearray()
            await events.read_until(b":\r\n", seen=seen)
            assert (await sse.post(b'{"protocol":"json","version":1}\x1e')).status == 200
            await events.read_until(b"data: {}\x1e\r\n\r\n", seen=seen)
            for number in range(4):  # POSTs, each on a new connection
                call = Invocation("Echo", [f"sse {number}"], str(number))
                assert (await sse.send(call)).status == 200
            await sse.send(Invocation("JoinGroup", ["polling"], "j"))
            await events.read_until(b'"invocationId":"j"', seen=seen)
            await sse.send(Invocation("SendToGroup", ["polling", "to pollers"], "g"))
            await polling[1].send(Invocation("Broadcast", ["to all"], "b"))
            text = (await events.read_until(b'"arguments":["to all"]', seen=seen)).decode()
            order = [text.index(f'"result":"sse {number}"') for number in range(4)]
            assert order == sorted(order)
            assert '"arguments":["polling","to pollers"]' in text
        for client in polling:
            said = await _poll_until(client, {"GroupMessage", "Broadcast"})
            assert said == {"GroupMessage": ["polling", "to pollers"], "Broadcast": ["to all"]}
        for client in polling:
            assert (await client.request("DELETE")).status == 202
        assert holders <= set(served.pids)


async def _poll_call(client: HttpHubClient, target: str, *args: Any) -> Any:
    invocation_id = secrets.token_hex(4)
    assert (await client.send(Invocation(target, list(args), invocation_id))).status == 200
    while True:
        polled = await client.poll()
        assert polled.status == 200, polled
        for message in client.decode(polled.body):
            if isinstance(message, Completion) and message.invocation_id == invocation_id:
                assert message.error is None, message.error
                return message.result


async def _poll_until(client: HttpHubClient, targets: set[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    while set(found) != targets:
        polled = await client.poll()
        assert polled.status == 200, polled
        for message in client.decode(polled.body):
            if isinstance(message, Invocation) and message.target in targets:
                found[message.target] = list(message.arguments)
    return found


async def test_redis_restarted_under_traffic_with_the_conformance_hub() -> None:
    """Redis stopped and started again while a client sends to a group spread over two workers:
    each worker logs the outage and the recovery; once both are back, GroupCount agrees again and
    every message sent after the recovery reaches every member."""
    from ..signalr.redis_helpers import RedisServer as PrivateRedis

    own = PrivateRedis()  # restarted by this test: not the session's
    own.start()
    try:
        with conformance_workers(own, 2) as served, trio.fail_after(DEADLINE):
            async with AsyncExitStack() as stack:
                # The kernel spreads connections over the workers at random: open members (at
                # least 8) until both workers hold some.
                members: list[WebSocketHubClient] = []
                workers: set[int] = set()
                while len(members) < 8 or (workers != set(served.pids) and len(members) < 32):
                    members.append(await negotiated_websocket(stack, served.port))
                    workers.add(await members[-1].call("WorkerId"))
                assert workers == set(served.pids)
                for member in members:
                    await member.call("JoinGroup", "room")
                sender = await negotiated_websocket(stack, served.port)
                checkers = [await negotiated_websocket(stack, served.port) for _ in range(4)]
                heard = [Heard() for _ in members]
                sent: list[int] = []
                async with trio.open_nursery() as nursery:
                    for member, texts in zip(members, heard, strict=True):
                        nursery.start_soon(_listen, member, texts)
                    for number in range(3):
                        await sender.call("SendToGroup", "room", str(number))
                        sent.append(number)
                    await trio.to_thread.run_sync(own.stop)
                    await trio.to_thread.run_sync(_wait_for_line, served, "lost Redis", 2)
                    for number in range(3, 6):  # buffered by the workers while Redis is away
                        await sender.call("SendToGroup", "room", str(number))
                    await trio.to_thread.run_sync(own.start)
                    # Every backplane of both workers: three hubs' and the /echo handler's.
                    await trio.to_thread.run_sync(_wait_for_line, served, "Redis is back", 2 * 4)
                    counts = {await checker.call("GroupCount", "room") for checker in checkers}
                    assert counts == {len(members)}
                    after = list(range(6, 12))
                    for number in after:
                        await sender.call("SendToGroup", "room", str(number))
                    for texts in heard:
                        while not set(after) <= set(texts.numbers):
                            await texts.changed.wait()
                    nursery.cancel_scope.cancel()
                for texts in heard:
                    assert [number for number in texts.numbers if number >= 6] == after
    finally:
        own.close()


class Heard:
    """The numbers a group member heard, and an event for each new one."""

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self.changed = trio.Event()


async def _listen(client: WebSocketHubClient, heard: Heard) -> None:
    while True:
        message = await client.receive()
        if isinstance(message, Invocation) and message.target == "GroupMessage":
            heard.numbers.append(int(message.arguments[1]))
            heard.changed.set()
            heard.changed = trio.Event()


def _wait_for_line(served: RunningWorkers, text: str, count: int) -> None:
    """Until the workers' log has ``count`` lines containing ``text`` (an event: the log)."""
    served.log.wait_for(lambda line: sum(text in seen for seen in served.log.lines) >= count)


async def test_raw_connections_to_the_echo_handler_on_several_workers(redis: RedisServer) -> None:
    """The conformance app's /echo, a connection handler, on two workers: Long Polling and SSE
    clients whose every request is a new connection (so most land on the worker that does not
    hold the connection, and are relayed), and WebSockets on whichever worker they reach."""
    with conformance_workers(redis, 2) as served, trio.fail_after(DEADLINE):
        port = served.port

        async def connect() -> trio.abc.Stream:
            return await _connect_anywhere(port)

        for version in ("negotiateVersion=0", "negotiateVersion=1"):
            polling = HttpHubClient(connect, "/echo")
            await polling.negotiate(version)
            first = await polling.poll()
            assert (first.status, first.body) == (200, b"")
            for number in range(6):
                assert (await polling.post(f"round {number}".encode())).status == 200
                echoed = b""
                while echoed != f"round {number}".encode():
                    answer = await polling.poll()
                    assert answer.status == 200, answer
                    echoed += answer.body
            assert (await polling.request("DELETE")).status == 202
        sse = HttpHubClient(connect, "/echo")
        await sse.negotiate()
        headers = [("Accept", "text/event-stream")]
        async with open_request(await connect(), "GET", f"/echo?id={sse.token}", headers=headers) as events:
            seen = bytearray()
            await events.read_until(b":\r\n", seen=seen)
            for number in range(6):
                assert (await sse.post(f"sse {number}".encode())).status == 200
                await events.read_until(f"data: sse {number}\r\n\r\n".encode(), seen=seen)
        for _ in range(4):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send_message("over a socket")
                assert await ws.get_message() == "over a socket"
