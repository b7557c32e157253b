"""The close handshake: codes echoed, queued messages answered first, nothing left running."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from websockets.trio.client import connect
from wsproto.events import CloseConnection, TextMessage

import trio_ws

from ..helpers import IO_DEADLINE, MemoryListener, start_memory_server, task_count, warnings_logged
from ..raw import RawClient, client_frame, open_raw_websocket


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
async def test_server_answers_close_with_the_same_code(echo_server: trio_ws.Server, code: int) -> None:
    """The server answers a client's Close frame with the same code and reason."""
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url()) as ws:
            await ws.send("before close")
            assert await ws.recv() == "before close"
            await ws.aclose(code, "bye")
            answer = ws.protocol.close_rcvd
            assert answer is not None
            assert (answer.code, answer.reason) == (code, "bye")


async def test_a_close_without_a_code_is_answered_with_1000(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """A Close frame with no status code (1005, which may not be sent) is answered with 1000, as
    ASP.NET and browsers answer it, not with an empty Close; the handler still learns 1005."""
    seen: list[int] = []

    async def handler(ws: trio_ws.ServerWebSocket) -> None:
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            seen.append(exc.reason.code)

    app = trio_ws.App()
    app.add_websocket("/ws", handler)
    await start_memory_server(nursery, app, memory_listener)
    client = await open_raw_websocket(memory_listener)
    await client.stream.send_all(client_frame(0x8, b""))  # Close, no payload
    answer = await client.next_event()
    assert isinstance(answer, CloseConnection)
    assert answer.code == 1000
    assert await client.next_event() is None  # then the server closes TCP
    assert seen == [1005]


async def test_messages_before_close_are_all_echoed_first(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Messages that arrive in the same burst as the Close are echoed before the Close reply."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener)
    client = await open_raw_websocket(memory_listener)
    burst = [TextMessage(data=f"m{i}") for i in range(50)]
    await client.send(*burst, CloseConnection(code=1000, reason="done"))

    received = []
    while (event := await client.next_event()) is not None:
        received.append(event)
    assert [e.data for e in received[:-1] if isinstance(e, TextMessage)] == [f"m{i}" for i in range(50)]
    assert isinstance(received[-1], CloseConnection)
    assert (received[-1].code, received[-1].reason) == (1000, "done")


async def test_messages_before_close_are_echoed_over_tcp(echo_server: trio_ws.Server) -> None:
    """Same as above over a real socket: every message sent before the Close is answered."""
    with trio.fail_after(IO_DEADLINE):
        stream = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
        client = RawClient(stream)
        await client.handshake()
        await client.send(*[TextMessage(data=f"m{i}") for i in range(200)], CloseConnection(code=1000))
        events = []
        while (event := await client.next_event()) is not None:
            events.append(event)
    texts = [e.data for e in events if isinstance(e, TextMessage)]
    assert texts == [f"m{i}" for i in range(200)]
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1000


async def test_handler_sees_the_close_and_returns(nursery: trio.Nursery) -> None:
    """The handler's get_message() raises ConnectionClosed with the peer's code; then it returns."""
    seen: list[int] = []
    returned = trio.Event()
    app = trio_ws.App()

    @app.websocket("/ws")
    async def handler(ws: trio_ws.WebSocketConnection) -> None:
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            seen.append(exc.reason.code)
        returned.set()

    server: trio_ws.Server = await nursery.start(trio_ws.serve, app, "127.0.0.1", 0)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url()) as ws:
            await ws.send("hi")
            await ws.recv()
            await ws.aclose(4000)
        await returned.wait()
    assert seen == [4000]


async def test_ping_during_our_close_does_not_crash(
    nursery: trio.Nursery, memory_listener: MemoryListener, caplog: pytest.LogCaptureFixture
) -> None:
    """A Ping that arrives after the server sent Close is ignored, not an error (trio-websocket #184)."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def close_at_once(ws: trio_ws.WebSocketConnection) -> None:
        await ws.aclose(1000, "go away")

    await start_memory_server(nursery, app, memory_listener)
    client = await open_raw_websocket(memory_listener)
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and close.code == 1000
    await client.stream.send_all(client_frame(0x9, b"late"))  # a Ping, after the server's Close
    await client.send(close.response())
    assert await client.next_event() is None  # the server closed TCP: the handshake finished
    await trio.testing.wait_all_tasks_blocked()
    assert warnings_logged(caplog.records) == []


async def test_memory_connection_leaves_no_task_behind(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Reader, keep-alive and handler all end with the connection: the task tree returns to its baseline."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener)
    await trio.testing.wait_all_tasks_blocked()
    before = task_count()
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="x"))
    assert isinstance(await client.next_event(), TextMessage)
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == before + 3  # connection task, reader, keep-alive
    await client.send(CloseConnection(code=1000))
    assert isinstance(await client.next_event(), CloseConnection)
    assert await client.next_event() is None
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == before


async def test_keep_alive_during_a_pending_close_is_harmless(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ping due while the Close waits for a slow reply is skipped; the reply, then the Close, go out."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def slow_echo(ws: trio_ws.WebSocketConnection) -> None:
        while True:
            message = await ws.get_message()
            await trio.sleep(5)  # thinking, while the peer's Close waits
            await ws.send_message(message)

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=1, keep_alive_timeout=1)
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="slow"), CloseConnection(code=4001))
    events = []
    while (event := await client.next_event()) is not None:
        events.append(event)
    assert [type(e).__name__ for e in events] == ["TextMessage", "CloseConnection"]
    assert events[1].code == 4001  # type: ignore[attr-defined]
    await trio.testing.wait_all_tasks_blocked()
    assert warnings_logged(caplog.records) == []


async def test_close_timeout_bounds_a_close_stuck_behind_a_reply(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that sends Close while the echo of its message is stuck in send (it reads nothing) is
    dropped exactly close_timeout later: the handler's send fails instead of hanging for ever."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    handler_saw: list[int] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def echo(ws: trio_ws.WebSocketConnection) -> None:
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            handler_saw.append(exc.reason.code)

    server = await start_memory_server(
        nursery, app, memory_listener, close_timeout=5, keep_alive_interval=None
    )
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    # Lockstep streams hold nothing: the echo's send waits until the peer reads, and it never does.
    client = await open_raw_websocket(memory_listener, stream_pair=trio.testing.lockstep_stream_pair)
    await client.send(TextMessage(data="stuck"))
    await client.send(CloseConnection(code=1000, reason="bye"))
    closed_at = trio.current_time()
    await trio.sleep(4.9)
    assert server.statistics().open_websockets == 1
    await trio.sleep(0.2)
    assert server.statistics().open_websockets == 0
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before
    assert handler_saw == [1000]  # the peer's code: its Close did arrive
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("trio_ws.")]
    assert any("the close did not finish within close_timeout (5 s)" in line for line in lines)
    assert any(line.endswith("closed with 1000 (bye); our answer did not go out") for line in lines)
    assert trio.current_time() - closed_at < 5.2
    assert warnings_logged(caplog.records) == []


async def test_close_timeout_bounds_our_close_to_a_peer_that_never_answers(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the handler returns, our Close goes out; a peer that never answers it is dropped
    close_timeout later, and the log says no Close came back."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    app = trio_ws.App()

    @app.websocket("/ws")
    async def leave_at_once(ws: trio_ws.WebSocketConnection) -> None:
        await ws.aclose(4000, "done here")

    await start_memory_server(nursery, app, memory_listener, close_timeout=3, keep_alive_interval=None)
    client = await open_raw_websocket(memory_listener)
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (4000, "done here")
    start = trio.current_time()
    assert await client.next_event() is None  # TCP closed, without an answer from us
    assert trio.current_time() - start == 3
    await trio.testing.wait_all_tasks_blocked()
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_ws.connection"]
    assert lines[-1].endswith("closed with 4000 (done here); no Close came back")


async def test_a_close_waiting_for_a_slow_handler_is_answered_at_close_timeout(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A handler too slow to reply within close_timeout does not keep the peer's Close waiting:
    it is answered then (the socket is free), TCP is closed, and the late reply is refused."""
    late_reply: list[str] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def slow_echo(ws: trio_ws.WebSocketConnection) -> None:
        message = await ws.get_message()
        await trio.sleep(20)
        try:
            await ws.send_message(message)
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            late_reply.append(f"refused: {exc.reason.code}")

    await start_memory_server(nursery, app, memory_listener, close_timeout=5, keep_alive_interval=None)
    client = await open_raw_websocket(memory_listener)
    await client.send(TextMessage(data="slow"), CloseConnection(code=4002, reason="bye"))
    start = trio.current_time()
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (4002, "bye")
    assert trio.current_time() - start == 5
    assert await client.next_event() is None
    await trio.sleep(20)
    assert late_reply == ["refused: 4002"]
