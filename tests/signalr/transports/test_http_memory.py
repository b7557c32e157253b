"""Memory over the HTTP transports: 1,000 Long Polling and 1,000 Server-Sent Events connections.

Each client speaks as the official clients do, over real sockets on 127.0.0.1: negotiate, the
transport's first request, the handshake in a POST, then idle (an event stream open, a poll
held). Then every one closes as a client does (the event stream dropped, a ``DELETE``), and the
server must be back where it started: the same sockets open (file descriptors), the objects the
collector tracks back to the start (within a quarter of one per connection), and the Python heap
(its live blocks) too, within less than a block per connection beyond what trio's deadline heap
may keep (see ``heap_objects``).

It waits for events only (answers, the server's counts once every task is blocked); the
figures are counted, not timed.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

import trio_ws
import trio_ws.testing
from trio_ws.signalr import Hub, HubOptions, HubServer, map_hub

N = 1000
PARALLEL = 50  # clients setting up (or closing) at once
HANDSHAKE = b'{"protocol":"json","version":1}\x1e'
DEADLINE = 120.0  # bounds a hang; the test takes seconds


class Idle(Hub):
    async def echo(self, text: str) -> str:
        return text


class Wire:
    """HTTP/1.1 requests one after another on one socket, written and read by hand: this test
    makes 10,000 of them, and h11 on both ends would make it slow. The server's answers here
    all have a ``Content-Length``, except the event stream, which is read as bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> Wire:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, method: str, target: str, *, accept: str = "", body: bytes = b"") -> None:
        head = f"{method} {target} HTTP/1.1\r\nHost: hub.test\r\nContent-Length: {len(body)}\r\n"
        if accept:
            head += f"Accept: {accept}\r\n"
        await self.stream.send_all(head.encode() + b"\r\n" + body)

    async def read_until(self, marker: bytes) -> bytes:
        """Everything up to and including ``marker``."""
        while (end := self.buffer.find(marker)) < 0:
            data = await self.stream.receive_some(65536)
            assert data, f"the server closed before {marker!r}"
            self.buffer += data
        end += len(marker)
        taken, self.buffer = self.buffer[:end], self.buffer[end:]
        return taken

    async def head(self) -> tuple[int, int]:
        """The next answer's status and ``Content-Length`` (-1 without one)."""
        head = (await self.read_until(b"\r\n\r\n")).lower()
        length = head.find(b"\r\ncontent-length: ")
        size = -1 if length < 0 else int(head[length + 18 : head.index(b"\r\n", length + 2)])
        return int(head[9:12]), size

    async def answer(self) -> tuple[int, bytes]:
        status, size = await self.head()
        while len(self.buffer) < size:
            data = await self.stream.receive_some(65536)
            assert data, "the server closed mid-answer"
            self.buffer += data
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return status, body

    async def request(self, method: str, target: str, *, body: bytes = b"") -> tuple[int, bytes]:
        await self.send(method, target, body=body)
        return await self.answer()


async def negotiate(wire: Wire) -> str:
    status, body = await wire.request("POST", "/hub/negotiate?negotiateVersion=1")
    assert status == 200, body
    token: str = json.loads(body)["connectionToken"]
    return token


class Pool:
    """Keep-alive sockets shared by the clients for negotiate, POSTs and DELETEs, as a browser
    shares its six per origin: only polls and event streams need a socket each."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Wire](PARALLEL)

    async def fill(self, port: int) -> None:
        for _ in range(PARALLEL):
            self._send.send_nowait(await Wire.open(port))

    @asynccontextmanager
    async def wire(self) -> AsyncIterator[Wire]:
        wire = await self._receive.receive()
        try:
            yield wire
        finally:
            self._send.send_nowait(wire)

    async def aclose(self) -> None:
        while True:
            try:
                wire = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            await wire.stream.aclose()


class LongPoller:
    """A Long Polling client with a poll held: one socket of its own."""

    def __init__(self, port: int, pool: Pool) -> None:
        self.port, self.pool = port, pool

    async def open(self) -> None:
        async with self.pool.wire() as shared:
            self.token = await negotiate(shared)
        target = f"/hub?id={self.token}"
        self.wire = wire = await Wire.open(self.port)
        assert await wire.request("GET", target) == (200, b"")  # the first poll, at once
        async with self.pool.wire() as shared:
            assert await shared.request("POST", target, body=HANDSHAKE) == (200, b"")
        assert await wire.request("GET", target) == (200, b"{}\x1e")
        await wire.send("GET", target)  # held: nothing to say

    async def close(self) -> None:
        async with self.pool.wire() as shared:
            assert (await shared.request("DELETE", f"/hub?id={self.token}"))[0] == 202
        assert await self.wire.answer() == (204, b"")  # the held poll: the connection has ended
        await self.wire.stream.aclose()


class EventStreamer:
    """A Server-Sent Events client with its event stream open: one socket of its own."""

    def __init__(self, port: int, pool: Pool) -> None:
        self.port, self.pool = port, pool

    async def open(self) -> None:
        async with self.pool.wire() as shared:
            token = await negotiate(shared)
        self.events = events = await Wire.open(self.port)
        await events.send("GET", f"/hub?id={token}", accept="text/event-stream")
        assert (await events.head())[0] == 200
        await events.read_until(b":\r\n")
        async with self.pool.wire() as shared:
            assert await shared.request("POST", f"/hub?id={token}", body=HANDSHAKE) == (200, b"")
        await events.read_until(b"data: {}\x1e\r\n\r\n")

    async def close(self) -> None:
        await self.events.stream.aclose()  # as EventSource.close(): the client drops TCP


async def run_all(jobs: Sequence[LongPoller | EventStreamer], action: str) -> None:
    limiter = trio.CapacityLimiter(PARALLEL)

    async def one(job: LongPoller | EventStreamer) -> None:
        async with limiter:
            await getattr(job, action)()

    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(one, job)


async def quiet(server: trio_ws.Server, hub_server: HubServer) -> None:
    """Wait until every hub connection, streamed response and socket is gone, but the shared
    sockets (both ends) and the listener."""
    while (
        hub_server.statistics().connections
        or server.statistics().streaming_responses
        or sockets_of(server.port) > 1 + 2 * PARALLEL
    ):
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)


def sockets_of(port: int) -> int:
    """Open file descriptors of this process that are TCP sockets to or from ``port``.

    Counted by socket inode (``/proc/net/tcp``), so that what other tests' threads open or close
    meanwhile does not count. That table is the whole machine's, and a read of it can miss a
    row while other processes' sockets come and go, so it is read three times.
    """
    inodes = set()
    for _ in range(3):
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                ports = {int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)}
                if port in ports:
                    inodes.add(f"socket:[{fields[9]}]")
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") in inodes
        except OSError:
            continue  # closed meanwhile
    return count


def heap_blocks() -> int:
    """The Python heap's live blocks, after a full collection.

    ``sys.getallocatedblocks()`` counts what the allocator holds now, at no cost per
    allocation; ``tracemalloc`` would say the same but makes each allocation several times
    slower, and this test makes millions (2,000 connections take about 5 s; traced, 30 s).
    """
    gc.collect()
    return sys.getallocatedblocks()


# trio keeps a (deadline, tiebreaker, scope) entry in its deadline heap for every deadline a cancel
# scope has had, which keeps that scope alive, and prunes them only once they outnumber the live
# ones by a thousand: about five blocks each, coming and going with the clients' and the server's
# timeouts (how many are waiting to be pruned depends on timing), not with connections.
_TRIO_STALE_DEADLINES = 1000


def heap_objects() -> int:
    """The objects the collector tracks, after a full collection, but for what trio's deadline heap
    keeps (tuples, and the cancel scopes they name): anything a connection left behind is more."""
    gc.collect()
    return sum(1 for item in gc.get_objects() if type(item) not in (tuple, trio.CancelScope))


@pytest.fixture
def open_files() -> None:
    """Room for 2,000 connections: both ends of a socket each, and the shared ones."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * 2 * N + 2 * PARALLEL + 256
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the hard open-file limit ({hard}) is below the {need} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


@pytest.mark.timeout(120)  # seconds on a quiet machine; a busy one needs more
async def test_a_thousand_idle_long_polls_and_event_streams_leave_nothing_behind(
    nursery: trio.Nursery, open_files: None
) -> None:
    """1,000 Long Polling and 1,000 SSE connections, handshaken and idle, then closed as clients
    close them: file descriptors back to the start, and the heap too (less than a block per
    connection left, of the 350 each held)."""
    app = trio_ws.App()
    hub_server = map_hub(app, "/hub", Idle(), options=HubOptions(), auth=None)
    # The shared sockets may wait their turn longer than the front door's idle timeout.
    server = await trio_ws.testing.start_server(nursery, app, options=trio_ws.Options(http_idle_timeout=None))
    pool = Pool()
    with trio.fail_after(DEADLINE):
        await pool.fill(server.port)
        # One of each first: whatever is made once, on first use, is made now.
        warm: list[LongPoller | EventStreamer] = [
            LongPoller(server.port, pool),
            EventStreamer(server.port, pool),
        ]
        await run_all(warm, "open")
        await run_all(warm, "close")
        await quiet(server, hub_server)
        objects_before = heap_objects()
        before, fds_before = heap_blocks(), sockets_of(server.port)
        clients: list[LongPoller | EventStreamer] = [LongPoller(server.port, pool) for _ in range(N)]
        clients += [EventStreamer(server.port, pool) for _ in range(N)]
        await run_all(clients, "open")
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        assert hub_server.statistics().connections == 2 * N
        held, fds_open = heap_blocks() - before, sockets_of(server.port) - fds_before
        await run_all(clients, "close")
        del clients
        await quiet(server, hub_server)
        left, fds_after = heap_blocks() - before, sockets_of(server.port)
        objects_left = heap_objects() - objects_before
        await pool.aclose()
    print(
        f"2,000 connections held {held / 2 / N:.0f} blocks each, {fds_open} fds; "
        f"{left} blocks and {objects_left} objects left"
    )
    assert fds_open == 2 * 2 * N  # both ends of each connection's socket are in this process
    assert fds_before == fds_after == 1 + 2 * PARALLEL  # the listener, and the shared sockets
    # What is left does not grow with N (tables sized for the crowd, and trio's stale deadlines),
    # so an object kept per connection, 2,000 of them, shows; and so does a block kept per
    # connection when trio's deadline heap happens to be short.
    assert objects_left < N // 2, f"{objects_left} objects still held"
    assert left < 2 * N + 5 * _TRIO_STALE_DEADLINES, f"{left} blocks still held (the connections held {held})"
