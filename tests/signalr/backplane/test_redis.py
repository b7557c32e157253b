"""The Redis backplane with a real redis-server: hub servers in one process, each with its own backplane,
as workers would be, with clients on memory transports.

Rules of these tests:

* Every test has a prefix of its own on the session's redis-server, so none sees another's keys.
* Waits are for events: a backplane's ``wait_connected()``, a log line (``LogWatcher``), a
  message a client reads. Redis and its TTLs run on real time, so the timings here are short
  (a heartbeat every 0.1 s, presence kept 0.6 s), and every test has a deadline.
* Order across workers is checked with a marker: messages one worker sends reach every other
  worker in the order sent, so what a client has read before the marker is all it will get.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trustme

import trio_ws
import trio_ws.testing
from trio_ws._server.deployment import Deployment, deployed
from trio_ws.signalr import DisconnectReason, HubServer, RedisBackplane
from trio_ws.signalr._backplane import redis_outbox
from trio_ws.signalr._backplane import redis_wire as wire
from trio_ws.signalr._backplane.base import Audience, Pending
from trio_ws.signalr._protocol.messages import Completion, Invocation

from ...raw import parse_response, read_response
from ..helpers import HubTestClient, connect
from ..hub.test_clients import AUDIENCES, Rooms
from ..redis_helpers import FlakyProxy, LogWatcher, RedisServer, backplane_log, redis, redis_server

__all__ = ["backplane_log", "redis", "redis_server"]  # fixtures, imported for pytest

FAST = {"heartbeat_interval": 0.1, "presence_ttl": 0.6, "operation_timeout": 1.0}
DEADLINE = 15


class Board(Rooms):
    """Rooms, plus a numbered group send, and an event for each connection that has ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: dict[str, trio.Event] = {}

    async def post(self, room: str, number: int) -> None:
        await self.clients.group(room).send("Posted", number)

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        # By now the connection has left the backplane (and its groups in Redis).
        self.ended.setdefault(self.context.connection_id, trio.Event()).set()

    async def wait_ended(self, connection_id: str) -> None:
        await self.ended.setdefault(connection_id, trio.Event()).wait()


@asynccontextmanager
async def cluster(urls: list[str], **options: Any) -> AsyncIterator[list[HubServer]]:
    """A hub server per URL (each its own "worker"), sharing a fresh prefix; closed at the end."""
    prefix = f"test:{secrets.token_hex(4)}"
    servers = [
        HubServer(Board(), backplane=RedisBackplane(url, prefix=prefix, **(FAST | options))) for url in urls
    ]
    async with trio.open_nursery() as nursery:
        for server in servers:
            await nursery.start(server.run)
        for server in servers:
            await _backplane(server).wait_connected()
        yield servers
        async with trio.open_nursery() as closing:
            for server in servers:
                closing.start_soon(server.aclose)


def _backplane(server: HubServer) -> RedisBackplane:
    assert isinstance(server.backplane, RedisBackplane)
    return server.backplane


async def told_until_marker(client: HubTestClient) -> list[str]:
    """The texts of "Told" messages ``client`` receives before the text "marker"."""
    texts: list[str] = []
    while True:
        message = await client.receive()
        assert isinstance(message, Invocation) and message.target == "Told", message
        if message.arguments[0] == "marker":
            return texts
        texts.append(message.arguments[0])


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize(("how", "target", "receivers"), AUDIENCES)
async def test_every_audience_reaches_exactly_its_clients_on_every_worker(
    redis: RedisServer, workers: int, how: str, target: Any, receivers: set[str]
) -> None:
    """Each audience, sent from one worker, reaches its clients on every worker, once each, and no one
    else."""
    with trio.fail_after(DEADLINE):
        async with cluster([redis.url] * workers) as servers:
            place = {"A1": 0, "A2": 1, "B": 2 % workers, "C": (workers - 1)}
            users = {"A1": "ann", "A2": "ann", "B": "bob", "C": "cat"}
            async with (
                connect(servers[place["A1"]], user_id="ann") as a1,
                connect(servers[place["A2"]], user_id="ann") as a2,
                connect(servers[place["B"]], "messagepack", user_id=users["B"]) as b,
                connect(servers[place["C"]], user_id=users["C"]) as c,
            ):
                everyone = {"A1": a1, "A2": a2, "B": b, "C": c}
                ids = {name: await client.call("Me") for name, client in everyone.items()}
                for name, room in (("A1", "red"), ("B", "red"), ("B", "blue"), ("C", "blue")):
                    await everyone[name].call("Join", room)

                def by_id(value: Any) -> Any:
                    if isinstance(value, list):
                        return [by_id(item) for item in value]
                    return ids.get(value, value) if isinstance(value, str) else value

                # Sent without ids (the caller may be a receiver); one runs after the other.
                await a1.send(Invocation("Tell", (how, by_id(target), "hello")))
                await a1.send(Invocation("Tell", ("all", None, "marker")))
                for name, client in everyone.items():
                    assert await told_until_marker(client) == (["hello"] if name in receivers else []), name


@pytest.mark.parametrize("workers", [2, 4])
async def test_groups_members_and_counts_agree_on_every_worker(redis: RedisServer, workers: int) -> None:
    """Joins made on any worker are seen alike from every worker; a connection that ends leaves them."""
    with trio.fail_after(DEADLINE):
        async with cluster([redis.url] * workers) as servers, trio.open_nursery() as nursery:
            clients: list[HubTestClient] = []
            closers: list[trio.CancelScope] = []
            for index in range(workers * 2):
                client, scope = await _client_on(nursery, servers[index % workers], user_id=f"u{index % 3}")
                clients.append(client)
                closers.append(scope)
            ids = [await client.call("Me") for client in clients]
            for client in clients[::2]:
                await client.call("Join", "even")
            for client in clients:
                assert await client.call("Count", "even") == workers
                assert await client.call("Who", "even") == sorted(ids[::2])
                assert await client.call("Online", "u0") == sorted(ids[0::3])
            closers[0].cancel()  # the first client goes away
            hub = servers[0].hub
            assert isinstance(hub, Board)
            await hub.wait_ended(ids[0])
            for client in clients[1:]:
                assert await client.call("Count", "even") == workers - 1
                assert ids[0] not in await client.call("Online", "u0")
            nursery.cancel_scope.cancel()


async def test_a_group_change_for_a_connection_on_another_worker(redis: RedisServer) -> None:
    """groups.add and groups.remove on one worker for a connection held by another: the holder applies
    them before they return, so a group send right after reaches (or no longer reaches) it."""
    with trio.fail_after(DEADLINE):
        async with cluster([redis.url] * 2) as (first, second), connect(second) as remote:
            remote_id = await remote.call("Me")
            await first.groups.add(remote_id, "team")
            assert await first.groups.members("team") == {remote_id}
            await first.clients.group("team").send("Told", "in the team")
            await first.clients.all.send("Told", "marker")
            assert await told_until_marker(remote) == ["in the team"]
            await first.groups.remove(remote_id, "team")
            await first.clients.group("team").send("Told", "still in it?")
            await first.clients.all.send("Told", "marker")
            assert await told_until_marker(remote) == []
            assert await second.groups.count("team") == 0
            await first.groups.add("no-such-connection", "team")  # ignored, as in one process
            assert await first.groups.count("team") == 0


async def test_client_results_come_back_to_the_callers_worker(redis: RedisServer) -> None:
    """A hub on one worker awaits a client on another: its value, its error, no such connection, a
    client that leaves before answering."""
    with trio.fail_after(DEADLINE):
        async with cluster([redis.url] * 2) as (first, second), connect(first) as caller:
            async with connect(second, "messagepack") as answerer:
                answerer_id = await answerer.call("Me")
                for reply, outcome in [
                    (Completion.with_result("?", {"n": 42, "b": b"\x00"}), {"n": 42, "b": b"\x00"}),
                    (Completion.with_error("?", "Error: no idea"), "Error: no idea"),
                ]:
                    call_id = caller.next_id()
                    await caller.send(Invocation("Ask", (answerer_id, "life?"), call_id))
                    asked = await answerer.receive()
                    assert isinstance(asked, Invocation) and asked.arguments == ("life?",), asked
                    assert asked.invocation_id is not None
                    await answerer.send(_reply_to(asked.invocation_id, reply))
                    completion = await caller.receive()
                    assert isinstance(completion, Completion) and completion.invocation_id == call_id
                    if reply.error is None:
                        assert completion.result == {"n": 42, "b": "AA=="}  # JSON: bytes as base64
                    else:
                        assert completion.error == (
                            "An unexpected error occurred invoking 'Ask' on the server. ClientResultError: "
                            f"client result of 'Answer' from connection {answerer_id}: {outcome}"
                        )
                unknown = await caller.invoke("Ask", "nobody", "?")
                assert unknown.error is not None and unknown.error.endswith("no connection has this id")
                call_id = caller.next_id()
                await caller.send(Invocation("Ask", (answerer_id, "still there?"), call_id))
                assert isinstance(await answerer.receive(), Invocation)
            # The answerer left (its block ended) without answering: the caller learns why.
            completion = await caller.receive()
            assert isinstance(completion, Completion) and completion.error is not None
            assert completion.error.endswith("the connection closed")


async def test_presence_expires_when_a_worker_stops_heartbeating(
    redis: RedisServer, backplane_log: LogWatcher
) -> None:
    """A worker whose link hangs stops heartbeating: after presence_ttl another reaps it, so its clients
    leave groups and counts everywhere. When its link comes back it rebuilds them from its own tables."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            proxy = FlakyProxy(redis.port)
            await nursery.start(proxy.serve)
            async with (
                cluster([redis.url, proxy.url]) as (steady, hanging),
                connect(steady) as here,
                connect(hanging) as there,
            ):
                await here.call("Join", "room")
                await there.call("Join", "room")
                assert await here.call("Count", "room") == 2
                proxy.freeze()
                await backplane_log.wait_for("stopped heartbeating: its 1 connection(s) left their groups")
                assert await here.call("Count", "room") == 1
                await backplane_log.wait_for("lost Redis")  # the hanging one notices, too
                proxy.heal()
                await _backplane(hanging).wait_connected()
                assert await here.call("Count", "room") == 2
                assert await there.call("Count", "room") == 2
            nursery.cancel_scope.cancel()


async def test_redis_restarted_under_traffic(redis: RedisServer, backplane_log: LogWatcher) -> None:
    """Redis stops and starts again while one worker's client posts to a room without a pause: each
    worker logs the outage once and the recovery once, keeps serving its own clients, buffers its
    sends, and rebuilds its presence (Redis lost everything). Every post reaches the other worker's
    client, in order (one sent as Redis went away may come twice), and every post made after the
    recovery arrives exactly once."""
    with trio.fail_after(DEADLINE):
        async with (
            cluster([redis.url] * 2) as servers,
            connect(servers[0]) as sender,
            connect(servers[1]) as listener,
            connect(servers[1]) as observer,  # not in the room: free to ask while posts flow
        ):
            for client in (sender, listener):
                await client.call("Join", "room")
            # Each worker learns of the other at a heartbeat; back from an outage, it waits for the
            # workers it knows of before it sends again.
            await backplane_log.wait_for("2 worker(s) now", count=2)
            traffic = _Traffic(sender)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(traffic.run)
                await traffic.wait_sent(10)
                redis.stop()
                await backplane_log.wait_for("lost Redis", count=2)
                await traffic.wait_sent(len(traffic.sent) + 10)  # made during the outage: buffered
                count = await observer.invoke("Count", "room")  # members are in Redis: not now
                assert count.error is not None and "the backplane is unreachable" in count.error
                redis.start()
                for server in servers:
                    await _backplane(server).wait_connected()
                recovered = len(traffic.sent)
                await traffic.wait_sent(recovered + 50)
                traffic.stop()
            await sender.send(Invocation("Tell", ("group", "room", "marker")))
            received = await _posted_until_marker(listener)
            assert await _posted_until_marker(sender) == traffic.sent  # its own worker: at once, once
            assert await observer.call("Count", "room") == 2  # presence rebuilt by each worker
    assert sorted(set(received)) == traffic.sent, "a post was lost"
    assert received == sorted(received), "posts out of order"
    after = received[received.index(recovered) :]
    assert after == traffic.sent[recovered:], "a post made after the recovery was lost or repeated"
    warnings = backplane_log.messages(lambda r: r.levelno >= logging.WARNING)
    assert len(warnings) == 2 and all("lost Redis at" in w for w in warnings), warnings
    assert len(backplane_log.messages(lambda r: "Redis is back at" in r.getMessage())) == 2
    assert all(record.exc_info is None for record in backplane_log.records)


class _Traffic:
    """A client posting numbered messages to "room", one after another, until stopped."""

    def __init__(self, client: HubTestClient) -> None:
        self.client = client
        self.sent: list[int] = []
        self._stopped = False
        self._progress = trio.Event()

    async def run(self) -> None:
        while not self._stopped:
            number = len(self.sent)
            await self.client.send(Invocation("Post", ("room", number)))  # no id: no answer to read
            self.sent.append(number)
            self._progress.set()
            self._progress = trio.Event()
            await trio.sleep(0.002)  # a steady trickle: pacing, not waiting for anything

    async def wait_sent(self, count: int) -> None:
        while len(self.sent) < count:
            await self._progress.wait()

    def stop(self) -> None:
        self._stopped = True


async def _posted_until_marker(client: HubTestClient) -> list[int]:
    """The numbers of the "Posted" messages ``client`` receives before a "Told" marker."""
    numbers: list[int] = []
    while True:
        message = await client.receive()
        assert isinstance(message, Invocation), message
        if message.target == "Told":
            assert message.arguments[0] == "marker"
            return numbers
        assert message.target == "Posted", message
        numbers.append(message.arguments[0])


async def test_back_from_an_outage_a_worker_waits_for_the_others_before_sending(
    redis: RedisServer, backplane_log: LogWatcher
) -> None:
    """After Redis restarts, a worker that is back before another holds its sends (and what waited)
    until the other has resubscribed, so the other's clients miss nothing."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            proxy = FlakyProxy(redis.port)
            await nursery.start(proxy.serve)
            async with (
                cluster([redis.url, proxy.url], presence_ttl=5.0) as (early, late),
                connect(early) as sender,
                connect(late) as listener,
            ):
                await listener.call("Join", "room")
                await backplane_log.wait_for("2 worker(s) now", count=2)
                proxy.cut()  # the late worker stays away after Redis is back
                redis.stop()
                await backplane_log.wait_for("lost Redis", count=2)
                redis.start()
                await backplane_log.wait_for("back; waiting for 1 more worker(s) to resubscribe")
                for number in range(10):
                    await sender.send(Invocation("Post", ("room", number)))
                proxy.heal()
                for server in (early, late):
                    await _backplane(server).wait_connected()
                await sender.send(Invocation("Tell", ("group", "room", "marker")))
                assert await _posted_until_marker(listener) == list(range(10))
            nursery.cancel_scope.cancel()


async def test_a_pending_connection_carries_its_negotiates_trace_to_the_worker_that_claims_it(
    redis: RedisServer,
) -> None:
    """The trace context travels with the pending record; a record written without it (tracing off,
    or by a worker from before it was kept) is still claimed, with none."""
    traced = Pending(
        "id-1", "token-1", "ann", True, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "a=1"
    )
    with trio.fail_after(DEADLINE):
        async with cluster([redis.url] * 2) as (first, second):
            await first.backplane.record_pending(traced, 5.0)
            assert await second.backplane.claim("token-1") == traced
            untraced = Pending("id-2", "token-2", None, False)
            await first.backplane.record_pending(untraced, 5.0)
            assert await second.backplane.claim("token-2") == untraced
            key = _backplane(first).keys.token("token-3")

            async def as_before(client: Any) -> None:  # the fields the record had before traces
                await client.hset(key, {"s": "p", "i": "id-3", "u": "", "r": "0"})
                await client.pexpire(key, 5000)

            await _backplane(first)._link.command(as_before)
            assert await second.backplane.claim("token-3") == Pending("id-3", "token-3", None, False)


async def test_a_worker_delivers_its_own_sends_once(redis: RedisServer) -> None:
    """A worker delivers its own sends to its clients at once, and not again when Redis echoes them
    back: a client result from another worker, which comes back after that echo, proves it."""
    with trio.fail_after(DEADLINE):
        async with (
            cluster([redis.url] * 2) as (first, second),
            connect(first) as here,
            connect(second) as there,
        ):
            there_id = await there.call("Me")
            await here.send(Invocation("Tell", ("all", None, "once")))
            call_id = here.next_id()
            await here.send(Invocation("Ask", (there_id, "?"), call_id))
            told = await there.receive()
            assert isinstance(told, Invocation) and told.arguments[0] == "once"
            asked = await there.receive()
            assert isinstance(asked, Invocation) and asked.invocation_id is not None
            await there.send(Completion.with_result(asked.invocation_id, "!"))
            seen: list[Any] = []
            while not isinstance(message := await here.receive(), Completion):
                seen.append(message.arguments[0])  # type: ignore[union-attr]
            assert seen == ["once"] and message.result == "!"


async def test_sends_beyond_the_buffer_are_reported_to_the_caller(
    redis: RedisServer, backplane_log: LogWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """While Redis is away, sends wait up to buffer_size bytes; the next one fails with BackplaneError,
    which the calling client sees as a HubException, with no traceback logged."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            proxy = FlakyProxy(redis.port)
            await nursery.start(proxy.serve)
            async with cluster([proxy.url], buffer_size=300) as (server,), connect(server) as client:
                proxy.cut()
                await backplane_log.wait_for("lost Redis")
                assert not server.health().ok
                refused = None
                for number in range(100):
                    completion = await client.invoke("Post", "room", number)
                    if completion.error is not None:
                        refused = completion.error
                        break
                assert refused is not None and number > 3
                assert refused.startswith(
                    "An unexpected error occurred invoking 'Post' on the server. "
                    "BackplaneError: the backplane is unreachable"
                )
                assert refused.endswith("bytes of sends already wait for it (buffer_size)")
                proxy.heal()
                await _backplane(server).wait_connected()
                assert server.health().ok
            nursery.cancel_scope.cancel()
    assert all(record.exc_info is None for record in caplog.records)


async def test_an_unsendable_argument_raises_in_the_sender(redis: RedisServer) -> None:
    """A value no hub protocol can carry raises TypeError where it is sent, and nothing goes out."""
    with trio.fail_after(DEADLINE):
        async with cluster([redis.url] * 2) as (first, second), connect(second) as client:
            with pytest.raises(TypeError, match="'object' values cannot be sent in a hub message"):
                await first.clients.all.send("Told", object())
            await first.clients.all.send("Told", "marker")
            assert await told_until_marker(client) == []


async def test_rediss_shares_hubs_over_tls() -> None:
    """rediss:// speaks TLS to Redis (its CA named in the URL, as coredis takes it): sends and counts work."""
    server = RedisServer(tls=trustme.CA())
    server.start()
    try:
        with trio.fail_after(DEADLINE):
            async with cluster([server.url] * 2) as (first, second), connect(second) as client:
                await client.call("Join", "room")
                assert await first.groups.count("room") == 1
                await first.clients.group("room").send("Told", "over TLS")
                await first.clients.group("room").send("Told", "marker")
                assert await told_until_marker(client) == ["over TLS"]
    finally:
        server.close()


def test_messages_between_workers_round_trip() -> None:
    """Every kind of message survives encoding; a foreign message is refused; an unknown kind is skipped."""
    audience = Audience(everyone=True, groups=frozenset({"g"}), excluded=frozenset({"x"}))
    messages: list[wire.Message] = [
        wire.Send("w1", audience, "Told", ["text", 1, None, b"\x01", {"k": [1.5]}]),
        wire.GroupChange("w1", "r1", True, "c1", "room"),
        wire.Ack("r1"),
        wire.Invoke("w1", "r2", "c1", "Answer", ["q"], 2.5),
        wire.Result("r2", False, "Error: no"),
        wire.Probe("n"),
        wire.Batch([wire.encode(wire.Ack("r1")), wire.encode(wire.Probe("n"))]),
    ]
    for message in messages:
        assert wire.decode(wire.encode(message)) == message
    with pytest.raises(ValueError, match="not a backplane message"):
        wire.decode(b"hello")
    with pytest.raises(ValueError, match="a batch holds encoded messages"):
        wire.decode(b"\x92\x09\x91\x01")  # [9, [1]]: a batch of something else
    assert wire.decode(b"\x92\x63\xa1x") is None  # [99, "x"]: a kind from a later version


def test_a_worker_knows_its_own_sends_without_decoding_them() -> None:
    """``sends_prefix`` matches every Send its worker encodes, whatever its audience and arguments,
    and nothing else: not another worker's (even one whose name starts the same), nor other kinds."""
    mine = wire.sends_prefix("w1")
    audiences = [Audience(everyone=True), Audience(groups=frozenset({"g"}), excluded=frozenset({"x"}))]
    for audience in audiences:
        for arguments in ([], ["text", 1, None], [{"k": [1.5]}] * 20):
            assert wire.encode(wire.Send("w1", audience, "Told", arguments)).startswith(mine)
            for other in ("w10", "w", "w2"):
                assert not wire.encode(wire.Send(other, audience, "Told", arguments)).startswith(mine)
    long_name = "w" * 300  # a longer header for the name: still exact
    assert wire.encode(wire.Send(long_name, audiences[0], "T", [])).startswith(wire.sends_prefix(long_name))
    others: list[wire.Message] = [
        wire.GroupChange("w1", "r1", True, "c1", "room"),
        wire.Invoke("w1", "r2", "c1", "Answer", ["q"], 2.5),
        wire.Batch([wire.encode(wire.Send("w1", audiences[0], "T", []))]),
    ]
    for message in others:
        assert not wire.encode(message).startswith(mine)


def test_runs_of_sends_for_one_channel_are_published_as_one_batch_in_order() -> None:
    """The publisher joins consecutive messages for one channel into one PUBLISH, in order, and
    never past the byte bound; a lone message is published as it is."""
    big = b"x" * (redis_outbox._BATCH_BYTES - 10)
    outbox = [("all", b"1"), ("all", b"2"), ("w:a", b"3"), ("all", b"4"), ("all", big), ("all", b"5" * 20)]
    joined = redis_outbox.joined(outbox)
    assert [channel for channel, _ in joined] == ["all", "w:a", "all", "all"]
    assert wire.decode(joined[0][1]) == wire.Batch([b"1", b"2"])
    assert joined[1][1] == b"3"
    assert wire.decode(joined[2][1]) == wire.Batch([b"4", big])
    assert joined[3][1] == b"5" * 20


async def _client_on(
    nursery: trio.Nursery, server: HubServer, **options: Any
) -> tuple[HubTestClient, trio.CancelScope]:
    """A connected client whose connection ends when the returned scope is cancelled."""
    ready = trio.Event()
    box: list[HubTestClient] = []
    scope = trio.CancelScope()

    async def hold() -> None:
        with scope:
            async with connect(server, **options) as client:
                box.append(client)
                ready.set()
                await trio.sleep_forever()

    nursery.start_soon(hold)
    await ready.wait()
    return box[0], scope


def _reply_to(invocation_id: str, reply: Completion) -> Completion:
    if reply.error is not None:
        return Completion.with_error(invocation_id, reply.error)
    return Completion.with_result(invocation_id, reply.result)


async def test_healthz_answers_503_while_the_backplane_cannot_reach_redis(
    redis: RedisServer, backplane_log: LogWatcher
) -> None:
    """A hub server that takes its backplane from the deployment (--backplane) reports it on /healthz:
    200 with its state while connected, 503 while Redis is out of reach, 200 again once it heals."""
    hub_server = HubServer(Board())
    app = trio_ws.App()

    @app.service
    async def run_hub(
        server: trio_ws.Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(hub_server.run)
            task_status.started()
            await server.wait_closing()
            await hub_server.aclose()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            proxy = FlakyProxy(redis.port)
            await nursery.start(proxy.serve)
            with deployed(Deployment(app=app, backplane=proxy.url)):
                async with trio_ws.testing.open_memory_server(app) as served:
                    await _backplane(hub_server).wait_connected()
                    status, body = await _healthz(served.listener)
                    assert status == 200
                    assert body.startswith("ok\nhub Board: Redis connected (")
                    proxy.cut()
                    await backplane_log.wait_for("lost Redis")
                    status, body = await _healthz(served.listener)
                    assert status == 503
                    assert body.startswith("unhealthy\nhub Board: Redis unreachable since ")
                    proxy.heal()
                    await _backplane(hub_server).wait_connected()
                    assert (await _healthz(served.listener))[0] == 200
            nursery.cancel_scope.cancel()
    assert app.health_checks == ()  # the hub server took its check away when it stopped


async def _healthz(listener: trio_ws.testing.MemoryListener) -> tuple[int, str]:
    stream = await listener.connect()
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, body = parse_response(await read_response(stream))
    return status, body.decode()
