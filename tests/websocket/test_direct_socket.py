"""Direct socket I/O (_direct_socket.py): trio's SocketStream's bytes and errors, fewer schedule points.

Most tests run twice over a real TCP connection on 127.0.0.1: once through a
``DirectSocket`` and once through the ``SocketStream`` itself (the general
path), with the same assertions.
"""

from __future__ import annotations

import gc
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
import trustme
from websockets.trio.client import connect

import trio_ws
from trio_ws._websocket.direct_socket import CALLS_PER_TURN, ByteStream, DirectSocket, direct_io

from ..helpers import IO_DEADLINE

Wrap = Callable[[trio.SocketStream], ByteStream]
PATHS: dict[str, Wrap] = {
    "direct": lambda stream: DirectSocket(stream.socket),
    "general": lambda stream: stream,
}


@pytest.fixture(params=list(PATHS))
def wrap(request: pytest.FixtureRequest) -> Wrap:
    return PATHS[request.param]


@pytest.fixture
async def tcp_pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    """Both ends of one TCP connection on 127.0.0.1: (ours, the peer's)."""
    with trio.fail_after(IO_DEADLINE):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        peer = await trio.open_tcp_stream("127.0.0.1", port)
        ours = await listeners[0].accept()
        await listeners[0].aclose()
    async with ours, peer:
        yield ours, peer


async def test_direct_io_takes_plain_tcp_only() -> None:
    """direct_io gives a DirectSocket for a SocketStream over an OS socket, and any other stream back."""
    plain = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket()))
    assert isinstance(direct_io(plain), DirectSocket)
    memory, _ = trio.testing.memory_stream_pair()
    assert direct_io(memory) is memory
    tls = trio.SSLStream(plain, ssl.create_default_context(), server_hostname="example.com")
    assert direct_io(tls) is tls
    plain.socket.close()


class _SocketWithoutFileno(trio.socket.SocketType):
    """A socket from a custom socket factory that is not an operating-system socket."""

    @property
    def type(self) -> socket.SocketKind:
        return socket.SOCK_STREAM

    def setsockopt(self, *args: object) -> None:
        raise OSError("no options here")


async def test_direct_io_leaves_sockets_without_a_file_descriptor_alone() -> None:
    """A SocketStream over a custom socket (trio.socket.set_custom_socket_factory) that has no file
    descriptor keeps the general path."""
    stream = trio.SocketStream(_SocketWithoutFileno())
    assert direct_io(stream) is stream


async def test_bytes_arrive_whole_and_in_order_both_ways(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """Small and large writes (8 MiB waits for room many times) arrive whole, in order, both ways."""
    ours, peer = tcp_pair
    io = wrap(ours)
    payloads: list[bytes | bytearray] = [b"x", bytes(range(256)) * 4, b"\x00" * 8 * 2**20, bytearray(b"tail")]
    expected = b"".join(payloads)

    async def read_all(receive: Callable[[], object], into: bytearray) -> None:
        while len(into) < len(expected):
            into += await receive()  # type: ignore[misc]

    with trio.fail_after(IO_DEADLINE):
        got_by_peer, got_by_us = bytearray(), bytearray()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all, partial(peer.receive_some, 65536), got_by_peer)
            for payload in payloads:
                await io.send_all(payload)
            await io.send_all(memoryview(b"")[:0])  # sending nothing sends nothing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all, partial(io.receive_some, 65536), got_by_us)
            for payload in payloads:
                await peer.send_all(payload)
    assert got_by_peer == expected
    assert got_by_us == expected


async def test_a_read_waits_for_data_and_gives_at_most_max_bytes(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """receive_some waits while nothing has come, then returns what came, at most max_bytes at a time."""
    ours, peer = tcp_pair
    io = wrap(ours)
    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as nursery:

            async def send_later() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await peer.send_all(b"0123456789")

            nursery.start_soon(send_later)
            first = await io.receive_some(4)
        rest = b""
        while len(first) + len(rest) < 10:
            rest += await io.receive_some(4)
    assert first == b"0123"
    assert first + rest == b"0123456789"


async def test_end_of_stream_reads_as_empty(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """Once the peer has sent what it had and shut its side, reads return b"" (every time)."""
    ours, peer = tcp_pair
    io = wrap(ours)
    with trio.fail_after(IO_DEADLINE):
        await peer.send_all(b"last")
        await peer.send_eof()
        received = b""
        while chunk := await io.receive_some(65536):
            received += chunk
        assert await io.receive_some(65536) == b""
    assert received == b"last"


async def test_a_closed_socket_raises_closed_resource_error(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """After aclose(), reads and writes raise ClosedResourceError, as trio's SocketStream does."""
    ours, _ = tcp_pair
    io = wrap(ours)
    await ours.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await io.receive_some(10)
    with pytest.raises(trio.ClosedResourceError):
        await io.send_all(b"x")


@asynccontextmanager
async def closed_and_reused(ours: trio.SocketStream) -> AsyncIterator[tuple[socket.socket, socket.socket]]:
    """Close ``ours``, and give its file descriptor number to a new connection: (the newcomer
    holding that number, its peer). On leaving, the peer must have received nothing."""
    number = ours.socket.fileno()
    await ours.aclose()
    a, b = socket.socketpair()
    try:
        newcomer = a if a.fileno() == number else b if b.fileno() == number else None
        assert newcomer is not None, "the kernel gives the lowest free number: the one just freed"
        other = b if newcomer is a else a
        yield newcomer, other
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.recv(100)
    finally:
        a.close()
        b.close()


async def test_a_reused_file_descriptor_is_never_touched(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """Once our socket is closed, a new connection may get its file descriptor number; reads and
    writes still raise ClosedResourceError and leave the new connection alone."""
    ours, _ = tcp_pair
    io = wrap(ours)
    async with closed_and_reused(ours) as (newcomer, other):
        other.sendall(b"for the newcomer")
        with pytest.raises(trio.ClosedResourceError):
            await io.receive_some(100)
        with pytest.raises(trio.ClosedResourceError):
            await io.send_all(b"not for the newcomer")
        assert newcomer.recv(100) == b"for the newcomer"


async def test_writes_at_once_on_a_closed_socket_raise_closed_resource_error(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """``send_now`` and ``send_pieces`` (a WebSocket's direct writes) on a closed socket raise
    ClosedResourceError, and never reach a newcomer given its file descriptor number."""
    ours, _ = tcp_pair
    io = DirectSocket(ours.socket)
    async with closed_and_reused(ours):
        with pytest.raises(trio.ClosedResourceError):
            io.send_now([b"not ", b"for the newcomer"])
        with pytest.raises(trio.ClosedResourceError):
            await io.send_pieces([b"not ", b"for the newcomer"])


async def test_closing_wakes_a_waiting_reader_with_closed_resource_error(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """A task waiting to read when another task closes the socket gets ClosedResourceError at once."""
    ours, _ = tcp_pair
    io = wrap(ours)
    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as nursery:

            async def close_when_waiting() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await ours.aclose()

            nursery.start_soon(close_when_waiting)
            with pytest.raises(trio.ClosedResourceError):
                await io.receive_some(10)


async def test_a_reset_raises_broken_resource_error(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """A peer's reset (RST) makes reads and then writes raise BrokenResourceError, caused by the OSError."""
    ours, peer = tcp_pair
    io = wrap(ours)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await peer.aclose()  # SO_LINGER 0: close sends RST
    with trio.fail_after(IO_DEADLINE):
        with pytest.raises(trio.BrokenResourceError) as read_error:
            while True:
                await io.receive_some(10)
        assert isinstance(read_error.value.__cause__, ConnectionResetError)
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(10):
                await io.send_all(b"x" * 65536)


async def test_writing_after_send_eof_raises_closed_resource_error(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """A write after our half-close raises ClosedResourceError, as trio's SocketStream does."""
    ours, _ = tcp_pair
    io = wrap(ours)
    await ours.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        await io.send_all(b"x")


async def test_every_call_is_a_cancel_point(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """In a cancelled scope, a read with data waiting and a write with room both raise Cancelled, and
    touch nothing: the data is still there, nothing was sent."""
    ours, peer = tcp_pair
    io = wrap(ours)
    with trio.fail_after(IO_DEADLINE):
        await peer.send_all(b"waiting")
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await io.receive_some(10)
            with pytest.raises(trio.Cancelled):
                await io.send_all(b"never sent")
        assert await io.receive_some(10) == b"waiting"
        await io.send_all(b"sent")
        assert await peer.receive_some(100) == b"sent"


async def test_a_read_waiting_for_data_keeps_no_exception_alive(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream], wrap: Wrap
) -> None:
    """A read that found nothing and waits holds no BlockingIOError (whose traceback would keep its
    frames alive for as long as an idle connection waits)."""
    ours, peer = tcp_pair
    io = wrap(ours)
    with trio.fail_after(IO_DEADLINE):
        await peer.send_all(b"x")
        assert await io.receive_some(1) == b"x"  # all it asked for: the next read tries at once
        async with trio.open_nursery() as nursery:
            nursery.start_soon(io.receive_some, 1)
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            alive = [o for o in gc.get_objects() if isinstance(o, BlockingIOError)]
            nursery.cancel_scope.cancel()
    assert alive == []


async def test_a_call_that_succeeds_at_once_skips_the_schedule_point_but_not_for_long(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """Reads and writes that succeed at once let no other task run, CALLS_PER_TURN - 1 times in a
    row; the next one is a full checkpoint (in each direction)."""
    ours, peer = tcp_pair
    io = DirectSocket(ours.socket)
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as nursery:
            # Data for the reads below, in our socket before the other task starts.
            await peer.send_all(b"r" * 2 * CALLS_PER_TURN)
            await trio.lowlevel.wait_readable(ours.socket)
            nursery.start_soon(other_task)
            await trio.lowlevel.checkpoint()  # let it start
            # Writes: the kernel's buffer takes each of these at once.
            before = turns
            for _ in range(CALLS_PER_TURN - 1):
                await io.send_all(b"w")
            assert turns == before
            with trio.testing.assert_checkpoints():
                await io.send_all(b"w")
            # Reads: each asks for one byte of those waiting, so the next read tries at once. The
            # first waits until the socket is readable (a new DirectSocket starts out drained), and
            # counts as the first of the row.
            assert await io.receive_some(1) == b"r"
            before = turns
            for _ in range(CALLS_PER_TURN - 2):
                assert await io.receive_some(1) == b"r"
            assert turns == before
            with trio.testing.assert_checkpoints():
                assert await io.receive_some(1) == b"r"
            nursery.cancel_scope.cancel()


async def test_a_sender_that_never_waits_still_lets_others_run(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """A task writing to a socket that always has room yields at least every CALLS_PER_TURN writes."""
    ours, peer = tcp_pair
    io = DirectSocket(ours.socket)
    turns = 0
    writes = 8 * CALLS_PER_TURN

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    async def drain() -> None:
        while await peer.receive_some(65536):
            pass

    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            nursery.start_soon(other_task)
            await trio.lowlevel.checkpoint()  # let them start
            before = turns
            for _ in range(writes):
                await io.send_all(b"x" * 100)
            # Once per CALLS_PER_TURN writes; the last turn may come after the loop.
            assert turns - before >= writes // CALLS_PER_TURN - 1
            nursery.cancel_scope.cancel()


# -- in the server -------------------------------------------------------------------------------


async def test_the_server_reads_tcp_directly_and_tls_through_its_stream(nursery: trio.Nursery) -> None:
    """A WebSocket over plain TCP is read and written through a DirectSocket; over TLS, through the
    SSLStream (the general path); both echo."""
    seen: list[type] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def echo_and_tell(ws: trio_ws.WebSocketConnection) -> None:
        seen.append(type(ws._io))  # type: ignore[attr-defined]
        async for message in ws:
            await ws.send_message(message)

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    plain: trio_ws.Server = await nursery.start(partial(trio_ws.serve, app, "127.0.0.1", 0))
    tls: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve, app, "127.0.0.1", 0, ssl_context=server_context)
    )
    with trio.fail_after(IO_DEADLINE):
        async with connect(plain.ws_url()) as client:
            await client.send("over tcp")
            assert await client.recv() == "over tcp"
        async with connect(tls.ws_url(), ssl=client_context) as client:
            await client.send("over tls")
            assert await client.recv() == "over tls"
    assert seen == [DirectSocket, trio.SSLStream]


async def test_a_handler_sending_without_pause_over_tcp_lets_others_run(nursery: trio.Nursery) -> None:
    """A handler that only sends, to a client that reads as fast as it can, still lets other tasks
    run at least every CALLS_PER_TURN messages: send_message is a schedule point that often."""
    app = trio_ws.App()
    messages = 16 * CALLS_PER_TURN
    turns_during_sends: list[int] = []
    turns = 0

    @app.websocket("/ws")
    async def firehose(ws: trio_ws.WebSocketConnection) -> None:
        before = turns
        for _ in range(messages):
            await ws.send_message("x" * 100)
        turns_during_sends.append(turns - before)

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    server: trio_ws.Server = await nursery.start(partial(trio_ws.serve, app, "127.0.0.1", 0))
    nursery.start_soon(other_task)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url()) as client:
            for _ in range(messages):
                assert await client.recv() == "x" * 100
    assert turns_during_sends and turns_during_sends[0] >= messages // CALLS_PER_TURN - 1


async def test_reads_through_the_shared_buffer_stay_apart(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """Reads of two connections through the thread's one buffer give each its own bytes, at most
    max_bytes, which later reads (a larger one too, into a larger buffer) leave unchanged."""
    ours, peer = tcp_pair
    with trio.fail_after(IO_DEADLINE):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        other_peer = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
        other = await listeners[0].accept()
        await listeners[0].aclose()
        async with other, other_peer:
            first, second = DirectSocket(ours.socket), DirectSocket(other.socket)
            await peer.send_all(b"a" * 100)
            await other_peer.send_all(b"b" * 3000)
            chunks_first = [await first.receive_some(64)]
            chunks_second = [await second.receive_some(1 << 20)]
            while sum(map(len, chunks_first)) < 100:
                chunks_first.append(await first.receive_some(64))
            while sum(map(len, chunks_second)) < 3000:
                chunks_second.append(await second.receive_some(1 << 20))
            await peer.send_all(b"c" * 10)
            third = await first.receive_some(4)
    assert all(type(chunk) is bytearray and len(chunk) <= 64 for chunk in chunks_first)
    assert b"".join(chunks_first) == b"a" * 100
    assert b"".join(chunks_second) == b"b" * 3000
    assert third == b"cccc"


async def test_receive_into_appends_to_the_buffer_given(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """receive_into appends at most max_bytes to what the buffer holds, says how many came, and 0
    once the peer has closed its side."""
    ours, peer = tcp_pair
    io = DirectSocket(ours.socket)
    buffer = bytearray(b"kept:")
    with trio.fail_after(IO_DEADLINE):
        await peer.send_all(b"0123456789")
        first = await io.receive_into(buffer, 4)
        counts = [first]
        while len(buffer) < len(b"kept:0123456789"):
            counts.append(await io.receive_into(buffer, 4))
        await peer.send_eof()
        end = await io.receive_into(buffer, 4)
    assert first == 4 and all(0 < count <= 4 for count in counts)
    assert buffer == b"kept:0123456789"
    assert end == 0


async def test_pieces_arrive_whole_and_in_order_as_if_joined(
    tcp_pair: tuple[trio.SocketStream, trio.SocketStream],
) -> None:
    """send_pieces sends its buffers one after another; 8 MiB in the middle waits for room many
    times, resuming in the middle of a piece, and a bytearray piece can be resized after."""
    ours, peer = tcp_pair
    io = DirectSocket(ours.socket)
    tail = bytearray(b"tail")
    pieces: list[bytes | bytearray] = [b"\x82\x7f", bytes(range(256)) * 4, b"\x01" * 8 * 2**20, b"", tail]
    expected = b"".join(pieces)
    got = bytearray()

    async def read_all() -> None:
        while len(got) < len(expected):
            got.extend(await peer.receive_some(65536))

    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await io.send_pieces(pieces)
    assert got == expected
    tail += b"!"  # no view of it was left behind


async def test_a_long_echo_over_tcp_is_read_into_the_protocols_buffer_and_written_without_a_copy(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over plain TCP, an open connection's reads are appended to the protocol's buffer (no bytes made
    for them), and a 64 KiB reply goes out in one writev of its header and the
    handler's own bytes."""
    written: list[list[bytes]] = []
    real_writev = os.writev

    def recording_writev(fd: int, buffers: list[bytes]) -> int:
        written.append(list(buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr("trio_ws._websocket.direct_socket.os.writev", recording_writev)
    # For each receive_some: whether the long message was on its way (and the client not closing).
    received_some: list[bool] = []
    long_message_sent = client_closing = False
    real_receive_some = DirectSocket.receive_some

    async def recording_receive_some(self: DirectSocket, max_bytes: int | None = None) -> bytearray:
        received_some.append(long_message_sent and not client_closing)
        return await real_receive_some(self, max_bytes)

    monkeypatch.setattr(DirectSocket, "receive_some", recording_receive_some)
    replies: list[bytes] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def echo_copy(ws: trio_ws.WebSocketConnection) -> None:
        async for message in ws:
            assert isinstance(message, bytes)
            reply = bytes(reversed(message))
            replies.append(reply)
            await ws.send_message(reply)

    server: trio_ws.Server = await nursery.start(partial(trio_ws.serve, app, "127.0.0.1", 0))
    payload = bytes(range(256)) * 256
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), compression=None) as client:
            # The reader's first read may begin before the 101 (and take the general way).
            await client.send(b"first")
            assert await client.recv() == b"tsrif"
            written.clear()
            long_message_sent = True
            await client.send(payload)
            assert await client.recv() == bytes(reversed(payload))
            client_closing = True
    # Every read goes onto the protocol's buffer: receive_some (a bytes made per read) is never used.
    assert not any(received_some)
    assert len(written) == 1
    assert written[0][0] == bytes([0x82, 127]) + struct.pack("!Q", 65536)
    assert written[0][1] is replies[1]
