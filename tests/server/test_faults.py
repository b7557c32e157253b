"""Peers and handlers that misbehave: back-pressure, vanished peers, stuck handlers, TLS mistakes.

Each test checks that the trouble stays on its own connection: the server
frees what the connection held (tasks, the WebSocket count), logs no warning
and no traceback for a peer's doing, and goes on serving everyone else.
"""

from __future__ import annotations

import socket
import ssl
import struct
from functools import partial

import pytest
import trio
import trio.testing
import trustme
from websockets.trio.client import connect
from wsproto.events import AcceptConnection, CloseConnection, Ping, TextMessage

import trio_ws

from ..helpers import (
    IO_DEADLINE,
    MemoryListener,
    OutOfFilesListener,
    alarms_logged,
    start_memory_server,
    start_server,
    task_count,
    warnings_logged,
)
from ..raw import RawClient, client_frame, open_raw_websocket, upgrade_request


def _hold_messages_until(go: trio.Event, received: list[str | bytes], finished: trio.Event) -> trio_ws.App:
    """An app whose handler reads nothing until ``go`` is set, then everything, in order,
    until the peer leaves; then it sets ``finished``."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def slow_reader(ws: trio_ws.WebSocketConnection) -> None:
        await go.wait()
        try:
            while True:
                received.append(await ws.get_message())
        finally:
            finished.set()

    return app


@pytest.mark.parametrize("queue_size", [0, 1, 4])
async def test_a_handler_that_does_not_read_stops_the_reader(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, queue_size: int
) -> None:
    """With the message queue full the reader stops reading, so the peer's sends block; nothing is lost."""
    go, finished = trio.Event(), trio.Event()
    received: list[str | bytes] = []
    listener = MemoryListener()
    await start_memory_server(
        nursery,
        _hold_messages_until(go, received, finished),
        listener,
        message_queue_size=queue_size,
        keep_alive_interval=None,  # a client stuck in send would not answer pings
    )
    # Lockstep streams are a socket with no buffer at all: a send waits until the server reads it.
    client = await open_raw_websocket(listener, stream_pair=trio.testing.lockstep_stream_pair)
    sent = 0

    async def send_many() -> None:
        nonlocal sent
        for i in range(20):
            await client.send(TextMessage(data=f"message {i}"))
            sent += 1

    async with trio.open_nursery() as sending:
        sending.start_soon(send_many)
        await trio.testing.wait_all_tasks_blocked()
        # The queue holds queue_size messages, and the reader reads no further; with no queue at
        # all, the reader holds the one message it is handing over.
        assert sent == max(queue_size, 1)
        await trio.sleep(3600)
        assert sent == max(queue_size, 1)  # still blocked an hour later: back-pressure, not a stall
        go.set()
    await client.stream.aclose()
    await finished.wait()
    assert received == [f"message {i}" for i in range(20)]


async def test_back_pressure_reaches_a_real_socket(nursery: trio.Nursery) -> None:
    """Over TCP, a handler that does not read stops the server reading: the client's sends stall
    after the kernel buffers fill (well short of the 16 MiB it tries to send), then all arrive."""
    go, finished = trio.Event(), trio.Event()
    received: list[str | bytes] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    # Small kernel buffers (inherited by accepted sockets) keep what TCP itself holds small.
    listeners[0].socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    server: trio_ws.Server = await nursery.start(
        partial(
            trio_ws.serve_listeners,
            _hold_messages_until(go, received, finished),
            list(listeners),
            options=trio_ws.Options(message_queue_size=1),
        )
    )
    chunk = b"x" * 65536
    sent = 0
    with trio.fail_after(IO_DEADLINE):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        client = RawClient(stream)
        assert isinstance(await client.handshake(), AcceptConnection)

        async def send_many() -> None:
            nonlocal sent
            for _ in range(256):
                await client.send(TextMessage(data=chunk.decode()))
                sent += len(chunk)

        async with trio.open_nursery() as sending:
            sending.start_soon(send_many)
            # Everyone is blocked: the handler on `go`, the reader on the queue, the client on TCP.
            await trio.testing.wait_all_tasks_blocked(cushion=0.2)
            stalled_at = sent
            go.set()
        await stream.aclose()
        await finished.wait()
    assert stalled_at < 2 * 2**20, f"the client sent {stalled_at} bytes to a handler that reads nothing"
    assert len(received) == 256 and all(m == chunk.decode() for m in received)


@pytest.mark.parametrize("pair", [trio.testing.memory_stream_pair, trio.testing.lockstep_stream_pair])
async def test_a_vanished_peer_is_freed_by_keep_alive(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    pair: trio_ws.testing.StreamPairFactory,
) -> None:
    """A peer that vanished without a FIN (no reads, no writes, no close) is closed with 1011 after
    interval + timeout: whether the socket still takes our bytes (memory) or is full (lockstep)."""
    handler_saw: list[int] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def talk(ws: trio_ws.WebSocketConnection) -> None:
        try:
            if pair is trio.testing.lockstep_stream_pair:
                while True:  # a handler busy sending, blocked on the full socket
                    await ws.send_message("update " * 100)
            else:
                await ws.get_message()  # a handler waiting for the next message
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            handler_saw.append(exc.reason.code)

    listener = MemoryListener()
    server = await start_memory_server(nursery, app, listener, keep_alive_interval=5, keep_alive_timeout=3)
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    start = trio.current_time()
    await open_raw_websocket(listener, stream_pair=pair)
    # ...and then the client is gone: it never reads or writes again.
    await trio.sleep(5 + 3 + 1)  # the close frame gets at most 1 s if the socket won't take it
    await trio.testing.wait_all_tasks_blocked()
    assert handler_saw == [1011]
    assert server.statistics().open_websockets == 0
    assert task_count() == tasks_before
    assert trio.current_time() - start == 9
    assert warnings_logged(caplog.records) == []


async def test_a_hung_handler_holds_only_its_own_connection(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A handler that hangs forever: its peer's pings and Close are still answered, others echo on."""
    app = trio_ws.App()

    @app.websocket("/hang")
    async def hang(ws: trio_ws.WebSocketConnection) -> None:
        await trio.sleep_forever()

    app.add_websocket("/ws", trio_ws.echo)
    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    hung = await open_raw_websocket(memory_listener, "/hang")
    other = await open_raw_websocket(memory_listener, "/ws")
    await hung.send(Ping(b"are you there"))
    pong = await hung.next_event()
    assert pong is not None and pong.payload == b"are you there"  # type: ignore[attr-defined]
    await other.send(TextMessage(data="echo"))
    assert await other.next_event() == TextMessage(data="echo")
    await hung.send(CloseConnection(code=1000))
    answer = await hung.next_event()
    assert isinstance(answer, CloseConnection) and answer.code == 1000
    assert await hung.next_event() is None


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (RST) instead of a FIN, as a crashed peer's kernel does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_tcp_resets_free_the_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A reset mid-head, mid-upgrade, mid-message or while the server sends: freed, nothing logged."""
    app = trio_ws.App()
    app.add_websocket("/ws", trio_ws.echo)

    @app.websocket("/flood")
    async def flood(ws: trio_ws.WebSocketConnection) -> None:
        while True:
            await ws.send_message(b"z" * 65536)

    server: trio_ws.Server = await nursery.start(partial(trio_ws.serve, app, "127.0.0.1", 0))
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()

    async def connected(data: bytes, *, read_101: bool = False) -> socket.socket:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", server.port))
        await sock.send(data)
        if read_101:
            assert (await sock.recv(4096)).startswith(b"HTTP/1.1 101 ")
        return sock._sock  # type: ignore[attr-defined,no-any-return]

    with trio.fail_after(IO_DEADLINE):
        _reset(await connected(b"GET /ws HTTP/1.1\r\nHost: x\r\n"))
        _reset(await connected(upgrade_request()))
        half_frame = b"\x81\xfe\x10\x00\x01\x02\x03\x04" + b"x" * 100  # a 4 KiB text frame, cut short
        _reset(await connected(upgrade_request() + half_frame, read_101=True))
        _reset(await connected(upgrade_request("/flood"), read_101=True))
        async with connect(server.ws_url()) as ws:
            await ws.send("the server still works")
            assert await ws.recv() == "the server still works"
        # The resets are already in the server's sockets: let its tasks see them and end.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert server.statistics().open_websockets == 0
    assert task_count() == tasks_before
    assert alarms_logged(caplog.records) == []


async def test_tls_mistakes_cost_only_their_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Plain HTTP, garbage, a client that distrusts the certificate and an early hang-up on a TLS
    port: each ends its own connection quietly, and a good wss client is served throughout."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    distrusting = ssl.create_default_context()  # the system CAs: trustme's CA is not among them

    server: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve, trio_ws.echo_app(), "127.0.0.1", 0, ssl_context=server_context)
    )
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), ssl=trusting) as good:
            for mistake in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xffnot tls at all"):
                async with await trio.open_tcp_stream("127.0.0.1", server.port) as plain:
                    await plain.send_all(mistake)
                    # The server hangs up at once, with no answer in plain text.
                    with pytest.raises(trio.BrokenResourceError):
                        while await plain.receive_some():
                            pass
                        raise trio.BrokenResourceError  # a clean EOF is fine too
                await good.send("still here")
                assert await good.recv() == "still here"
            await (await trio.open_tcp_stream("127.0.0.1", server.port)).aclose()  # a hang-up before TLS
            tls = trio.SSLStream(
                await trio.open_tcp_stream("127.0.0.1", server.port), distrusting, server_hostname="127.0.0.1"
            )
            with pytest.raises(trio.BrokenResourceError):
                await tls.do_handshake()
            await trio.aclose_forcefully(tls)
            await good.send("and still")
            assert await good.recv() == "and still"
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert task_count() == tasks_before
    assert alarms_logged(caplog.records) == []


async def test_running_out_of_file_descriptors_pauses_accepting_only(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """accept() failing with EMFILE: open connections carry on, accepting resumes when it can, and
    the three failures make one WARNING without a traceback."""
    listener = OutOfFilesListener(failures=0)
    server = await start_memory_server(nursery, trio_ws.echo_app(), listener)
    open_one = await open_raw_websocket(listener)
    listener.failures = 3
    refused = [await listener.connect() for _ in range(3)]  # these three meet EMFILE
    for stream in refused:
        assert await stream.receive_some() == b""
    await open_one.send(TextMessage(data="still echoing"))
    assert await open_one.next_event() == TextMessage(data="still echoing")
    late = await open_raw_websocket(listener)  # accepted once files are free again
    await late.send(TextMessage(data="late"))
    assert await late.next_event() == TextMessage(data="late")
    assert server.statistics().open_websockets == 2
    assert alarms_logged(caplog.records) == [
        "accept() failed with EMFILE (Too many open files), 1 time(s) since this was last logged (at most "
        "every 10 s); no connection is waiting to be closed, so new clients wait in the kernel's queue; "
        "raise the open-file limit (ulimit -n) or lower max_connections"
    ]


async def test_a_peer_gone_while_the_reader_writes_held_back_replies_is_a_1006(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader, waiting for room in a full inbox, writes a reply the handler held back; if the
    peer has reset TCP meanwhile, that write ends the connection with 1006, without a traceback."""
    go = trio.Event()
    closed: list[int] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def reply_before_reading(ws: trio_ws.WebSocketConnection) -> None:
        await go.wait()
        try:
            # Messages wait in the inbox and the reader waits for room: this reply is held back
            # for the reader to write, which it does before the handler reads on.
            await ws.send_message("held back")
            await trio.testing.wait_all_tasks_blocked()
            while True:
                await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            closed.append(exc.reason.code)

    server = await start_server(nursery, app, message_queue_size=1, keep_alive_interval=None)
    sock = trio.socket.socket()
    with trio.fail_after(IO_DEADLINE):
        await sock.connect(("127.0.0.1", server.port))
        await sock.send(upgrade_request())
        assert (await sock.recv(4096)).startswith(b"HTTP/1.1 101 ")
        await sock.send(client_frame(0x1, b"one") + client_frame(0x1, b"two"))
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        _reset(sock._sock)  # type: ignore[attr-defined]
        go.set()
        while server.statistics().open_websockets:
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert closed == [1006]
    assert alarms_logged(caplog.records) == []
