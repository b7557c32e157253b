"""One WebSocket's life: subprotocols, the message size limit, and handler failures."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.lowlevel
import trio.testing
from websockets.exceptions import ConnectionClosedError
from websockets.trio.client import connect
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

import trio_ws
from trio_ws._websocket.connection import FRAGMENT_SIZE

from ..helpers import IO_DEADLINE, MemoryListener, start_memory_server, start_server, warnings_logged
from ..raw import open_raw_websocket


@pytest.mark.parametrize(
    ("proposed", "chosen"),
    [
        (["v1.chat", "v2.chat"], "v1.chat"),
        (["v2.chat", "v1.chat"], "v2.chat"),
        (["other", "v2.chat"], "v2.chat"),
        (["other"], None),
        (None, None),
    ],
)
async def test_subprotocol_is_the_first_proposal_the_endpoint_supports(
    nursery: trio.Nursery, proposed: list[str] | None, chosen: str | None
) -> None:
    """The server picks the first of the client's proposals that the route supports, or none."""
    server = await start_server(nursery, trio_ws.echo_app(subprotocols=["v2.chat", "v1.chat"]))
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), subprotocols=proposed) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == chosen
            await ws.send("hi")
            assert await ws.recv() == "hi"


async def test_handler_sees_the_chosen_subprotocol(nursery: trio.Nursery) -> None:
    """ws.subprotocol on the server side is the negotiated one."""
    app = trio_ws.App()

    @app.websocket("/chat", subprotocols=["chat"])
    async def tell(ws: trio_ws.WebSocketConnection) -> None:
        await ws.send_message(f"you speak {ws.subprotocol}")

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url("/chat"), subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            assert await ws.recv() == "you speak chat"


async def test_oversize_message_closes_with_1009(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A message over max_message_size closes that connection with 1009 and a log line; a message at
    the limit passes."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    server = await start_server(nursery, trio_ws.echo_app(), max_message_size=1000)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), compression=None) as other:
            async with connect(server.ws_url(), compression=None) as ws:
                await ws.send(b"x" * 1000)
                assert await ws.recv() == b"x" * 1000
                await ws.send(b"x" * 1001)
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert ws.protocol.close_rcvd is not None
                assert ws.protocol.close_rcvd.code == 1009
                assert "1000 bytes" in ws.protocol.close_rcvd.reason
            await other.send("unaffected")
            assert await other.recv() == "unaffected"
    closes = [r.getMessage() for r in caplog.records if "closed with 1009" in r.getMessage()]
    assert len(closes) == 1 and "1000 bytes" in closes[0]
    assert warnings_logged(caplog.records) == []


async def test_handler_exception_closes_only_its_connection_with_1011(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing handler is logged once, with context; its client gets 1011; others carry on."""
    app = trio_ws.App()

    @app.websocket("/boom")
    async def boom(ws: trio_ws.WebSocketConnection) -> None:
        await ws.get_message()
        raise RuntimeError("handler bug")

    app.add_websocket("/ws", trio_ws.echo)
    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url("/ws")) as other:
            async with connect(server.ws_url("/boom")) as ws:
                await ws.send("trigger")
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert ws.protocol.close_rcvd is not None
                assert ws.protocol.close_rcvd.code == 1011
            await other.send("still fine")
            assert await other.recv() == "still fine"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "/boom" in errors[0].getMessage() and "boom" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)


async def test_peer_leaving_mid_send_is_not_an_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """ConnectionClosed escaping a handler (the peer left) is normal: nothing is logged as an error."""
    app = trio_ws.App()
    done = trio.Event()

    @app.websocket("/ws")
    async def push(ws: trio_ws.WebSocketConnection) -> None:
        try:
            while True:
                await ws.send_message("tick")
                await trio.lowlevel.checkpoint()
        finally:
            done.set()

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url()) as ws:
            assert await ws.recv() == "tick"
        await done.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert warnings_logged(caplog.records) == []
    assert server.statistics().open_websockets == 0


async def test_connection_closed_inside_a_handler_nursery_is_not_an_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler whose own nursery fails only with ConnectionClosed (the peer left) logs no error."""
    app = trio_ws.App()
    finished = trio.Event()

    @app.websocket("/ws")
    async def two_tasks(ws: trio_ws.WebSocketConnection) -> None:
        async def pump() -> None:
            while True:
                await ws.send_message(await ws.get_message())

        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(pump)
                inner.start_soon(pump)
        finally:
            finished.set()

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url()) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
        await finished.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert warnings_logged(caplog.records) == []


def _looping_app(received: list[str | bytes], outcome: list[str]) -> trio_ws.App:
    """A handler that reads with ``async for`` and notes how its loop ended."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def loop(ws: trio_ws.WebSocketConnection) -> None:
        try:
            async for message in ws:
                received.append(message)
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            outcome.append(f"raised {exc.reason.code}")
        else:
            outcome.append("ended quietly")

    return app


@pytest.mark.parametrize("code", [1000, 1001, 1005])
async def test_async_for_ends_quietly_when_the_peer_closes_normally(
    nursery: trio.Nursery, memory_listener: MemoryListener, code: int
) -> None:
    """`async for message in ws` yields every message, then ends without an exception when the peer
    closes with 1000, 1001 or no code at all (1005), as the websockets library's loop does."""
    received: list[str | bytes] = []
    outcome: list[str] = []
    await start_memory_server(nursery, _looping_app(received, outcome), memory_listener)
    client = await open_raw_websocket(memory_listener)
    # wsproto sends a Close frame without a code for its NO_STATUS_RCVD (1005) member only.
    close = CloseConnection(code=CloseReason.NO_STATUS_RCVD if code == 1005 else code)
    await client.send(TextMessage(data="one"), BytesMessage(data=b"two"), close)
    answer = await client.next_event()
    # A Close without a code is answered with 1000 (as ASP.NET does); the others with their own.
    assert isinstance(answer, CloseConnection) and answer.code == (1000 if code == 1005 else code)
    await trio.testing.wait_all_tasks_blocked()
    assert received == ["one", b"two"]
    assert outcome == ["ended quietly"]


@pytest.mark.parametrize("code", [1011, 3000, 4000])
async def test_async_for_raises_on_any_other_close(
    nursery: trio.Nursery, memory_listener: MemoryListener, code: int
) -> None:
    """Any other close code comes out of the loop as ConnectionClosed, as get_message() raises it."""
    received: list[str | bytes] = []
    outcome: list[str] = []
    await start_memory_server(nursery, _looping_app(received, outcome), memory_listener)
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="one"), CloseConnection(code=code, reason="why"))
    assert isinstance(await client.next_event(), CloseConnection)
    await trio.testing.wait_all_tasks_blocked()
    assert received == ["one"]
    assert outcome == [f"raised {code}"]


async def test_async_for_raises_when_tcp_drops_without_a_close(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """A peer that drops TCP without a Close frame ends the loop with ConnectionClosed(1006)."""
    received: list[str | bytes] = []
    outcome: list[str] = []
    await start_memory_server(nursery, _looping_app(received, outcome), memory_listener)
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="one"))
    await client.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert received == ["one"]
    assert outcome == ["raised 1006"]


async def test_a_handler_that_lets_the_loop_raise_is_not_an_error(
    nursery: trio.Nursery, memory_listener: MemoryListener, caplog: pytest.LogCaptureFixture
) -> None:
    """ConnectionClosed out of an `async for` loop, left to escape the handler, logs no error."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def loop(ws: trio_ws.WebSocketConnection) -> None:
        async for message in ws:
            await ws.send_message(message)

    await start_memory_server(nursery, app, memory_listener)
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="one"), CloseConnection(code=4000))
    assert isinstance(await client.next_event(), TextMessage)
    assert isinstance(await client.next_event(), CloseConnection)
    await trio.testing.wait_all_tasks_blocked()
    assert warnings_logged(caplog.records) == []


@pytest.mark.parametrize(
    ("message", "frames"),
    [
        (b"b" * FRAGMENT_SIZE, 1),
        (b"b" * (FRAGMENT_SIZE + 1), 2),
        ("a" * (FRAGMENT_SIZE + 1), 2),
        ("\U0001f600" * (FRAGMENT_SIZE // 4), 1),  # exactly FRAGMENT_SIZE bytes of UTF-8
        ("\U0001f600" * (FRAGMENT_SIZE // 4 + 1), 2),
        ("\u00e9" * (FRAGMENT_SIZE // 2 + 1), 3),  # 2-byte characters, counted as 4 to be safe
    ],
    ids=["64k-bytes", "64k+1-bytes", "64k+1-ascii", "64k-utf8", "64k+4-utf8", "64k+2-utf8-2-byte"],
)
async def test_long_messages_go_out_in_fragments_of_at_most_fragment_size_bytes(
    nursery: trio.Nursery, memory_listener: MemoryListener, message: str | bytes, frames: int
) -> None:
    """A message longer than FRAGMENT_SIZE (64 KiB) bytes, counted in UTF-8 for text, goes out in
    fragments of at most that many bytes; the client gets it whole."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def send_one(ws: trio_ws.WebSocketConnection) -> None:
        await ws.send_message(message)
        await ws.get_message()

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    with trio.fail_after(IO_DEADLINE):
        client = await open_raw_websocket(memory_listener)
        sizes = [0]
        parts: list[str | bytes | bytearray] = []
        while True:
            event = await client.next_event()
            assert isinstance(event, TextMessage | BytesMessage)
            parts.append(event.data)
            sizes[-1] += len(event.data.encode() if isinstance(event.data, str) else event.data)
            if event.message_finished:
                break
            if event.frame_finished:
                sizes.append(0)
    assert len(sizes) == frames
    assert max(sizes) <= FRAGMENT_SIZE
    if isinstance(message, str):
        assert "".join(p for p in parts if isinstance(p, str)) == message
    else:
        assert b"".join(p for p in parts if not isinstance(p, str)) == message
