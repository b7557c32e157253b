"""Every transport across workers: requests that land on a worker other than the connection's holder.

Two (or more) ``trio_ws`` servers on real sockets, each with its own
``RedisBackplane`` on one redis-server: the workers of one deployment, as
``--workers`` or two hosts make them. The test's client steers every HTTP
request to the server it names (a balancer with no stickiness at all), so
the first transport request lands on one worker and the requests after it
on another, which must relay them to the holder.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio
from wsproto.events import AcceptConnection, CloseConnection

import trio_ws
import trio_ws.testing
from tests.raw import RawClient
from tests.signalr.transports.test_stateful_reconnect import StatefulClient
from trio_ws.signalr import Hub, HubOptions, HubServer, RedisBackplane, map_hub
from trio_ws.signalr._protocol.messages import (
    Completion,
    HubMessage,
    Invocation,
    Sequence_,
    is_trackable,
)

from ..helpers import WebSocketHubClient, open_hub_websocket
from ..http_helpers import HttpHubClient, open_request
from ..redis_helpers import RedisServer, redis, redis_server

__all__ = ["redis", "redis_server"]  # fixtures, imported for pytest

FAST: dict[str, Any] = {"heartbeat_interval": 0.1, "presence_ttl": 0.6, "operation_timeout": 0.5}
DEADLINE = 15


class Rooms(Hub):
    """A hub that says which worker serves the caller, with groups and broadcasts."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    async def worker(self) -> str:
        return self.name

    async def echo(self, text: str) -> str:
        return text

    async def join(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def to_group(self, group: str, text: str) -> None:
        await self.clients.group(group).send("Said", group, text)

    async def broadcast(self, text: str) -> None:
        await self.clients.all.send("Said", "everyone", text)

    async def count(self, group: str) -> int:
        return await self.groups.count(group)


@dataclass
class Worker:
    name: str
    server: trio_ws.Server
    scope: trio.CancelScope
    hub: HubServer

    @property
    def port(self) -> int:
        port = urlsplit(self.server.url).port
        assert port is not None
        return port


@asynccontextmanager
async def workers(
    url: str, count: int = 2, urls: dict[int, str] | None = None
) -> AsyncIterator[list[Worker]]:
    """``count`` servers of the same app (a ``Rooms`` hub at ``/hub``), sharing Redis at ``url``
    (worker ``i`` at ``urls[i]``, if given: a proxy the test can cut)."""
    prefix = f"test:{secrets.token_hex(4)}"
    backplanes: list[RedisBackplane] = []
    started: list[Worker] = []
    async with trio.open_nursery() as nursery:
        for index in range(count):
            name = "AB"[index] if count == 2 else str(index)
            app = trio_ws.App()
            backplane = RedisBackplane((urls or {}).get(index, url), prefix=prefix, **FAST)
            # Polls held longer than operation_timeout: the holder's "taken" keeps the front waiting.
            options = HubOptions(long_polling_timeout=1)
            hub = map_hub(
                app, "/hub", Rooms(name), backplane=backplane, options=options, stateful_reconnect=True
            )
            scope = trio.CancelScope()

            async def serve(
                app: trio_ws.App = app,
                scope: trio.CancelScope = scope,
                *,
                task_status: trio.TaskStatus[trio_ws.Server] = trio.TASK_STATUS_IGNORED,
            ) -> None:
                with scope:
                    async with trio.open_nursery() as inner:
                        task_status.started(await trio_ws.testing.start_server(inner, app))

            server = await nursery.start(serve)
            backplanes.append(backplane)
            started.append(Worker(name, server, scope, hub))
        for backplane in backplanes:
            await backplane.wait_connected()
        yield started
        for worker in started:  # gracefully: a Long Polling client between polls is not waited for
            await worker.server.aclose()
        nursery.cancel_scope.cancel()


class Steer:
    """Where the next HTTP request goes: a balancer the test controls, one new connection each."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def to(self, worker: Worker) -> Steer:
        self.worker = worker
        return self

    async def connect(self) -> trio.abc.Stream:
        return await trio.open_tcp_stream("127.0.0.1", self.worker.port)


async def call(client: HttpHubClient, target: str, *args: Any) -> Any:
    """Invoke ``target`` with a POST, poll for its Completion (where the client is steered); its result."""
    invocation_id = secrets.token_hex(4)
    answer = await client.send(Invocation(target, list(args), invocation_id))
    assert answer.status == 200, answer
    while True:
        polled = await client.poll()
        assert polled.status == 200, polled
        for message in client.decode(polled.body):
            if isinstance(message, Completion) and message.invocation_id == invocation_id:
                assert message.error is None, message.error
                return message.result


async def test_long_polling_relayed_to_the_holder_from_another_worker(redis: RedisServer) -> None:
    """Negotiate on A, the first poll on B (B holds the connection), then every POST, poll and the
    DELETE on A: A relays each to B; the client calls, joins a group, gets a group send and a
    broadcast from a WebSocket client on A, waits out an idle poll held longer than the backplane's
    operation_timeout, and ends; then its token is unknown everywhere."""
    with trio.fail_after(DEADLINE):
        async with workers(redis.url) as (a, b):
            steer = Steer(a)
            client = HttpHubClient(steer.connect, "/hub")
            await client.negotiate()
            steer.to(b)
            first = await client.poll()
            assert (first.status, first.body) == (200, b"")
            steer.to(a)  # from now on, every request lands on A, which does not hold the connection
            assert (await client.post(b'{"protocol":"json","version":1}\x1e')).status == 200
            assert (await client.poll()).body == b"{}\x1e"
            assert await call(client, "Worker") == "B"
            assert await call(client, "Echo", "over two workers") == "over two workers"
            await call(client, "Join", "room")
            async with open_hub_websocket(f"ws://127.0.0.1:{a.port}/hub") as other:
                assert await other.call("Worker") == "A"
                await other.call("Join", "room")
                assert await other.call("Count", "room") == 2
                await other.call("ToGroup", "room", "to the room")
                await other.call("Broadcast", "to all")
            said: list[Any] = []
            while len(said) < 2:
                polled = await client.poll()
                said += [list(m.arguments) for m in client.decode(polled.body) if isinstance(m, Invocation)]
            assert said == [["room", "to the room"], ["everyone", "to all"]]
            idle = await client.poll()  # nothing to send: held on B, answered when its time is up
            assert (idle.status, idle.body) == (200, b"")
            assert (await client.request("DELETE")).status == 202
            assert (await client.poll()).status == 404
            assert (await client_poll_on(steer, b, client)).status == 404


async def client_poll_on(steer: Steer, worker: Worker, client: HttpHubClient) -> Any:
    steer.to(worker)
    return await client.poll()


async def test_server_sent_events_posts_relayed_to_the_stream_holder(redis: RedisServer) -> None:
    """Negotiate on A, the event stream on B (B holds the connection), every POST on A: the
    handshake, calls and a broadcast from A's own WebSocket client arrive on B's stream, in order;
    a second event stream, on A, is refused with 409."""
    with trio.fail_after(DEADLINE):
        async with workers(redis.url) as (a, b):
            steer = Steer(a)
            client = HttpHubClient(steer.connect, "/hub")
            await client.negotiate()
            target = f"/hub?id={client.token}"
            stream_on_b = await trio.open_tcp_stream("127.0.0.1", b.port)
            headers = [("Accept", "text/event-stream")]
            async with open_request(stream_on_b, "GET", target, headers=headers) as events:
                assert events.status == 200
                seen = bytearray()
                await events.read_until(b":\r\n", seen=seen)
                assert (await client.post(b'{"protocol":"json","version":1}\x1e')).status == 200
                await events.read_until(b"data: {}\x1e\r\n\r\n", seen=seen)
                for number in range(3):
                    sent = await client.send(Invocation("Echo", [f"echo {number}"], str(number)))
                    assert sent.status == 200
                async with open_hub_websocket(f"ws://127.0.0.1:{a.port}/hub") as other:
                    await other.call("Broadcast", "to all")
                last = b'"arguments":["everyone","to all"]'
                text = (await events.read_until(last, seen=seen)).decode()
                order = [text.index(f'"result":"echo {number}"') for number in range(3)]
                assert order == sorted(order) and order[-1] < text.index(last.decode())
                refused = await client.request("GET", headers=headers)
                assert refused.status == 409


async def test_a_holder_that_does_not_answer_is_taken_for_gone(redis: RedisServer) -> None:
    """When the holder's link hangs, a request relayed to it is answered 404 after the
    backplane's operation_timeout (the client starts over), and the front serves others meanwhile."""
    from ..redis_helpers import FlakyProxy

    with trio.fail_after(DEADLINE):
        proxy = FlakyProxy(redis.port)
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve)
            async with workers(redis.url, urls={1: proxy.url}) as (a, b):
                steer = Steer(a)
                client = HttpHubClient(steer.connect, "/hub")
                await client.negotiate()
                assert (await client_poll_on(steer, b, client)).status == 200
                proxy.freeze()
                start = trio.current_time()
                steer.to(a)
                gone = await client.post(b'{"protocol":"json","version":1}\x1e')
                assert gone.status == 404
                assert trio.current_time() - start >= FAST["operation_timeout"]
                async with open_hub_websocket(f"ws://127.0.0.1:{a.port}/hub") as other:
                    assert await other.call("Echo", "still serving") == "still serving"
                proxy.heal()
            nursery.cancel_scope.cancel()


async def test_a_relayed_poll_whose_client_left_takes_nothing(redis: RedisServer) -> None:
    """A long poll relayed to the holder, dropped by its client, is cancelled on the holder too:
    a message sent after that waits for the next poll instead of going out to nobody."""
    import logging

    from ..redis_helpers import LogWatcher

    watcher = LogWatcher()
    logger = logging.getLogger("trio_ws.signalr")
    logger.addHandler(watcher)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with trio.fail_after(DEADLINE):
            async with workers(redis.url) as (a, b):
                steer = Steer(a)
                client = HttpHubClient(steer.connect, "/hub")
                await client.negotiate()
                assert (await client_poll_on(steer, b, client)).status == 200
                steer.to(a)
                assert (await client.post(b'{"protocol":"json","version":1}\x1e')).status == 200
                assert (await client.poll()).body == b"{}\x1e"
                async with trio.open_nursery() as nursery:
                    # A poll that waits (nothing to send), then its client goes away.
                    nursery.start_soon(client.poll)
                    await watcher.wait_for("serving a poll relayed from", count=2)
                    nursery.cancel_scope.cancel()
                await watcher.wait_for("stopped waiting for its request")
                async with open_hub_websocket(f"ws://127.0.0.1:{a.port}/hub") as other:
                    await other.call("Broadcast", "after the drop")
                polled = await client.poll()
                said = [list(m.arguments) for m in client.decode(polled.body) if isinstance(m, Invocation)]
                assert said == [["everyone", "after the drop"]]
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(level)


class Balancer:
    """A TCP balancer the test controls: each new connection goes to the next port, in turn;
    ``cut()`` drops every connection at once (no WebSocket Close: a network failure)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = 0
        self._turn = 0
        self._pairs: set[trio.CancelScope] = set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    def cut(self) -> None:
        for scope in list(self._pairs):
            scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        port = self.ports[self._turn % len(self.ports)]
        self._turn += 1
        async with client, await trio.open_tcp_stream("127.0.0.1", port) as upstream:
            with trio.CancelScope() as scope:
                self._pairs.add(scope)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                    nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
            self._pairs.discard(scope)

    async def _pump(self, source: trio.abc.Stream, sink: trio.abc.Stream, pair: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pair.cancel()


class Books:
    """A stateful-reconnect client's count of what it received: duplicates after a Sequence dropped."""

    def __init__(self) -> None:
        self.received = 0
        self._cursor = 0

    def take(self, message: HubMessage) -> bool:
        """Whether ``message`` is new (a Sequence, Pings and duplicates are not)."""
        if isinstance(message, Sequence_):
            self._cursor = message.sequence_id - 1
            return False
        if not is_trackable(message):
            return False
        self._cursor += 1
        if self._cursor <= self.received:
            return False
        self.received = self._cursor
        return True


async def said_until(client: WebSocketHubClient, books: Books, count: int) -> list[str]:
    """The texts of the next ``count`` new group messages."""
    texts: list[str] = []
    while len(texts) < count:
        message = await client.receive()
        if books.take(message) and isinstance(message, Invocation):
            texts.append(message.arguments[1])
    return texts


async def test_stateful_reconnect_to_another_worker_replays_exactly_what_was_missed(
    redis: RedisServer,
) -> None:
    """A stateful WebSocket opened on A, cut by the network, reconnected through the balancer to B:
    B relays it to A, which replays from the client's Sequence; the client gets every group message
    sent before, during and after the outage exactly once, in order, and calls A through B; when
    the relayed socket drops too, the next socket (on A) gets what it missed meanwhile."""
    with trio.fail_after(DEADLINE):
        async with workers(redis.url) as (a, b), trio.open_nursery() as nursery:
            balancer = Balancer([a.port, b.port])
            await nursery.start(balancer.serve)
            client = HttpHubClient(Steer(a).connect, "/hub")
            negotiated = await client.negotiate("negotiateVersion=1&useStatefulReconnect=true")
            assert negotiated["useStatefulReconnect"] is True
            url = f"ws://127.0.0.1:{balancer.port}/hub?id={client.token}"
            books = Books()
            async with open_hub_websocket(f"ws://127.0.0.1:{b.port}/hub") as sender:
                async with open_hub_websocket(url, handshake=False) as first:  # lands on A
                    assert await first.handshake(version=2) is None
                    await first.send(Invocation("Join", ["room"], "1"))
                    while not isinstance(message := await first.receive(), Completion):
                        pass
                    books.take(message)
                    for text in ("before 1", "before 2"):
                        await sender.call("ToGroup", "room", text)
                    assert await said_until(first, books, 2) == ["before 1", "before 2"]
                    balancer.cut()
                for text in ("during 1", "during 2"):
                    await sender.call("ToGroup", "room", text)
                async with open_hub_websocket(url, handshake=False) as second:  # lands on B
                    await second.send(Sequence_(2))  # the client sent one message: Join
                    assert await said_until(second, books, 2) == ["during 1", "during 2"]
                    await sender.call("ToGroup", "room", "after")
                    assert await said_until(second, books, 1) == ["after"]
                    await second.send(Invocation("Worker", [], "2"))
                    while not isinstance(message := await second.receive(), Completion):
                        books.take(message)
                    books.take(message)
                    assert message.result == "A"
                    balancer.cut()  # the relayed socket drops too
                await sender.call("ToGroup", "room", "during 3")
                async with open_hub_websocket(url, handshake=False) as third:  # lands on A again
                    await third.send(Sequence_(3))  # the client sent two: Join, Worker
                    assert await said_until(third, books, 1) == ["during 3"]
            nursery.cancel_scope.cancel()


def relay_leftovers(*workers: Worker) -> list[tuple[int, int]]:
    """Relayed sockets each worker still keeps: (held here, landed here)."""
    return [(len(w.hub.relayed_sockets.remote), len(w.hub.relayed_sockets.fronts)) for w in workers]


async def closed_by_server(client: StatefulClient) -> int | None:
    """The close code the server ends ``client``'s socket with (messages before it skipped)."""
    while (event := await client.raw.next_event()) is not None:
        if isinstance(event, CloseConnection):
            return event.code
    return None


async def open_stateful_tcp(port: int, token: str) -> StatefulClient:
    raw = RawClient(await trio.open_tcp_stream("127.0.0.1", port))
    accepted = await raw.handshake(f"/hub?id={token}")
    assert isinstance(accepted, AcceptConnection), accepted
    return StatefulClient(raw)


async def said_raw(client: StatefulClient, books: Books, count: int) -> list[str]:
    """The texts of the next ``count`` new group messages."""
    texts: list[str] = []
    while len(texts) < count:
        message = await client.receive()
        assert message is not None, "the socket closed"
        if books.take(message) and isinstance(message, Invocation):
            texts.append(message.arguments[1])
    return texts


async def test_a_socket_still_attached_is_taken_over_from_either_worker_and_nothing_is_left(
    redis: RedisServer,
) -> None:
    """A stateful client gives up on a socket that still looks open (half-open: no Close, no cut)
    and opens another, which lands on the other worker: a direct socket taken over by a relayed
    one, and a relayed one by a direct one, again and again. Each time the server closes the old
    socket, the new one gets exactly what the client had not seen, calls and group messages flow
    on, and once the client leaves, neither worker keeps anything of the relay."""
    with trio.fail_after(DEADLINE):
        async with workers(redis.url) as (a, b), trio.open_nursery() as nursery:
            balancer = Balancer([a.port, b.port])
            await nursery.start(balancer.serve)
            client = HttpHubClient(Steer(a).connect, "/hub")
            await client.negotiate("negotiateVersion=1&useStatefulReconnect=true")
            books = Books()
            async with open_hub_websocket(f"ws://127.0.0.1:{b.port}/hub") as sender:
                old = await open_stateful_tcp(balancer.port, client.token)  # lands on A
                await old.handshake()
                await old.send(Invocation("Join", ["room"], "1"))
                while not isinstance(message := await old.receive(), Completion):
                    pass
                books.take(message)
                sent = 1  # the client's messages so far
                for round_ in range(6):  # B (relayed) takes over from A, A from B, ...
                    new = await open_stateful_tcp(balancer.port, client.token)
                    await new.send(Sequence_(sent + 1))
                    assert await closed_by_server(old) == 1008
                    await trio.aclose_forcefully(old.raw.stream)
                    texts = [f"round {round_}: {i}" for i in range(3)]
                    for text in texts:
                        await sender.call("ToGroup", "room", text)
                    assert await said_raw(new, books, 3) == texts
                    sent += 1
                    await new.send(Invocation("Worker", [], str(sent)))
                    while not isinstance(message := await new.receive(), Completion):
                        assert message is not None, "the socket closed"
                        books.take(message)
                    books.take(message)
                    assert message.result == "A"  # the connection never moved
                    old = new
                await old.close()
            await a.hub.relayed_sockets.wait_empty()
            await b.hub.relayed_sockets.wait_empty()
            assert relay_leftovers(a, b) == [(0, 0), (0, 0)]
            nursery.cancel_scope.cancel()
