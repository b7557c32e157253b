"""Hostile WebSocket clients over real sockets (issue 15, items 1 to 4): each one must stay bounded.

Every test here runs a server on 127.0.0.1, port 0, and talks to it with
frames built by hand. What needs real seconds to show (a bystander's
latency during a flood, memory over a minute) is measured by
``benchmarks/hostile.py``, which CI runs with short durations; here each
bound is checked in a way that does not depend on the machine's speed:
the clock is a ``MockClock`` moved by hand, memory is what ``tracemalloc``
sees, and fairness is counted in scheduler turns.
"""

from __future__ import annotations

import socket
import struct
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial

import pytest
import trio
import trio.testing

import trio_ws
from trio_ws._websocket.frames import most_frames

from ..helpers import IO_DEADLINE, task_count
from ..raw import BINARY, CLOSE, CONTINUATION, MASK, PING, PONG, TEXT, Peer, client_frame


async def small_buffer_server(
    nursery: trio.Nursery, app: trio_ws.App, options: trio_ws.Options
) -> trio_ws.Server:
    """``app`` on 127.0.0.1 whose accepted sockets have 16 KiB send buffers, so a peer that stops
    reading blocks the server's sends after a few kilobytes, not after the kernel's megabytes."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listeners[0].socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    server: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve_listeners, app, list(listeners), options=options)
    )
    return server


@contextmanager
def traced_growth() -> Iterator[list[int]]:
    """Trace Python allocations in the block; the list gets (growth now, growth at the peak) on exit."""
    figures: list[int] = []
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        yield figures
        current, peak = tracemalloc.get_traced_memory()
        figures += [current - baseline, peak - baseline]
    finally:
        tracemalloc.stop()


# -- item 1: a Close while our reply is stuck in send -----------------------------------------


async def test_a_close_behind_a_stuck_reply_is_freed_after_close_timeout(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """A peer that stops reading while the echo is stuck in send, then sends Close, is dropped when
    close_timeout runs out: TCP closed, its slot and tasks freed, a new upgrade admitted."""
    options = trio_ws.Options(close_timeout=10, max_connections=1, keep_alive_interval=None)
    server = await small_buffer_server(nursery, trio_ws.echo_app(), options)
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port, receive_buffer=4096)
        await peer.stream.send_all(client_frame(BINARY, b"x" * 2**20))
        await trio.testing.wait_all_tasks_blocked()  # the echo is stuck: nobody reads it
        await peer.stream.send_all(client_frame(CLOSE, struct.pack("!H", 1000)))
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().open_websockets == 1
        mock_clock.jump(9.9)
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().open_websockets == 1  # still inside its close_timeout
        mock_clock.jump(0.2)
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().open_websockets == 0
        assert task_count() == tasks_before
        assert await peer.closed_by_server()
        late = await Peer.open(server.port)  # max_connections=1: the slot is free again
        await late.stream.aclose()


# -- item 2: fragments within max_message_size --------------------------------------------------


async def test_a_message_of_endless_empty_fragments_is_refused_with_1009(nursery: trio.Nursery) -> None:
    """Empty continuation frames cost nothing in bytes, so they are counted as frames: past
    most_frames(max_message_size) the server answers 1009 and holds nothing meanwhile."""
    limit = 64 * 1024
    options = trio_ws.Options(max_message_size=limit, receive_buffer_size=16 * 1024)
    server = await trio_ws.testing.start_server(nursery, trio_ws.echo_app(), options=options)
    empty_continuation = client_frame(CONTINUATION, fin=False)
    flood = client_frame(BINARY, b"x", fin=False) + empty_continuation * (most_frames(limit) + 10)
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port)
        with traced_growth() as growth:
            # A trailing Ping: a server that did not stop the flood would answer it with a Pong.
            await peer.stream.send_all(flood + client_frame(PING, b"still there?"))
            code, reason = await peer.close_frame()
        assert (code, reason) == (1009, f"message in more than {most_frames(limit)} frames")
        assert await peer.closed_by_server()
    # A few reads' worth (the server's, its linger's and this client's), whatever the flood's length.
    assert growth[1] < 256 * 1024, f"the flood made the process grow by {growth[1]} bytes at its peak"


async def test_one_byte_fragments_are_refused_before_they_pile_up(nursery: trio.Nursery) -> None:
    """A message of just under max_message_size in one-byte fragments gets 1009 after
    most_frames(max_message_size) of them, and never holds more than a few reads' worth."""
    limit = 64 * 1024
    options = trio_ws.Options(max_message_size=limit, receive_buffer_size=16 * 1024)
    server = await trio_ws.testing.start_server(nursery, trio_ws.echo_app(), options=options)
    pieces = [client_frame(BINARY, b"y", fin=False)]
    pieces += [client_frame(CONTINUATION, b"y", fin=False)] * (limit - 3) + [client_frame(CONTINUATION, b"y")]
    data = b"".join(pieces)
    del pieces
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port)
        with traced_growth() as growth:
            # The server stops reading and closes part-way: the rest may not go out.
            with trio.move_on_after(IO_DEADLINE), suppress(trio.BrokenResourceError):
                await peer.stream.send_all(data)
            code, reason = await peer.close_frame()
        assert (code, reason) == (1009, f"message in more than {most_frames(limit)} frames")
    # A few reads' worth (the server's, its linger's and this client's), not one object per fragment.
    assert growth[1] < 256 * 1024, f"the fragments made the process grow by {growth[1]} bytes at its peak"


async def test_a_fragmented_message_in_progress_holds_about_its_own_size(nursery: trio.Nursery) -> None:
    """A message of max_message_size bytes in as many 64-byte fragments as allowed is accepted, and
    until its last fragment comes it holds its payload once, not one object per fragment."""
    limit = 256 * 1024
    count = most_frames(limit)
    size = limit // count
    server = await trio_ws.testing.start_server(
        nursery, trio_ws.echo_app(), options=trio_ws.Options(max_message_size=limit)
    )
    piece = b"z" * size
    middle = client_frame(CONTINUATION, piece, fin=False)
    first_part = client_frame(BINARY, piece, fin=False) + middle * (count - 2)
    last = client_frame(CONTINUATION, piece)
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port)
        with traced_growth() as growth:
            await peer.stream.send_all(first_part)
            await trio.testing.wait_all_tasks_blocked()  # every fragment but the last has been read
        await peer.stream.send_all(last)
        received = b""
        while len(received) < limit:
            opcode, payload = await peer.next_frame()
            assert opcode in (BINARY, CONTINUATION)
            received += payload
    assert received == piece * count
    held = growth[0]
    assert held < limit * 1.25 + 16 * 1024, f"{held} bytes held for {limit - size} bytes received"


# -- item 3: one busy connection must not starve the others ---------------------------------------


@pytest.mark.parametrize(
    ("name", "flood", "end"),
    [
        # Each ends with a message that is echoed once every frame before it has been handled.
        ("unsolicited Pongs", client_frame(PONG) * 40_000, client_frame(TEXT, b"end")),
        (
            "empty continuations",
            client_frame(BINARY, fin=False) + client_frame(CONTINUATION, fin=False) * 10_000,
            client_frame(CONTINUATION, b"end"),
        ),
    ],
    ids=["pongs", "continuations"],
)
async def test_a_flood_of_tiny_frames_yields_to_other_tasks(
    nursery: trio.Nursery, name: str, flood: bytes, end: bytes
) -> None:
    """While the server works through tens of thousands of tiny frames from one peer, other tasks
    get a turn at least once per 128 frames (the reader takes a checkpoint every 64 events)."""
    server = await trio_ws.testing.start_server(nursery, trio_ws.echo_app())
    frames = flood.count(MASK)  # one masking key per frame
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port)
        async with trio.open_nursery() as watching:
            watching.start_soon(other_task)
            await peer.stream.send_all(flood + end)
            _, payload = await peer.next_frame()
            watching.cancel_scope.cancel()
    assert payload == b"end"
    assert turns >= frames // 128, f"other tasks ran {turns} times while {frames} {name} were handled"


# -- item 4: max_message_size in bytes, and what a peer that never reads can pin -----------------


async def test_the_text_limit_counts_utf8_bytes(nursery: trio.Nursery) -> None:
    """max_message_size counts a text message's UTF-8 bytes, as RFC 6455 does, not its characters."""
    server = await trio_ws.testing.start_server(
        nursery, trio_ws.echo_app(), options=trio_ws.Options(max_message_size=1000)
    )
    emoji = "\U0001f600".encode()  # four bytes, one character
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port)
        await peer.stream.send_all(client_frame(TEXT, emoji * 250))  # 1000 bytes: at the limit
        assert await peer.next_frame() == (TEXT, emoji * 250)
        await peer.stream.send_all(client_frame(TEXT, emoji * 251))  # 251 characters, 1004 bytes
        assert await peer.close_frame() == (1009, "message larger than 1000 bytes")


@pytest.mark.parametrize(
    ("kind", "opcode", "payload"),
    [
        ("binary", BINARY, b"b" * (512 * 1024)),
        ("ASCII text", TEXT, b"a" * (512 * 1024)),
        ("text of 4-byte characters", TEXT, "\U0001f600".encode() * (128 * 1024)),
    ],
    ids=["binary", "ascii", "4-byte-text"],
)
async def test_a_peer_that_never_reads_pins_about_twice_the_limit(
    nursery: trio.Nursery, kind: str, opcode: int, payload: bytes
) -> None:
    """A peer that sends the largest message allowed, again and again, and never reads, makes the
    server hold about twice max_message_size: the message being echoed and the one queued."""
    limit = len(payload)
    options = trio_ws.Options(max_message_size=limit, receive_buffer_size=16 * 1024)
    server = await small_buffer_server(nursery, trio_ws.echo_app(), options)
    message = client_frame(opcode, payload)
    sent = 0
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port, receive_buffer=4096)
        peer.stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)

        async def send_forever() -> None:
            nonlocal sent
            while True:
                await peer.stream.send_all(message)
                sent += 1

        with traced_growth() as growth:
            async with trio.open_nursery() as sending:
                sending.start_soon(send_forever)
                # Everything stops: the echo on the peer's full window, the reader on its full queue,
                # and the peer's own sends on the server, which no longer reads.
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                sending.cancel_scope.cancel()
    assert sent >= 2, f"only {sent} message(s) went out before the server stopped reading"
    held = growth[0]
    assert held < 2 * limit + 256 * 1024, f"{kind}: {held} bytes held for a limit of {limit}"
