"""Streamed and long-waiting responses, Server-Sent Events, and clients that leave (issue 10, item 3)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import h11
import httpx
import pytest
import trio
import trio.testing

import trio_ws

from ..helpers import (
    IO_DEADLINE,
    MemoryListener,
    alarms_logged,
    open_fd_count,
    start_memory_server,
    start_server,
    task_count,
)


class _Feed:
    """A test's handle on the streams it serves: what each stream's task did, and when."""

    def __init__(self) -> None:
        self.subscribers: list[trio.MemorySendChannel[str | trio_ws.ServerSentEvent]] = []
        self.subscribed = trio.Event()
        self.finished = trio.Event()
        self.poll = trio.Event()
        self.poll_cancelled = trio.Event()
        self.polls = 0
        self.bodies: list[AsyncIterator[bytes]] = []


def _app(feed: _Feed) -> trio_ws.App:
    app = trio_ws.App()

    @app.route("/events")
    async def events(request: trio_ws.Request) -> trio_ws.Response:
        send, receive = trio.open_memory_channel[str | trio_ws.ServerSentEvent](16)
        feed.subscribers.append(send)
        feed.subscribed.set()
        return trio_ws.sse_response(receive, heartbeat=15)

    @app.route("/numbers")
    async def numbers(request: trio_ws.Request) -> trio_ws.Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                for i in range(3):
                    yield f"{i}\n".encode()
                await trio.sleep_forever()
            finally:
                feed.finished.set()

        feed.bodies.append(body())
        return trio_ws.Response(200, feed.bodies[-1])

    @app.route("/poll")
    async def poll(request: trio_ws.Request) -> trio_ws.Response:
        feed.polls += 1
        try:
            await feed.poll.wait()
        except trio.Cancelled:
            feed.poll_cancelled.set()
            raise
        return trio_ws.Response.text(200, "released")

    return app


async def test_sse_events_reach_a_client_framed_and_flushed(nursery: trio.Nursery) -> None:
    """Each event arrives as it is sent, with text/event-stream headers; a multi-line payload becomes
    one data: line per line, named events keep their type and id, and the stream ends cleanly."""
    feed = _Feed()
    server = await start_server(nursery, _app(feed))
    with trio.fail_after(IO_DEADLINE):
        async with (
            httpx.AsyncClient(base_url=server.url) as client,
            client.stream("GET", "/events") as response,
        ):
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["transfer-encoding"] == "chunked"
            await feed.subscribed.wait()
            [send] = feed.subscribers
            lines = response.aiter_lines()
            await send.send("first")
            assert [await anext(lines), await anext(lines)] == ["data: first", ""]
            await send.send(trio_ws.ServerSentEvent("line 1\nline 2\r\nline 3", event="update", id="7"))
            assert [await anext(lines) for _ in range(6)] == [
                "event: update",
                "id: 7",
                "data: line 1",
                "data: line 2",
                "data: line 3",
                "",
            ]
            await send.aclose()  # the producer is done: the response ends cleanly
            assert [line async for line in lines] == []


async def test_sse_sends_a_heartbeat_comment_while_idle(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """With no event for 15 s, a comment line goes out, and again 15 s later."""
    feed = _Feed()
    await start_memory_server(nursery, _app(feed), memory_listener)
    client = await memory_listener.connect()
    await client.send_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await client.receive_some()
    assert head.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in head
    start = trio.current_time()
    assert await client.receive_some() == b"d\r\n: heartbeat\n\n\r\n"
    assert trio.current_time() - start == pytest.approx(15)
    assert await client.receive_some() == b"d\r\n: heartbeat\n\n\r\n"
    assert trio.current_time() - start == pytest.approx(30)


async def test_a_client_that_leaves_mid_stream_frees_its_task_and_socket(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A client reads part of a stream that waits for ever, and hangs up: the body's generator is
    cancelled at once (its finally runs), and the server's tasks and file descriptors are back where
    they were; nothing is logged above INFO."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    feed = _Feed()
    server = await start_server(nursery, _app(feed))
    await trio.testing.wait_all_tasks_blocked()
    tasks, fds = task_count(), open_fd_count()
    with trio.fail_after(IO_DEADLINE):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"GET /numbers HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"2\n" not in received:
            received += await stream.receive_some()
        assert server.statistics().streaming_responses == 1
        await stream.aclose()
        await feed.finished.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().streaming_responses == 0
    assert (task_count(), open_fd_count()) == (tasks, fds)
    assert '"GET /numbers": the client left before the answer was complete' in [
        r.getMessage() for r in caplog.records
    ]
    assert alarms_logged(caplog.records) == []


async def test_a_long_poll_is_answered_when_its_event_comes(nursery: trio.Nursery) -> None:
    """A handler may wait as long as it likes before answering; the client gets the answer when it does."""
    feed = _Feed()
    server = await start_server(nursery, _app(feed))
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client, trio.open_nursery() as inner:
            answers: list[str] = []

            async def poll() -> None:
                answers.append((await client.get("/poll")).text)

            inner.start_soon(poll)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert feed.polls == 1 and answers == []
            feed.poll.set()
    assert answers == ["released\n"]


async def test_a_long_poll_whose_client_leaves_is_cancelled(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """The client hangs up while the handler waits: the handler is cancelled at once, not when it answers."""
    feed = _Feed()
    server = await start_memory_server(nursery, _app(feed), memory_listener)
    client = await memory_listener.connect()
    await client.send_all(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
    await trio.testing.wait_all_tasks_blocked()
    assert feed.polls == 1
    start = trio.current_time()
    await client.aclose()
    await feed.poll_cancelled.wait()
    assert trio.current_time() == start
    del server


async def test_head_of_a_streamed_response_sends_no_body(nursery: trio.Nursery) -> None:
    """HEAD on a streaming route gets the head alone, and the body's generator is closed unread."""
    feed = _Feed()
    server = await start_server(nursery, _app(feed))
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.head("/numbers")
            assert (response.status_code, response.content) == (200, b"")
    [body] = feed.bodies
    assert body.ag_frame is None  # type: ignore[attr-defined]  # closed
    assert not feed.finished.is_set()  # never started, so never ran


async def test_shutdown_ends_streams_cleanly(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """aclose(): an open stream that does not watch for the shutdown ends at once, cleanly (the
    chunked body's last chunk arrives), and the connection closes."""
    feed = _Feed()
    server = await start_memory_server(nursery, _app(feed), memory_listener)
    client = await memory_listener.connect()
    await client.send_all(b"GET /numbers HTTP/1.1\r\nHost: x\r\n\r\n")
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/numbers", headers=[("host", "x")]))
    parser.send(h11.EndOfMessage())
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    async with trio.open_nursery() as inner:
        inner.start_soon(server.aclose)
        body = b""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(bytes(await client.receive_some()))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        assert await client.receive_some() == b""
        await client.aclose()
    assert body == b"0\n1\n2\n"
    assert trio.current_time() == start
    assert feed.finished.is_set()


async def test_a_stream_that_watches_for_shutdown_says_goodbye_first(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A handler waiting in request.wait_closing() sends a last event and ends its stream itself; one
    that watches but never ends is ended by the server after half of shutdown_timeout."""
    app = trio_ws.App()

    @app.route("/polite")
    async def polite(request: trio_ws.Request) -> trio_ws.Response:
        async def body() -> AsyncIterator[bytes]:
            yield trio_ws.ServerSentEvent("hello").encode()
            await request.wait_closing()
            yield trio_ws.ServerSentEvent("reconnect later", event="goodbye").encode()

        return trio_ws.Response(200, body(), "text/event-stream")

    @app.route("/stubborn")
    async def stubborn(request: trio_ws.Request) -> trio_ws.Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"watching\n"
            await request.wait_closing()
            await trio.sleep_forever()
            yield b"never\n"

        return trio_ws.Response(200, body())

    server = await start_memory_server(nursery, app, memory_listener, shutdown_timeout=8)
    polite_client = await memory_listener.connect()
    stubborn_client = await memory_listener.connect()
    for client, path in ((polite_client, b"/polite"), (stubborn_client, b"/stubborn")):
        await client.send_all(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    await trio.testing.wait_all_tasks_blocked()

    async def read_until_closed(stream: trio.abc.Stream) -> tuple[bytes, float]:
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
        return data, trio.current_time()

    start = trio.current_time()
    results: dict[str, tuple[bytes, float]] = {}
    async with trio.open_nursery() as inner:
        inner.start_soon(server.aclose)

        async def read(name: str, stream: trio.abc.Stream) -> None:
            results[name] = await read_until_closed(stream)

        inner.start_soon(read, "polite", polite_client)
        inner.start_soon(read, "stubborn", stubborn_client)
    polite_data, polite_end = results["polite"]
    stubborn_data, stubborn_end = results["stubborn"]
    assert b"event: goodbye\ndata: reconnect later\n\n" in polite_data and polite_data.endswith(b"0\r\n\r\n")
    assert polite_end == start  # at once
    assert b"watching" in stubborn_data and stubborn_data.endswith(b"0\r\n\r\n")
    assert stubborn_end - start == pytest.approx(4)  # half of shutdown_timeout


def test_server_sent_events_are_framed_as_the_standard_says() -> None:
    """Every line of the data gets its own data: line, whatever its line break; fields that can't hold
    a line break refuse one."""
    assert trio_ws.ServerSentEvent("a\r\nb\rc\nd").encode() == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert trio_ws.ServerSentEvent("").encode() == b"data: \n\n"
    assert trio_ws.ServerSentEvent("x", event="e", id="1", retry=500).encode() == (
        b"event: e\nid: 1\nretry: 500\ndata: x\n\n"
    )
    with pytest.raises(ValueError, match="event can't contain a line break"):
        trio_ws.ServerSentEvent("x", event="a\nb")
    with pytest.raises(ValueError, match="NUL"):
        trio_ws.ServerSentEvent("x", id="a\0")


def test_sse_response_headers_replace_the_defaults_they_name() -> None:
    """A header given to sse_response replaces the default of the same name instead of doubling it."""
    _, receive = trio.open_memory_channel[str](1)
    response = trio_ws.sse_response(
        receive, headers=[("Cache-Control", "no-cache, no-store"), ("pragma", "no-cache")]
    )
    assert response.headers == (
        ("x-accel-buffering", "no"),
        ("Cache-Control", "no-cache, no-store"),
        ("pragma", "no-cache"),
    )
    assert response.content_type == "text/event-stream" and response.streamed


async def test_a_client_that_stops_reading_a_stream_is_let_go(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that stops reading a streamed response holds a write at most 10 s: then the
    connection is closed, the body's generator ends, and nothing is logged above INFO."""
    ended = trio.Event()
    app = trio_ws.App()

    @app.route("/firehose")
    async def firehose(request: trio_ws.Request) -> trio_ws.Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x" * 65536
            finally:
                ended.set()

        return trio_ws.Response(200, body())

    server = await start_memory_server(nursery, app, memory_listener)
    # Lockstep streams hold no bytes in flight: a write waits until the client reads, which it never does.
    client = await memory_listener.connect(trio.testing.lockstep_stream_pair)
    await client.send_all(b"GET /firehose HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:  # the head of the answer, then nothing more
        head += await client.receive_some()
    start = trio.current_time()
    await ended.wait()
    assert trio.current_time() - start == pytest.approx(10)
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().streaming_responses == 0
    assert alarms_logged(caplog.records) == []


async def test_a_body_that_fails_mid_stream_is_a_bug_of_its_own_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A streamed body that raises after its first chunk is logged once with its traceback; its
    client sees the response cut short, and the next client is served."""
    app = trio_ws.App()

    @app.route("/broken")
    async def broken(request: trio_ws.Request) -> trio_ws.Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"partial"
            raise RuntimeError("the feed broke")

        return trio_ws.Response(200, body())

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/broken")
            assert (await client.get("/healthz")).text == "ok\n"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["the response body for /broken failed"]
    assert errors[0].exc_info is not None


def test_an_event_can_end_its_lines_with_crlf() -> None:
    """``encode(line_break="\\r\\n")`` ends every line (and the event) with CRLF, as SignalR's
    Server-Sent Events transport writes them; another line break is refused."""
    event = trio_ws.ServerSentEvent("one\ntwo", event="tick")
    assert event.encode(line_break="\r\n") == b"event: tick\r\ndata: one\r\ndata: two\r\n\r\n"
    with pytest.raises(ValueError, match="lines end with"):
        event.encode(line_break="\n\n")
