"""A peer that leaves, or closes, while the server has stopped reading from it (issue 19, items 1 and 2).

The shape: a peer with a tiny receive buffer sends two long messages and
reads nothing. The echo of the first is stuck in ``send``; the second fills
the handler's queue, so the reader stops reading. Whatever the peer does
next (reset TCP, close it, send a Close frame) must still end the
connection: at once for a reset or an end of stream, within
``close_timeout`` for a Close. Real sockets on 127.0.0.1 make the reset and
the full windows real; the clock is a ``MockClock`` that only the tests
move, so "at once" means with no time passing at all.
"""

from __future__ import annotations

import json
import struct

import trio
import trio.testing

import trio_ws

from ..helpers import IO_DEADLINE, open_fd_count, task_count
from ..raw import BINARY, CLOSE, TEXT, Peer, client_frame
from .test_hostile import small_buffer_server

TWO_MESSAGES = client_frame(BINARY, b"x" * 2**20) * 2


async def settled() -> None:
    """Let the server act on what the kernel has already told it (a few rounds, no time passing)."""
    for _ in range(5):
        await trio.testing.wait_all_tasks_blocked()


async def stuck_peer(server: trio_ws.Server) -> Peer[trio.SocketStream]:
    """A peer whose echo is stuck in send and whose second message waits in the handler's queue."""
    peer = await Peer.open(server.port, receive_buffer=4096)
    await peer.stream.send_all(TWO_MESSAGES)
    await settled()
    assert server.statistics().open_websockets == 1
    return peer


def reset(peer: Peer[trio.SocketStream]) -> None:
    """Close the peer's socket with SO_LINGER (1, 0): the kernel sends a reset, not a FIN."""
    peer.reset()
    peer.stream.socket.close()


async def test_a_reset_while_the_reply_is_stuck_frees_the_connection_at_once(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """The reset reaches the stuck send, which ends the connection: fd, slot and tasks are freed
    with no time passing, without keep-alive, and a new upgrade is admitted into the one slot."""
    options = trio_ws.Options(max_connections=1, keep_alive_interval=None, close_timeout=None)
    server = await small_buffer_server(nursery, trio_ws.echo_app(), options)
    await trio.testing.wait_all_tasks_blocked()
    tasks_before, fds_before = task_count(), open_fd_count()
    with trio.fail_after(IO_DEADLINE):
        peer = await stuck_peer(server)
        reset(peer)
        await settled()
        assert server.statistics().open_websockets == 0
        assert task_count() == tasks_before
        assert open_fd_count() == fds_before
        late = await Peer.open(server.port)  # max_connections=1: the slot is free again
        await late.stream.aclose()


async def test_an_end_of_stream_is_seen_by_a_paused_reader(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """A peer that closes TCP normally (a FIN, with our reply still unread) is noticed by the
    paused reader itself: the connection ends at once, as after a reset."""
    options = trio_ws.Options(keep_alive_interval=None, close_timeout=None)
    server = await small_buffer_server(nursery, trio_ws.echo_app(), options)
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    with trio.fail_after(IO_DEADLINE):
        peer = await stuck_peer(server)
        await peer.stream.send_eof()
        await settled()
        assert server.statistics().open_websockets == 0
        assert task_count() == tasks_before
        await peer.stream.aclose()


async def test_a_close_behind_two_unread_messages_starts_the_closing_phase(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """A Close sent after two messages the server has no room for is still read: close_timeout
    starts then, and bounds the connection even with keep-alive off and the peer's socket open."""
    options = trio_ws.Options(max_connections=1, keep_alive_interval=None, close_timeout=5)
    server = await small_buffer_server(nursery, trio_ws.echo_app(), options)
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    with trio.fail_after(IO_DEADLINE):
        peer = await stuck_peer(server)
        await peer.stream.send_all(client_frame(CLOSE, struct.pack("!H", 1000)))
        await settled()
        assert server.statistics().open_websockets == 1
        mock_clock.jump(4.9)
        await settled()
        assert server.statistics().open_websockets == 1  # still inside its close_timeout
        mock_clock.jump(0.2)
        await settled()
        assert server.statistics().open_websockets == 0
        assert task_count() == tasks_before
        assert await peer.closed_by_server()
        late = await Peer.open(server.port)  # max_connections=1: the slot is free again
        await late.stream.aclose()


async def test_hub_websockets_that_reset_with_replies_unread_are_freed(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """The conformance hub's Echo, called 200 times with 30 KB by peers that read nothing and then
    reset: every connection is freed within the second the hub gives a broken send to find out why,
    its tasks and fds with it."""
    from examples.signalr.testhub import OPTIONS, build_app

    peer_count = 10  # one in a few leaked before the fix

    options = trio_ws.Options(keep_alive_interval=None, close_timeout=None)
    server = await small_buffer_server(nursery, build_app(OPTIONS), options)
    await trio.testing.wait_all_tasks_blocked()
    tasks_before, fds_before = task_count(), open_fd_count()
    argument = "e" * 30_000
    call = "".join(
        json.dumps({"type": 1, "invocationId": str(n), "target": "Echo", "arguments": [argument]}) + "\x1e"
        for n in range(200)
    )
    with trio.fail_after(IO_DEADLINE):
        peers = []
        async with trio.open_nursery() as sending:
            for _ in range(peer_count):
                peer = await Peer.open(server.port, receive_buffer=4096, path="/testhub")
                await peer.stream.send_all(client_frame(TEXT, b'{"protocol":"json","version":1}\x1e'))
                # One call a frame; the server stops reading once its replies are stuck.
                calls = b"".join(client_frame(TEXT, c.encode() + b"\x1e") for c in call.split("\x1e") if c)
                sending.start_soon(peer.stream.send_all, calls)
                peers.append(peer)
            await settled()
            sending.cancel_scope.cancel()
        assert server.statistics().open_websockets == peer_count
        for peer in peers:
            reset(peer)
        await settled()
        # A hub's send that fails gives its reader a second to say why the transport ended.
        mock_clock.jump(1.1)
        await settled()
        assert server.statistics().open_websockets == 0
        assert task_count() == tasks_before
        assert open_fd_count() == fds_before


async def test_a_peer_that_stalls_with_replies_stuck_is_freed_by_keep_alive(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """A peer that stays connected but reads nothing, with a reply stuck and a message queued, is
    freed once keep-alive gives up on its pong: keep_alive_interval + keep_alive_timeout, no later
    (the Close frame can't get past the stuck reply, so it is not waited for)."""
    options = trio_ws.Options(keep_alive_interval=2, keep_alive_timeout=2, close_timeout=None)
    server = await small_buffer_server(nursery, trio_ws.echo_app(), options)
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    with trio.fail_after(IO_DEADLINE):
        peer = await stuck_peer(server)
        mock_clock.jump(2)  # the ping: it waits behind the stuck reply
        await settled()
        mock_clock.jump(1.9)
        await settled()
        assert server.statistics().open_websockets == 1
        mock_clock.jump(0.2)
        await settled()
        assert server.statistics().open_websockets == 0
        assert task_count() == tasks_before
        assert await peer.closed_by_server()


async def test_bytes_read_while_a_write_is_stuck_are_counted_for_metrics(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """To see the Close behind the two unread messages the server reads every byte before it,
    some of them while it watches the stuck write: ``/metrics`` counts them all."""
    options = trio_ws.Options(keep_alive_interval=None, close_timeout=5, metrics=True)
    server = await small_buffer_server(nursery, trio_ws.echo_app(), options)
    assert server.metrics is not None
    await trio.testing.wait_all_tasks_blocked()
    close = client_frame(CLOSE, struct.pack("!H", 1000))
    with trio.fail_after(IO_DEADLINE):
        peer = await stuck_peer(server)
        await peer.stream.send_all(close)
        await settled()
        mock_clock.jump(5.1)
        await settled()
        assert server.statistics().open_websockets == 0
        await peer.stream.aclose()
    assert server.metrics.tally.bytes_in == len(TWO_MESSAGES) + len(close)
