"""Frames that arrive in the same read as the upgrade request (issue 19, item 5).

A client should wait for the 101 before it sends frames, but bytes after the
request head belong to the WebSocket all the same: they are served, in order,
before anything read later.
"""

from __future__ import annotations

import struct

import trio

import trio_ws

from ..helpers import IO_DEADLINE, start_server
from ..raw import CLOSE, TEXT, Peer, client_frame


async def test_frames_sent_with_the_upgrade_request_are_served(echo_server: trio_ws.Server) -> None:
    """Two frames in the request's own write are echoed, in order, before one sent later."""
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(
            echo_server.port, early=client_frame(TEXT, b"first") + client_frame(TEXT, b"second")
        )
        assert await peer.next_frame() == (TEXT, b"first")
        assert await peer.next_frame() == (TEXT, b"second")
        await peer.stream.send_all(client_frame(TEXT, b"third"))
        assert await peer.next_frame() == (TEXT, b"third")
        await peer.stream.aclose()


async def test_a_close_sent_with_the_upgrade_request_is_answered(echo_server: trio_ws.Server) -> None:
    """A message and a Close in the request's own write: the echo, then the Close answered, then
    TCP closed by the server."""
    with trio.fail_after(IO_DEADLINE):
        early = client_frame(TEXT, b"hello") + client_frame(CLOSE, struct.pack("!H", 1000))
        peer = await Peer.open(echo_server.port, early=early)
        assert await peer.next_frame() == (TEXT, b"hello")
        assert await peer.close_frame() == (1000, "")
        assert await peer.closed_by_server()
        await peer.stream.aclose()


async def test_frames_sent_with_the_upgrade_request_are_counted_for_metrics(nursery: trio.Nursery) -> None:
    """``/metrics`` counts the bytes of frames that came with the request, as those read later."""
    server = await start_server(nursery, trio_ws.echo_app(), metrics=True)
    assert server.metrics is not None
    early = client_frame(TEXT, b"first")
    with trio.fail_after(IO_DEADLINE):
        peer = await Peer.open(server.port, early=early)
        assert await peer.next_frame() == (TEXT, b"first")
        later = client_frame(TEXT, b"second")
        await peer.stream.send_all(later)
        assert await peer.next_frame() == (TEXT, b"second")
        await peer.stream.aclose()
    assert server.metrics.tally.bytes_in == len(early) + len(later)
