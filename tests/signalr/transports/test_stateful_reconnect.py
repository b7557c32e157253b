"""Stateful reconnect end to end: the official client through a proxy that cuts, and the server's side.

The official client (``@microsoft/signalr`` in Node, ``withStatefulReconnect()``) reaches
``/testhub`` through a TCP proxy written here, which cuts the WebSocket again and again, in the
middle of frames, while calls go one way and sends the other: every message must arrive once,
in order, on the same connection. A client kept away longer than the disconnect timeout must
get a clean end and come back as a new connection.

The server's side is then pinned with a raw WebSocket speaking JSON with Sequence and Ack
(``tests/raw.RawClient`` over memory streams, time on ``autojump_clock``): the replay,
duplicates dropped, and a full replay buffer holding a hub method back while the client is away.

The Node parts run in real time (the client is a real process) but wait only for events: the
client's lines, the hub's disconnect; their deadlines only bound a hang.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection, Message, RejectConnection, TextMessage

import trio_ws
from examples.signalr.testhub import TestHub
from tests.raw import RawClient, open_raw_websocket
from tests.signalr.helpers import assert_no_tracebacks
from tests.signalr.http_helpers import HttpHubClient
from tests.signalr.redis_helpers import RedisServer, redis, redis_server
from trio_ws.signalr import DisconnectReason, Hub, HubOptions, RedisBackplane, map_hub
from trio_ws.signalr._protocol import PROTOCOLS
from trio_ws.signalr._protocol.handshake import encode_request
from trio_ws.signalr._protocol.messages import (
    Ack,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    Sequence_,
)

__all__ = ["redis", "redis_server"]  # fixtures, imported for pytest

NODE_SUITE = Path(__file__).resolve().parents[2] / "signalr_node"
CLIENT = NODE_SUITE / "stateful" / "through-proxy.js"
JSON = PROTOCOLS["json"]
# Bounds a hang of the Node client; the runs themselves take a few seconds.
NODE_DEADLINE = 60.0


# -- the official client through a cutting proxy ------------------------------------------------


class RecordingHub(TestHub):
    """The conformance hub, noting how each connection ended."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.ended: dict[str, DisconnectReason] = {}
        self.ended_event = trio.Event()

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.ended[self.context.connection_id] = reason
        self.ended_event.set()


class CuttingProxy:
    """TCP from 127.0.0.1 to the hub, cutting WebSocket connections as the test plans.

    Each WebSocket connection (a request with ``Upgrade: websocket``) takes the next planned
    cut, ``(direction, n)``: once ``n`` bytes have gone that way after the upgrade, the
    proxy forwards the part of the chunk before the limit (a frame cut in half), then closes
    both sides without a WebSocket Close (the client sees 1006). Other connections, and
    WebSockets once the plan is spent, are forwarded untouched. ``cut_now()`` cuts every
    open WebSocket; while ``hold`` is set, new WebSockets wait before reaching the hub.
    """

    def __init__(self, target_port: int | list[int], plan: list[tuple[str, int]]) -> None:
        # Several ports: WebSockets go to each in turn (other requests to the first), as a
        # balancer without stickiness sends a reconnecting client to one worker, then the other.
        self.target_ports = [target_port] if isinstance(target_port, int) else list(target_port)
        self.plan = list(plan)
        self.cuts = 0
        self.websockets = 0
        self.hold: trio.Event | None = None
        self.held = trio.Event()  # a WebSocket is waiting at the hold
        self._open: set[trio.CancelScope] = set()
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    def cut_now(self) -> None:
        for scope in list(self._open):
            scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            first = await client.receive_some(65536)
            if not first:
                return
            websocket = b"upgrade: websocket" in bytes(first).lower()
            if websocket:
                self.websockets += 1
                if self.hold is not None:
                    self.held.set()
                    await self.hold.wait()
            ports = self.target_ports
            port = ports[(self.websockets - 1) % len(ports)] if websocket else ports[0]
            upstream = await trio.open_tcp_stream("127.0.0.1", port)
            cut = self.plan.pop(0) if websocket and self.plan else None
            scope = trio.CancelScope()
            if websocket:
                self._open.add(scope)
            try:
                with scope:
                    await upstream.send_all(first)
                    upgraded = trio.Event()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, upstream, "up", cut, upgraded, scope)
                        nursery.start_soon(self._pump, upstream, client, "down", cut, upgraded, scope)
            finally:
                self._open.discard(scope)
                await trio.aclose_forcefully(upstream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(client)

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        direction: str,
        cut: tuple[str, int] | None,
        upgraded: trio.Event,
        scope: trio.CancelScope,
    ) -> None:
        counted = 0
        header = bytearray()
        try:
            while data := await source.receive_some(65536):
                data = bytes(data)
                if cut is None:
                    await sink.send_all(data)
                    continue
                after = b""
                if direction == "down" and not upgraded.is_set():
                    header += data
                    end = header.find(b"\r\n\r\n")
                    if end >= 0:
                        if header.startswith(b"HTTP/1.1 101"):
                            upgraded.set()
                        after = bytes(header[end + 4 :])
                elif upgraded.is_set():
                    after = data
                if cut[0] == direction and after:
                    if counted + len(after) >= cut[1]:
                        keep = len(data) - len(after) + (cut[1] - counted)
                        await sink.send_all(data[:keep])
                        self.cuts += 1
                        scope.cancel()
                        return
                    counted += len(after)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()  # one side ended (or reset) on its own: end the other too


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The Node client script, its packages installed (``npm ci`` from the committed lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the official-client tests need Node 20 and npm on PATH")
    if not (NODE_SUITE / "node_modules" / "@microsoft" / "signalr").is_dir():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_SUITE, capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_SUITE}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return CLIENT


@asynccontextmanager
async def serve_testhub(
    nursery: trio.Nursery, options: HubOptions
) -> AsyncIterator[tuple[trio_ws.Server, RecordingHub, trio_ws.signalr.HubServer]]:
    """``/testhub`` (stateful reconnect allowed) on a free port of 127.0.0.1."""
    app = trio_ws.App()
    hub = RecordingHub()
    hub_server = map_hub(app, "/testhub", hub, options=options, auth=None, stateful_reconnect=True)
    server = await trio_ws.testing.start_server(nursery, app)
    try:
        yield server, hub, hub_server
    finally:
        await server.aclose()


class NodeClient:
    """The Node client as a process: its JSON lines, one at a time."""

    def __init__(self, process: trio.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self._buffer = bytearray()

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            data = await self.process.stdout.receive_some(65536)
            if not data:
                raise AssertionError(f"the Node client ended early; its log:\n{self.log.read_text()}")
            self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        event: dict[str, Any] = json.loads(line)
        if event["event"] == "failed":
            raise AssertionError(
                f"the Node client failed: {event['error']}\nits log:\n{self.log.read_text()}"
            )
        return event


@asynccontextmanager
async def run_node(script: Path, log: Path, **env: str | int) -> AsyncIterator[NodeClient]:
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            ["node", str(script)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=NODE_SUITE,
            env={**os.environ, **{k: str(v) for k, v in env.items()}},
        )
        try:
            with trio.fail_after(NODE_DEADLINE):
                yield NodeClient(process, log)
                code = await process.wait()
                assert code == 0, await trio.Path(log).read_text()
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_official_client_keeps_every_message_across_many_cuts(
    node_client: Path, nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through a proxy that cuts the WebSocket ten times mid-frame, calls one way and sends the other
    arrive exactly once and in order, and the connection id never changes."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    count, pushes = 300, 300
    # Alternate which way the cut comes, each after a different number of bytes.
    plan = [("down" if i % 2 else "up", 800 + 173 * i) for i in range(10)]
    async with serve_testhub(nursery, HubOptions(detailed_errors=True)) as (server, hub, hub_server):
        proxy = CuttingProxy(server.port, plan)
        await nursery.start(proxy.run)
        url = f"http://127.0.0.1:{proxy.port}"
        async with run_node(
            node_client, tmp_path / "node.log", SERVER_URL=url, COUNT=count, PUSHES=pushes
        ) as node:
            connected = await node.line()
            assert connected["event"] == "connected"
            connection_id = connected["connectionId"]
            for k in range(pushes):
                await hub_server.clients.client(connection_id).send("Push", k)
            done = await node.line()
    expected = [str(i) for i in range(count)]
    assert done["first"] == done["last"] == connection_id
    assert done["echoes"] == expected
    assert done["messages"] == expected
    assert done["pushed"] == list(range(pushes))
    assert done["reconnecting"] == 0  # never fell back to a new connection
    assert proxy.cuts == len(plan), f"only {proxy.cuts} cuts happened; the flow was too short"
    assert proxy.websockets == len(plan) + 1
    assert hub.ended == {connection_id: DisconnectReason.CLIENT_CLOSED}
    assert_no_tracebacks(caplog)


async def test_official_client_with_twelve_calls_in_flight_is_never_stuck_behind_its_acks(
    node_client: Path, nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve 1 KB Echo calls in flight outrun the client's once-a-second Acks, so the replay buffer
    fills again and again; the Acks are read behind the calls waiting for the slot, and all 600
    calls complete on one connection, through two cuts, without TOO_SLOW."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    count = 600
    async with serve_testhub(nursery, HubOptions(detailed_errors=True)) as (server, hub, _):
        proxy = CuttingProxy(server.port, [("down", 150_000), ("up", 200_000)])
        await nursery.start(proxy.run)
        url = f"http://127.0.0.1:{proxy.port}"
        async with run_node(
            node_client,
            tmp_path / "node.log",
            SERVER_URL=url,
            MODE="calls",
            COUNT=count,
            WINDOW=12,
            SIZE=1024,
        ) as node:
            connection_id = (await node.line())["connectionId"]
            done = await node.line()
    assert done["first"] == done["last"] == connection_id
    assert done["calls"] == count and done["wrong"] == []
    assert done["reconnecting"] == 0
    assert proxy.cuts == 2
    assert hub.ended == {connection_id: DisconnectReason.CLIENT_CLOSED}
    assert not any("too slow" in r.getMessage() for r in caplog.records)
    assert_no_tracebacks(caplog)


@asynccontextmanager
async def serve_two_workers(
    nursery: trio.Nursery, redis: RedisServer
) -> AsyncIterator[tuple[list[trio_ws.Server], list[RecordingHub], list[trio_ws.signalr.HubServer]]]:
    """``/testhub`` on two servers sharing a redis-server: the workers of one deployment."""
    prefix = f"test:{os.urandom(4).hex()}"
    fast: dict[str, Any] = {"heartbeat_interval": 0.1, "presence_ttl": 0.6, "operation_timeout": 0.5}
    hubs: list[RecordingHub] = []
    hub_servers: list[trio_ws.signalr.HubServer] = []
    servers: list[trio_ws.Server] = []
    for _ in range(2):
        app = trio_ws.App()
        hub = RecordingHub()
        backplane = RedisBackplane(redis.url, prefix=prefix, **fast)
        options = HubOptions(detailed_errors=True)
        hub_servers.append(
            map_hub(
                app, "/testhub", hub, options=options, auth=None, backplane=backplane, stateful_reconnect=True
            )
        )
        hubs.append(hub)
        servers.append(await trio_ws.testing.start_server(nursery, app))
        await backplane.wait_connected()
    try:
        yield servers, hubs, hub_servers
    finally:
        for server in servers:
            await server.aclose()


def leftovers(hub_servers: list[trio_ws.signalr.HubServer]) -> list[tuple[int, int, int]]:
    """What each worker still keeps: relayed sockets held, relayed sockets landed, connections."""
    return [
        (len(h.relayed_sockets.remote), len(h.relayed_sockets.fronts), h.statistics().connections)
        for h in hub_servers
    ]


async def test_official_client_cut_again_and_again_landing_on_each_worker_in_turn(
    node_client: Path, redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers on one redis-server; every new WebSocket of the official client lands on the other
    worker (a balancer without stickiness) and the proxy cuts each one mid-frame, so the connection's
    holder sees its socket come back directly, relayed, directly... Calls one way, sends and pushes
    (from the other worker) the other way arrive exactly once and in order on one connection, and
    neither worker keeps anything of it afterwards."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    count, pushes = 300, 300
    plan = [("down" if i % 2 else "up", 500 + 123 * i) for i in range(12)]
    with trio.fail_after(NODE_DEADLINE):
        async with trio.open_nursery() as nursery:
            async with serve_two_workers(nursery, redis) as (servers, hubs, hub_servers):
                proxy = CuttingProxy([s.port for s in servers], plan)
                await nursery.start(proxy.run)
                url = f"http://127.0.0.1:{proxy.port}"
                async with run_node(
                    node_client, tmp_path / "node.log", SERVER_URL=url, COUNT=count, PUSHES=pushes
                ) as node:
                    connected = await node.line()
                    connection_id = connected["connectionId"]
                    for k in range(pushes):  # from the worker that does not hold it: over Redis
                        await hub_servers[1].clients.client(connection_id).send("Push", k)
                    done = await node.line()
                await hubs[0].ended_event.wait()
                await trio.testing.wait_all_tasks_blocked()
                left = leftovers(hub_servers)
            nursery.cancel_scope.cancel()
    expected = [str(i) for i in range(count)]
    assert done["first"] == done["last"] == connection_id
    assert done["echoes"] == expected
    assert done["messages"] == expected
    assert done["pushed"] == list(range(pushes))
    assert done["reconnecting"] == 0
    assert proxy.cuts == len(plan), f"only {proxy.cuts} cuts happened; the flow was too short"
    assert hubs[0].ended == {connection_id: DisconnectReason.CLIENT_CLOSED} and not hubs[1].ended
    assert left == [(0, 0, 0), (0, 0, 0)]
    assert_no_tracebacks(caplog)


async def test_official_client_with_calls_in_flight_keeps_acking_through_a_relay(
    node_client: Path, redis: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve 1 KB Echo calls in flight, the socket cut four times and landing on each worker in
    turn: while relayed, the client's Acks cross the backplane behind its calls and must still
    reach the holder; every call completes on one connection, no TOO_SLOW, nothing left behind."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    count = 800
    # Short legs on A (direct), long ones on B (relayed): most calls cross the backplane.
    plan = [("up", 3000), ("down", 300_000), ("up", 3000), ("down", 300_000)]
    with trio.fail_after(NODE_DEADLINE):
        async with trio.open_nursery() as nursery:
            async with serve_two_workers(nursery, redis) as (servers, hubs, hub_servers):
                proxy = CuttingProxy([s.port for s in servers], plan)
                await nursery.start(proxy.run)
                url = f"http://127.0.0.1:{proxy.port}"
                async with run_node(
                    node_client,
                    tmp_path / "node.log",
                    SERVER_URL=url,
                    MODE="calls",
                    COUNT=count,
                    WINDOW=12,
                    SIZE=1024,
                ) as node:
                    connection_id = (await node.line())["connectionId"]
                    done = await node.line()
                await hubs[0].ended_event.wait()
                await trio.testing.wait_all_tasks_blocked()
                left = leftovers(hub_servers)
            nursery.cancel_scope.cancel()
    assert done["first"] == done["last"] == connection_id
    assert done["calls"] == count and done["wrong"] == []
    assert done["reconnecting"] == 0
    assert proxy.cuts == len(plan)
    assert hubs[0].ended == {connection_id: DisconnectReason.CLIENT_CLOSED} and not hubs[1].ended
    assert left == [(0, 0, 0), (0, 0, 0)]
    assert not any("too slow" in r.getMessage() for r in caplog.records)
    assert_no_tracebacks(caplog)


async def test_official_client_away_too_long_comes_back_as_a_new_connection(
    node_client: Path, nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose way back is held past the disconnect timeout finds its connection ended cleanly
    (404 for the old token) and reconnects automatically as a new connection."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    options = HubOptions(detailed_errors=True, disconnect_timeout=0.5)
    async with serve_testhub(nursery, options) as (server, hub, _):
        proxy = CuttingProxy(server.port, [])
        await nursery.start(proxy.run)
        url = f"http://127.0.0.1:{proxy.port}"
        async with run_node(node_client, tmp_path / "node.log", SERVER_URL=url, MODE="away") as node:
            first = (await node.line())["connectionId"]
            proxy.hold = trio.Event()
            proxy.cut_now()
            await proxy.held.wait()  # the client tries to come back: keep it waiting
            await hub.ended_event.wait()  # ... until the server has given up on it
            proxy.hold.set()
            done = await node.line()
    assert done["first"] == first
    assert done["reconnectedId"] == done["second"] != first
    assert done["echo"] == "still here"
    assert hub.ended[first] is DisconnectReason.TRANSPORT_FAILED
    assert hub.ended[done["second"]] is DisconnectReason.CLIENT_CLOSED
    assert any("no new transport within disconnect_timeout" in r.getMessage() for r in caplog.records)
    assert_no_tracebacks(caplog)


# -- the server's side, over a raw WebSocket --------------------------------------------------


class Ledger(Hub):
    """Adds numbers (so a call processed twice shows), and sends bursts to its caller."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.sent = 0
        self.burst_cancelled = False
        self.ended: dict[str, DisconnectReason] = {}
        self.ended_event = trio.Event()
        self.server: trio_ws.signalr.HubServer | None = None

    async def add(self, number: int) -> int:
        self.total += number
        return self.total

    async def echo(self, text: str) -> str:
        return text

    async def join(self, group: str) -> None:
        await self.groups.add(self.context.connection_id, group)

    async def burst(self, count: int, size: int) -> None:
        try:
            for i in range(count):
                await self.clients.caller.send("Item", i, "x" * size)
                self.sent = i + 1
        except trio.Cancelled:
            self.burst_cancelled = True
            raise

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.ended[self.context.connection_id] = reason
        self.ended_event.set()


class StatefulClient:
    """JSON hub messages over a ``RawClient``: it sends and acks only what the test says."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw
        self._reader = JSON.reader(2**20)

    async def handshake(self) -> None:
        """Handshake at version 2 (what the official clients send under stateful reconnect)."""
        await self.raw.send(TextMessage(encode_request("json", 2).decode()))
        event = await self.raw.next_event()
        assert isinstance(event, TextMessage) and event.data.startswith("{}\x1e"), event
        self._reader.receive_data(event.data[3:].encode())

    async def send(self, *messages: HubMessage) -> None:
        await self.raw.send(*(TextMessage(JSON.encode(m).decode()) for m in messages))

    async def receive(self) -> HubMessage | None:
        """The server's next message (Pings skipped), or ``None`` once the socket has closed."""
        while True:
            message = self._reader.next_message()
            if message is not None:
                if isinstance(message, Ping):
                    continue
                return message
            event = await self.raw.next_event()
            if isinstance(event, Message):
                data = event.data
                self._reader.receive_data(data.encode() if isinstance(data, str) else bytes(data))
            elif event is None or isinstance(event, CloseConnection):
                return None

    async def close(self) -> None:
        """A clean close, as ``stop()``: the WebSocket Close handshake (the connection ends)."""
        await self.raw.send(CloseConnection(code=1000))
        while (event := await self.raw.next_event()) is not None and not isinstance(event, CloseConnection):
            pass
        await self.raw.stream.aclose()

    async def drop(self) -> None:
        """Gone without a Close frame: TCP just ends (the server sees 1006)."""
        await trio.aclose_forcefully(self.raw.stream)


async def open_stateful(listener: trio_ws.testing.MemoryListener, token: str) -> StatefulClient:
    return StatefulClient(await open_raw_websocket(listener, f"/hub?id={token}"))


@asynccontextmanager
async def serve_ledger(**options: Any) -> AsyncIterator[tuple[trio_ws.testing.MemoryServer, Ledger, str]]:
    """A ``Ledger`` at /hub with stateful reconnect, served in memory; yields it and a negotiated token."""
    app = trio_ws.App()
    hub = Ledger()
    hub.server = map_hub(
        app,
        "/hub",
        hub,
        options=HubOptions(keep_alive_interval=None, **options),
        auth=None,
        stateful_reconnect=True,
    )
    async with trio_ws.testing.open_memory_server(app) as memory:
        negotiated = await HttpHubClient(memory.listener.connect, "/hub").negotiate(
            "negotiateVersion=1&useStatefulReconnect=true"
        )
        assert negotiated["useStatefulReconnect"] is True
        yield memory, hub, negotiated["connectionToken"]


async def test_a_new_socket_gets_the_replay_and_the_clients_duplicates_are_dropped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """After a drop, the new socket to the same token starts with Sequence(oldest unacked) and the
    unacked messages; the client's messages before its own Sequence are ignored, its resent ones
    dropped as duplicates, and the next new one numbered on; Ack comes a second after."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with serve_ledger() as (memory, hub, token):
        first = await open_stateful(memory.listener, token)
        await first.handshake()
        await first.send(Invocation("Add", (1,), "1"), Invocation("Add", (2,), "2"))
        assert await first.receive() == Completion.with_result("1", 1)
        assert await first.receive() == Completion.with_result("2", 3)
        await first.drop()  # before any Ack, either way
        await trio.testing.wait_all_tasks_blocked()

        second = await open_stateful(memory.listener, token)
        assert await second.receive() == Sequence_(1)
        assert await second.receive() == Completion.with_result("1", 1)
        assert await second.receive() == Completion.with_result("2", 3)
        await second.send(Invocation("Add", (100,), "9"))  # before the client's Sequence: ignored
        await second.send(
            Sequence_(1),
            Invocation("Add", (1,), "1"),  # sent again: already processed
            Invocation("Add", (2,), "2"),
            Invocation("Add", (4,), "3"),  # new: number 3
        )
        assert await second.receive() == Completion.with_result("3", 7)
        assert hub.total == 7
        before = trio.current_time()
        assert await second.receive() == Ack(3)
        assert trio.current_time() - before == pytest.approx(1.0)
        # The client acks everything: a third socket's replay is empty, starting at number 4.
        await second.send(Ack(3))
        await trio.testing.wait_all_tasks_blocked()
        await second.drop()
        await trio.testing.wait_all_tasks_blocked()
        third = await open_stateful(memory.listener, token)
        assert await third.receive() == Sequence_(4)
        await third.send(Sequence_(4), Invocation("Add", (8,), "4"))
        assert await third.receive() == Completion.with_result("4", 15)
        assert len(hub.ended) == 0  # one connection all along
        await third.close()
        await trio.testing.wait_all_tasks_blocked()
        assert list(hub.ended.values()) == [DisconnectReason.CLIENT_CLOSED]
    assert_no_tracebacks(caplog)


def _item_size(index: int, size: int) -> int:
    return len(JSON.encode(Invocation("Item", (index, "x" * size))))


async def test_a_full_replay_buffer_holds_the_sender_back_while_the_client_is_away(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A hub method sending to a client that does not ack stops once the replay buffer is full,
    stays stopped (and the connection open) while the client is away, and goes on with its Acks
    after the reconnect: every item arrives once, in order."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    limit, size, count = 1000, 200, 20
    # Room is checked before each message: a sender stops once `limit` bytes wait for an Ack.
    room = -(-limit // _item_size(0, size))
    async with serve_ledger(stateful_reconnect_buffer_size=limit, slow_client_timeout=5) as (
        memory,
        hub,
        token,
    ):
        first = await open_stateful(memory.listener, token)
        await first.handshake()
        await first.send(Invocation("Burst", (count, size), "1"))
        await trio.testing.wait_all_tasks_blocked()
        assert hub.sent == room  # no Ack: the buffer is full, the sender waits
        await first.drop()
        await trio.sleep(12)  # away longer than slow_client_timeout, within disconnect_timeout
        assert hub.sent == room and not hub.burst_cancelled and not hub.ended

        second = await open_stateful(memory.listener, token)
        await second.send(Sequence_(1))
        assert await second.receive() == Sequence_(1)
        items: list[int] = []
        while True:
            message = await second.receive()
            if isinstance(message, Completion):
                assert message == Completion.with_result("1", None)
                break
            assert isinstance(message, Invocation) and message.target == "Item", message
            items.append(message.arguments[0])
            assert hub.sent - len(items) < room + 1  # never more than the buffer ahead of the Acks
            await second.send(Ack(len(items)))
        await second.close()
    assert items == list(range(count))
    assert not hub.burst_cancelled and len(hub.ended) == 1
    assert_no_tracebacks(caplog)


async def test_a_client_away_past_the_disconnect_timeout_is_ended_and_its_token_forgotten(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``disconnect_timeout`` without a socket the connection ends (``TRANSPORT_FAILED``), the
    sender held back by the full buffer is cancelled, and a socket to the old token gets 404."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with serve_ledger(stateful_reconnect_buffer_size=1000, disconnect_timeout=15) as (
        memory,
        hub,
        token,
    ):
        client = await open_stateful(memory.listener, token)
        await client.handshake()
        await client.send(Invocation("Burst", (20, 200), "1"))
        await trio.testing.wait_all_tasks_blocked()
        await client.drop()
        start = trio.current_time()
        await hub.ended_event.wait()
        assert trio.current_time() - start == pytest.approx(15)
        assert list(hub.ended.values()) == [DisconnectReason.TRANSPORT_FAILED]
        assert hub.burst_cancelled, hub.sent
        late = RawClient(await memory.listener.connect())
        refused = await late.handshake(f"/hub?id={token}")
        assert isinstance(refused, RejectConnection) and refused.status_code == 404
    assert any("no new transport within disconnect_timeout" in r.getMessage() for r in caplog.records)
    assert_no_tracebacks(caplog)


async def _echo_with_calls_in_flight(
    client: StatefulClient, results: list[str], *, calls: int, in_flight: int, size: int
) -> None:
    """Invoke Echo until ``results`` holds ``calls`` answers, ``in_flight`` calls outstanding, acking
    once a second what arrived (as the official client does)."""
    first = len(results)

    async def ack_every_second() -> None:
        acked = 0
        while True:
            await trio.sleep(1)
            if len(results) > acked:
                acked = len(results)
                await client.send(Ack(acked))

    def call(i: int) -> Invocation:
        return Invocation("Echo", (f"{i}:" + "x" * size,), str(i))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ack_every_second)
        sent = first
        while sent < min(first + in_flight, calls):
            await client.send(call(sent))
            sent += 1
        while len(results) < calls:
            message = await client.receive()
            if isinstance(message, Ack):
                continue  # the server acknowledging the calls
            assert isinstance(message, Completion), message
            assert message.invocation_id == str(len(results)), message
            results.append(message.result)
            if sent < calls:
                await client.send(call(sent))
                sent += 1
        nursery.cancel_scope.cancel()


async def test_acks_are_read_while_replies_wait_for_room_in_the_replay_buffer(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve 1 KB Echo calls in flight, one call slot, the client acking once a second: the replies
    fill the 100,000-byte replay buffer, and the reader goes on reading the Acks that make room
    from behind the calls waiting for the slot. Every call completes once, in order, without
    TOO_SLOW, before and after a reconnect in the middle."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    size, half = 1024, 250
    results: list[str] = []
    async with serve_ledger() as (memory, hub, token):
        client = await open_stateful(memory.listener, token)
        await client.handshake()
        with trio.fail_after(60):
            await _echo_with_calls_in_flight(client, results, calls=half, in_flight=12, size=size)
        await client.drop()  # some replies unacknowledged
        await trio.testing.wait_all_tasks_blocked()
        second = await open_stateful(memory.listener, token)
        sequence = await second.receive()
        assert isinstance(sequence, Sequence_) and 1 <= sequence.sequence_id <= half + 1
        for _ in range(half + 1 - sequence.sequence_id):  # replayed: the client has them already
            replayed = await second.receive()
            assert isinstance(replayed, Completion), replayed
        await second.send(Sequence_(half + 1))
        with trio.fail_after(60):
            await _echo_with_calls_in_flight(second, results, calls=2 * half, in_flight=12, size=size)
        assert not hub.ended
        await second.close()
        await trio.testing.wait_all_tasks_blocked()
    assert results == [f"{i}:" + "x" * size for i in range(2 * half)]
    assert list(hub.ended.values()) == [DisconnectReason.CLIENT_CLOSED]
    assert_no_tracebacks(caplog)


async def _join(client: StatefulClient, group: str) -> None:
    await client.send(Invocation("Join", (group,), "j"))
    assert await client.receive() == Completion.with_result("j", None)
    await client.send(Ack(1))


async def _items(client: StatefulClient, count: int, *, ack: bool) -> list[int]:
    """The next ``count`` "Item" messages' numbers (acking each, if ``ack``); Acks skipped."""
    items: list[int] = []
    received = 1  # the Join's Completion
    while len(items) < count:
        message = await client.receive()
        if isinstance(message, Ack):
            continue
        assert isinstance(message, Invocation) and message.target == "Item", message
        items.append(message.arguments[0])
        received += 1
        if ack:
            await client.send(Ack(received))
    return items


async def test_a_client_away_during_a_burst_to_its_group_gets_all_of_it_once_and_in_order(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A group member's socket drops; 1,000 x 1 KB go to the group (ten times the replay buffer);
    it comes back 3 s later and gets every message once, in order, on the same connection, while
    the member that stayed got them all at once and the sender never waited."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    count = 1000
    async with serve_ledger() as (memory, hub, token):
        assert hub.server is not None
        away = await open_stateful(memory.listener, token)
        await away.handshake()
        await _join(away, "g")
        stayed_token = (
            await HttpHubClient(memory.listener.connect, "/hub").negotiate(
                "negotiateVersion=1&useStatefulReconnect=true"
            )
        )["connectionToken"]
        stayed = await open_stateful(memory.listener, stayed_token)
        await stayed.handshake()
        await _join(stayed, "g")
        await trio.testing.wait_all_tasks_blocked()
        await away.drop()
        await trio.testing.wait_all_tasks_blocked()

        start = trio.current_time()
        group = hub.server.clients.group("g")
        async with trio.open_nursery() as nursery:
            received: list[int] = []

            async def receive_all() -> None:
                received.extend(await _items(stayed, count, ack=True))

            nursery.start_soon(receive_all)
            for i in range(count):
                await group.send("Item", i, "x" * 1024)
            assert trio.current_time() == start  # the sender never waited for the one away
        assert received == list(range(count))

        await trio.sleep(3)
        back = await open_stateful(memory.listener, token)
        assert await back.receive() == Sequence_(2)  # the Join's Completion was acknowledged
        await back.send(Sequence_(2))
        assert await _items(back, count, ack=True) == list(range(count))
        await trio.testing.wait_all_tasks_blocked()
        assert not hub.ended
        await back.close()
        await stayed.close()
    assert not any("too slow" in r.getMessage() for r in caplog.records)
    assert_no_tracebacks(caplog)


async def test_past_the_away_bound_a_client_is_closed_and_the_log_names_the_bound(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Sends to many past ``away_buffer_size`` for a client that is away close it as too slow (nothing
    numbered may be dropped); the log says which bound was hit; its way back gets 404."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    async with serve_ledger(stateful_reconnect_buffer_size=10_000, away_buffer_size=50_000) as (
        memory,
        hub,
        token,
    ):
        assert hub.server is not None
        client = await open_stateful(memory.listener, token)
        await client.handshake()
        await _join(client, "g")
        await trio.testing.wait_all_tasks_blocked()
        await client.drop()
        await trio.testing.wait_all_tasks_blocked()
        for i in range(100):
            await hub.server.clients.group("g").send("Item", i, "x" * 1024)
        await hub.ended_event.wait()
        assert list(hub.ended.values()) == [DisconnectReason.TOO_SLOW]
        late = RawClient(await memory.listener.connect())
        refused = await late.handshake(f"/hub?id={token}")
        assert isinstance(refused, RejectConnection) and refused.status_code == 404
    assert any(
        "too slow" in r.getMessage()
        and "while it is away" in r.getMessage()
        and "away_buffer_size (50000)" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    assert_no_tracebacks(caplog)
