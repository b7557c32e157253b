"""Test helpers: servers to test against, an in-memory listener, a wsproto client, and the task tree.

Clients that write raw bytes (hand-built frames, hand-written requests) are in ``tests/raw.py``.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import h11
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, RejectConnection, Request

import trio_ws
import trio_ws.testing
from trio_ws.testing import MemoryListener as MemoryListener

# Raw frames and handshakes live in tests/raw.py; these two stay importable from here for the
# tests of the WebSocket core that import them so.
from .raw import client_frame as client_frame
from .raw import upgrade_request as upgrade_request

# Absolute deadline for any test step that does real I/O.
IO_DEADLINE = 15


@contextmanager
def trio_in_thread(main: Callable[[Callable[[Any], None], trio.Event], Awaitable[None]]) -> Iterator[Any]:
    """Run ``main(ready, stop)`` under ``trio.run`` in a thread of its own, for clients that are
    not trio (asyncio, threads, browsers).

    ``main`` calls ``ready(value)`` once its servers listen, and must return soon after ``stop``
    is set. Yields that value; at the end sets ``stop`` and joins the thread. An exception
    raised before ``ready`` fails the test with it.
    """
    reported: queue.Queue[tuple[Any, trio.lowlevel.TrioToken] | BaseException] = queue.Queue()
    stop = trio.Event()

    async def run_main() -> None:
        token = trio.lowlevel.current_trio_token()
        await main(lambda value: reported.put((value, token)), stop)

    def run() -> None:
        try:
            trio.run(run_main)
        except BaseException as exc:  # handed to the test, which fails with it
            reported.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started = reported.get(timeout=30)
    if isinstance(started, BaseException):
        raise started
    value, token = started
    try:
        yield value
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(30)
        assert not thread.is_alive(), "the server thread did not stop"


async def start_server(nursery: trio.Nursery, app: trio_ws.App, **options: object) -> trio_ws.Server:
    """``app`` on 127.0.0.1, port 0, with ``options`` given to :class:`trio_ws.Options`."""
    return await trio_ws.testing.start_server(nursery, app, options=trio_ws.Options(**options))  # type: ignore[arg-type]


async def start_memory_server(
    nursery: trio.Nursery, app: trio_ws.App, listener: MemoryListener, **options: object
) -> trio_ws.Server:
    """``app`` served on an in-memory listener, for tests that control the clock."""
    server: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve_listeners, app, [listener], options=trio_ws.Options(**options))  # type: ignore[arg-type]
    )
    return server


async def http_exchange(port: int, data: bytes) -> bytes:
    """Send raw ``data`` to the server; return what it answers, up to the end of one response.

    The server keeps a connection open after a response (keep-alive), so the
    answer ends where h11 says the response ends, or where the server closes.
    """
    method = data.split(b" ", 1)[0].decode("ascii", "replace")
    method = method if method.isascii() and method.isalpha() else "GET"
    with trio.fail_after(IO_DEADLINE):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            return await read_response(stream, method)


async def read_response(stream: trio.abc.Stream, method: str = "GET") -> bytes:
    """The bytes of one response to a ``method`` request read from ``stream`` (all, if it is not HTTP)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    chunks: list[bytes] = []
    parsing = True
    while True:
        try:
            chunk = bytes(await stream.receive_some(65536))
        except trio.BrokenResourceError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if not parsing:
            continue
        client.receive_data(chunk)
        try:
            while (event := client.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return b"".join(chunks)
        except h11.RemoteProtocolError:
            parsing = False  # not one HTTP response: read until the server closes


def parse_response(raw: bytes, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Parse a raw HTTP response to a ``method`` request with h11: (status, headers, body)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    response = conn.next_event()
    assert isinstance(response, h11.Response), response
    body = b""
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    headers: dict[str, str] = {}
    for key, value in response.headers:
        name = key.decode()
        headers[name] = f"{headers[name]}, {value.decode()}" if name in headers else value.decode()
    return response.status_code, headers, body


class OutOfFilesListener(MemoryListener):
    """A memory listener whose next ``failures`` accepts fail as if the process had no free fds."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def accept(self) -> trio.abc.Stream:
        stream = await super().accept()
        if self.failures:
            self.failures -= 1
            await stream.aclose()
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return stream


class RawClient:
    """A WebSocket client made of wsproto and a stream: it does only what the test says.

    Unlike a full client library it never answers a ping and never closes on
    its own, so a test can make it a silent or misbehaving peer.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.eof = False

    async def handshake(self, path: str = "/ws", subprotocols: list[str] | None = None) -> Event:
        await self.send(Request(host="localhost", target=path, subprotocols=subprotocols or []))
        event = await self.next_event()
        assert isinstance(event, AcceptConnection | RejectConnection), event
        return event

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(self.ws.send(e) for e in events))

    async def next_event(self) -> Event | None:
        """The next event from the server, or ``None`` once the server has closed TCP."""
        while True:
            for event in self.ws.events():
                return event
            if self.eof:
                return None
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.eof = True
                continue
            self.ws.receive_data(bytes(data))


async def open_raw_websocket(
    listener: MemoryListener,
    path: str = "/ws",
    stream_pair: trio_ws.testing.StreamPairFactory = trio.testing.memory_stream_pair,
) -> RawClient:
    """A RawClient connected through ``listener`` (over ``stream_pair``) and past an accepted handshake."""
    client = RawClient(await listener.connect(stream_pair))
    accepted = await client.handshake(path)
    assert isinstance(accepted, AcceptConnection), accepted
    return client


def warnings_logged(records: Iterable[logging.LogRecord]) -> list[str]:
    """The messages of records at WARNING or above: a peer's doing must leave this empty."""
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING]


def alarms_logged(records: Iterable[logging.LogRecord]) -> list[str]:
    """Records at WARNING or above, or with a traceback at any level: a peer's doing leaves none."""
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING or r.exc_info is not None]


def task_count() -> int:
    """How many trio tasks exist right now, counted over the whole task tree."""

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return count(trio.lowlevel.current_root_task())  # type: ignore[arg-type]


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def close_of(error: trio_ws.ConnectionClosed) -> tuple[int, str | None]:
    """The close code and reason that ``error`` reports."""
    assert error.reason is not None, error
    return error.reason.code, error.reason.reason
