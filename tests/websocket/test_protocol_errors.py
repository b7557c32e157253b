"""A peer that breaks RFC 6455 gets a Close frame with the right code, after its earlier messages.

Each test sends hand-made frames from a raw wsproto client and reads, frame by
frame, what the server sends back before it closes TCP (RFC 6455 section
7.1.7: send Close, then close the connection).
"""

from __future__ import annotations

import contextlib
import logging
import struct

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage

import trio_ws

from ..helpers import (
    IO_DEADLINE,
    MemoryListener,
    start_memory_server,
    start_server,
    task_count,
    warnings_logged,
)
from ..raw import RawClient, client_frame, open_raw_websocket

TEXT, BINARY, CONTINUATION, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


async def events_until_eof(client: RawClient) -> list[Event]:
    """Everything the server sends until it closes TCP."""
    received = []
    while (event := await client.next_event()) is not None:
        received.append(event)
    return received


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


BAD_FRAMES = {
    "reserved bit RSV1 without an extension": (client_frame(TEXT, b"hi", rsv=4), 1002),
    "reserved bits RSV2 and RSV3": (client_frame(BINARY, b"hi", rsv=3), 1002),
    "reserved data opcode 3": (client_frame(0x3, b""), 1002),
    "reserved control opcode 11": (client_frame(0xB, b""), 1002),
    "continuation with nothing to continue": (client_frame(CONTINUATION, b"x"), 1002),
    "new message inside a fragmented one": (
        client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),
        1002,
    ),
    "fragmented ping": (client_frame(PING, b"x", fin=False), 1002),
    "ping payload over 125 bytes": (client_frame(PING, b"x" * 126), 1002),
    "unmasked client frame": (client_frame(TEXT, b"hi", masked=False), 1002),
    "close code 5000": (client_frame(CLOSE, close_payload(5000)), 1002),
    "close code 65535": (client_frame(CLOSE, close_payload(65535)), 1002),
    "close code 1005 (local only)": (client_frame(CLOSE, close_payload(1005)), 1002),
    "close code 999": (client_frame(CLOSE, close_payload(999)), 1002),
    "close payload of one byte": (client_frame(CLOSE, b"\x03"), 1002),
    "invalid UTF-8 in a text message": (client_frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80"), 1007),
    "invalid UTF-8 across fragments": (
        client_frame(TEXT, b"\xce", fin=False) + client_frame(CONTINUATION, b"\xff"),
        1007,
    ),
    "invalid UTF-8 in a close reason": (client_frame(CLOSE, close_payload(1000, b"\xff\xfe")), 1007),
}


@pytest.mark.parametrize("frames, code", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_protocol_error_gets_a_close_frame_with_its_code(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    caplog: pytest.LogCaptureFixture,
    frames: bytes,
    code: int,
) -> None:
    """The server sends Close 1002 (or 1007 for bad UTF-8) and then closes TCP, logging no warning."""
    caplog.set_level(logging.INFO)
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener)
    client = await open_raw_websocket(memory_listener)
    await client.stream.send_all(frames)

    received = await events_until_eof(client)
    assert len(received) == 1, received
    assert isinstance(received[0], CloseConnection)
    assert received[0].code == code
    assert warnings_logged(caplog.records) == []


async def test_messages_before_the_bad_frame_are_answered_first(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Complete messages that arrived before the bad frame are echoed, then Close 1002 is sent."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener)
    client = await open_raw_websocket(memory_listener)
    good = [TextMessage(data=f"m{i}") for i in range(20)] + [BytesMessage(data=b"\x00\x01")]
    await client.send(*good)
    # A fragment that the bad frame interrupts is not a complete message: it is dropped.
    await client.stream.send_all(client_frame(TEXT, b"partial", fin=False) + client_frame(0x3, b""))

    received = await events_until_eof(client)
    assert [e.data for e in received[:-1]] == [*(f"m{i}" for i in range(20)), b"\x00\x01"]  # type: ignore[attr-defined]
    assert isinstance(received[-1], CloseConnection)
    assert received[-1].code == 1002


async def test_handler_sees_the_protocol_error_code(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """The handler's next get_message() raises ConnectionClosed with the code the server sent."""
    seen: list[ConnectionClosed] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def handler(ws: WebSocketConnection) -> None:
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed as closed:
            seen.append(closed)

    await start_memory_server(nursery, app, memory_listener)
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="fine"))
    await client.stream.send_all(client_frame(TEXT, b"\xff"))

    received = await events_until_eof(client)
    assert isinstance(received[0], TextMessage) and received[0].data == "fine"
    assert isinstance(received[-1], CloseConnection) and received[-1].code == 1007
    assert len(seen) == 1 and seen[0].reason is not None and seen[0].reason.code == 1007


async def test_data_after_the_bad_frame_is_not_processed(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Once the connection has failed, later frames in the same burst get no answer."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener)
    client = await open_raw_websocket(memory_listener)
    after = client.ws.send(TextMessage(data="too late"))
    await client.stream.send_all(client_frame(BINARY, b"x", rsv=2) + after)

    received = await events_until_eof(client)
    assert [type(e) for e in received] == [CloseConnection]


async def test_oversize_message_gets_1009_after_earlier_messages(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """A message over max_message_size gets Close 1009; the messages before it are still echoed."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener, max_message_size=100)
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="a" * 100), TextMessage(data="b"), BytesMessage(data=b"c" * 101))

    received = await events_until_eof(client)
    assert [e.data for e in received[:-1]] == ["a" * 100, "b"]  # type: ignore[attr-defined]
    assert isinstance(received[-1], CloseConnection)
    assert received[-1].code == 1009
    assert received[-1].reason == "message larger than 100 bytes"


async def test_failed_connection_leaves_nothing_behind(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """After a protocol error the connection's tasks are gone and another client is served."""
    server = await start_memory_server(nursery, trio_ws.echo_app(), memory_listener)
    bystander = await open_raw_websocket(memory_listener)
    await trio.testing.wait_all_tasks_blocked()
    baseline = task_count()

    offender = await open_raw_websocket(memory_listener)
    await offender.stream.send_all(client_frame(0x3, b""))
    assert [type(e) for e in await events_until_eof(offender)] == [CloseConnection]
    await offender.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == baseline
    assert server.statistics().open_websockets == 1

    await bystander.send(TextMessage(data="still here"))
    echoed = await bystander.next_event()
    assert isinstance(echoed, TextMessage) and echoed.data == "still here"


async def test_failing_closes_tcp_cleanly_while_the_peer_still_sends(nursery: trio.Nursery) -> None:
    """After Close 1009 the server half-closes and discards the rest of the peer's message, so the
    peer reads the Close and then a clean end of stream, not a connection reset.

    Whether unread bytes are left at the server's close depends on scheduling,
    so the exchange runs five times: without the half-close, at least one of
    them ends in a reset (checked by removing it).
    """
    server = await start_server(nursery, trio_ws.echo_app(), max_message_size=1 << 20)
    for _ in range(5):
        with trio.fail_after(IO_DEADLINE):
            client = RawClient(await trio.open_tcp_stream("127.0.0.1", server.port))
            await client.handshake()
            oversize = client.ws.send(BytesMessage(data=b"\x00" * (16 << 20)))

            async def send_it(client: RawClient = client, oversize: bytes = oversize) -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await client.stream.send_all(oversize)

            async with trio.open_nursery() as sending:
                sending.start_soon(send_it)
                close = await client.next_event()
                assert isinstance(close, CloseConnection) and close.code == 1009
                assert await client.stream.receive_some(65536) == b""  # FIN, not a reset
                sending.cancel_scope.cancel()
            await client.stream.aclose()
