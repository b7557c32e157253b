"""Frames that arrive in the same read as the upgrade request (issue 19, item 5).

A client should wait for the 101 before it sends frames, but bytes after the
request head belong to the WebSocket all the same: they are served, in order,
before anything read later.
"""

from __future__ import annotations

import struct

import trio

import trio_ws

from ..helpers import IO_DEADLINE, start_server, upgrade_request
from .test_hostile import CLOSE, TEXT, Peer, frame


async def open_with(port: int, early: bytes) -> Peer:
    """A peer that sends the upgrade request and ``early`` in one write, and reads the 101."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    peer = Peer(stream)
    await stream.send_all(upgrade_request() + early)
    while b"\r\n\r\n" not in peer.buffer:
        await peer._fill()
    head, _, rest = bytes(peer.buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    peer.buffer = bytearray(rest)
    return peer


async def test_frames_sent_with_the_upgrade_request_are_served(echo_server: trio_ws.Server) -> None:
    """Two frames in the request's own write are echoed, in order, before one sent later."""
    with trio.fail_after(IO_DEADLINE):
        peer = await open_with(echo_server.port, frame(TEXT, b"first") + frame(TEXT, b"second"))
        assert await peer.next_frame() == (TEXT, b"first")
        assert await peer.next_frame() == (TEXT, b"second")
        await peer.stream.send_all(frame(TEXT, b"third"))
        assert await peer.next_frame() == (TEXT, b"third")
        await peer.stream.aclose()


async def test_a_close_sent_with_the_upgrade_request_is_answered(echo_server: trio_ws.Server) -> None:
    """A message and a Close in the request's own write: the echo, then the Close answered, then
    TCP closed by the server."""
    with trio.fail_after(IO_DEADLINE):
        early = frame(TEXT, b"hello") + frame(CLOSE, struct.pack("!H", 1000))
        peer = await open_with(echo_server.port, early)
        assert await peer.next_frame() == (TEXT, b"hello")
        assert await peer.close_frame() == (1000, "")
        assert await peer.closed_by_server()
        await peer.stream.aclose()


async def test_frames_sent_with_the_upgrade_request_are_counted_for_metrics(nursery: trio.Nursery) -> None:
    """``/metrics`` counts the bytes of frames that came with the request, as those read later."""
    server = await start_server(nursery, trio_ws.echo_app(), metrics=True)
    assert server.metrics is not None
    early = frame(TEXT, b"first")
    with trio.fail_after(IO_DEADLINE):
        peer = await open_with(server.port, early)
        assert await peer.next_frame() == (TEXT, b"first")
        later = frame(TEXT, b"second")
        await peer.stream.send_all(later)
        assert await peer.next_frame() == (TEXT, b"second")
        await peer.stream.aclose()
    assert server.metrics.tally.bytes_in == len(early) + len(later)
