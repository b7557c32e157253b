"""Sending without waiting (``_send_now``): a frame written at once, or its rest first in line.

The hub's senders use it (``signalr/_transports/sender.py``); these tests
drive it from a plain handler over real TCP on 127.0.0.1, with a raw peer
that reads only when told to, so the server's socket can be made full.
"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Awaitable, Callable

import trio
import trio.testing

import trio_ws
from trio_ws._websocket.connection import ServerConnection

from ..helpers import IO_DEADLINE, start_server
from ..raw import BINARY, TEXT, Peer

Handler = Callable[[ServerConnection], Awaitable[None]]


async def serve(nursery: trio.Nursery, handler: Handler, **options: object) -> int:
    """``handler`` at /ws on 127.0.0.1; the port."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def run(ws: trio_ws.WebSocketConnection) -> None:
        assert isinstance(ws, ServerConnection)
        await handler(ws)
        await trio.sleep_forever()  # the test closes the connection

    server = await start_server(nursery, app, keep_alive_interval=None, **options)
    return server.port


def shrink_send_buffer(ws: ServerConnection) -> None:
    """Make the server's send buffer small, so that it fills after a few messages."""
    ws._tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[attr-defined]


async def test_a_message_the_socket_takes_goes_at_once_and_is_counted(nursery: trio.Nursery) -> None:
    """With nothing else on its way, the frame is written there and then: nothing waits, no
    checkpoint is taken, and the message and its bytes are counted for /metrics."""
    results: list[int | None] = []
    counted: list[tuple[int, int]] = []

    async def send_two(ws: ServerConnection) -> None:
        tally = ws.tally
        assert tally is not None
        before = (tally.messages_out, tally.bytes_out)
        results.append(ws._send_now("hello"))
        results.append(ws._send_now(b"\x00\x01"))
        counted.append((tally.messages_out - before[0], tally.bytes_out - before[1]))

    port = await serve(nursery, send_two, metrics=True)
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(port)
        assert await peer.next_frame() == (TEXT, b"hello")
        assert await peer.next_frame() == (BINARY, b"\x00\x01")
    assert results == [0, 0]
    assert counted == [(2, 7 + 4)]
    await peer.aclose()


async def test_text_encoded_already_goes_as_a_text_message_of_the_same_bytes(nursery: trio.Nursery) -> None:
    """``text=True`` sends bytes the caller encoded from text (a hub's JSON) as a Text message,
    byte for byte, without decoding them first; the same bytes without it go as Binary. (The
    permessage-deflate test below sends half its messages this way.)"""
    text = "caf\u00e9 \u2603 \U0001f600 \x1e"
    encoded = text.encode("utf-8")

    async def send_encoded(ws: ServerConnection) -> None:
        assert ws._send_now(encoded, text=True) == 0
        assert ws._send_now(encoded) == 0  # the same bytes without it: a Binary message

    port = await serve(nursery, send_encoded)
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(port)
        assert await peer.next_frame() == (TEXT, encoded)
        assert await peer.next_frame() == (BINARY, encoded)
    await peer.aclose()


async def test_nothing_goes_while_a_write_holds_the_socket_or_the_outbox_holds_bytes(
    nursery: trio.Nursery,
) -> None:
    """A send_now behind a write under way, or behind bytes waiting in the outbox, sends
    nothing (the caller queues it), so it can never overtake them."""
    results: list[int | None] = []
    done = trio.Event()

    async def send_behind(ws: ServerConnection) -> None:
        shrink_send_buffer(ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.send_message, "y" * 1_000_000)  # stuck: the peer is not reading
            await trio.testing.wait_all_tasks_blocked()
            assert ws._write_lock.locked()
            results.append(ws._send_now("behind a write"))
            nursery.cancel_scope.cancel()
        ws._outbox.append(b"\x81\x01!")  # a Text frame waiting, as a Pong behind a write would
        ws._outbox_size += 3
        results.append(ws._send_now("behind the outbox"))
        done.set()

    port = await serve(nursery, send_behind)
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(port, receive_buffer=4096)
        await done.wait()
    assert results == [None, None]
    await peer.aclose()


async def test_the_rest_of_a_partial_write_goes_before_the_next_message(nursery: trio.Nursery) -> None:
    """When the socket takes only part of a frame, the rest waits at the head of the outbox and
    the next write sends it first: the peer reads every message whole and in order."""
    sent: list[str] = []
    waiting: list[int] = []
    filled = trio.Event()
    payload = "m{:04d}".ljust(16_000, ".")

    async def fill_then_send(ws: ServerConnection) -> None:
        shrink_send_buffer(ws)
        for number in range(1000):
            message = payload.format(number)
            left = ws._send_now(message)
            assert left is not None  # nothing waited before this one
            sent.append(message)
            if left:
                waiting.append(left)
                break
        assert ws._send_now("after") is None  # the rest is first in line
        filled.set()
        await ws.send_message("after")  # writes the rest first (waiting for the peer to read)
        sent.append("after")

    port = await serve(nursery, fill_then_send)
    received: list[str] = []
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(port, receive_buffer=4096)
        await filled.wait()
        while not received or received[-1] != "after":
            opcode, data = await peer.next_frame()
            assert opcode == TEXT
            received.append(data.decode())
    assert received == sent
    # A frame of 16,004 bytes: part of it, or all of it, waited.
    assert 0 < waiting[0] <= 16_004
    await peer.aclose()


async def test_with_permessage_deflate_every_message_inflates_in_order(nursery: trio.Nursery) -> None:
    """Frames are compressed in the order they are built, and built only when they go at once or
    wait first in line: sends at once (of ``str``, and of text encoded already) and queued sends
    mixed, on a socket that keeps filling up, inflate with one context, in order."""
    sent: list[str] = []
    waited = 0
    filled = trio.Event()

    async def mixed(ws: ServerConnection) -> None:
        nonlocal waited
        assert ws.extensions == ["permessage-deflate"]
        shrink_send_buffer(ws)
        for number in range(300):
            # Each message's compression depends on the ones before it (context takeover).
            message = f"{number:05d} " + " ".join(str(number * k) for k in range(800))
            if filled.is_set() and number % 3 == 2:
                left = None
            elif number % 2:
                left = ws._send_now(message.encode(), text=True)  # as a hub sends its JSON
            else:
                left = ws._send_now(message)
            if left is None:
                await ws.send_message(message)
            elif left:
                waited += 1
                filled.set()  # from now on, queued sends too: the peer reads
            sent.append(message)

    port = await serve(nursery, mixed)
    inflater = zlib.decompressobj(-15)
    received: list[str] = []
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(
            port, receive_buffer=4096, extra=["Sec-WebSocket-Extensions: permessage-deflate"]
        )
        await filled.wait()
        while len(received) < 300:
            rsv, opcode, data = await peer.message()
            assert opcode == TEXT
            if rsv & 4:
                data = inflater.decompress(data + b"\x00\x00\xff\xff")
            received.append(data.decode())
    assert received == sent
    assert waited > 1  # the socket was full for more than the first of them
