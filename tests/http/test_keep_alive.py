"""Persistent HTTP/1.1 connections: one connection, request after request (issue 10, item 1)."""

from __future__ import annotations

import logging

import h11
import httpx
import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

import trio_ws

from ..helpers import IO_DEADLINE, MemoryListener, alarms_logged, start_memory_server, start_server
from ..raw import HttpClient, upgrade_request


def _app() -> trio_ws.App:
    """/who answers with the client's port, so a test can tell connections apart; /echo echoes a POST."""
    app = trio_ws.echo_app()

    @app.route("/who")
    async def who(request: trio_ws.Request) -> trio_ws.Response:
        assert request.client is not None
        return trio_ws.Response.text(200, str(request.client[1]))

    @app.route("/echo", methods=["POST"])
    async def echo(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response(200, request.body, "application/octet-stream")

    return app


def _header(response: h11.Response, name: bytes) -> bytes | None:
    return next((value for key, value in response.headers if key == name), None)


async def test_one_connection_serves_many_requests(nursery: trio.Nursery) -> None:
    """httpx sends ten requests, GET and POST, over one kept-alive connection."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            ports = set()
            for i in range(5):
                response = await client.get("/who")
                assert response.status_code == 200 and "connection" not in response.headers
                ports.add(response.text)
                echoed = await client.post("/echo", content=f"body {i}".encode())
                assert echoed.content == f"body {i}".encode()
    assert len(ports) == 1


async def test_pipelined_requests_are_answered_in_order(nursery: trio.Nursery) -> None:
    """Three requests sent in one write get their three answers, in order, on the same connection."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            raw = (
                b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            await stream.send_all(raw)
            client = HttpClient(stream)
            bodies = []
            for _ in range(3):
                client.conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                client.conn.send(h11.EndOfMessage())
                head, body = await client.response()
                assert head.status_code == 200
                bodies.append(body)
                client.next_cycle()
    assert bodies[1:] == [b"second", b"ok\n"]
    assert bodies[0].strip().isdigit()


async def test_a_request_pipelined_while_a_handler_works_is_kept_for_its_turn(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A second request that arrives while the first one's handler waits (read by the departure
    watcher) is answered after the first, in order."""
    release = trio.Event()
    app = _app()

    @app.route("/wait")
    async def wait(request: trio_ws.Request) -> trio_ws.Response:
        await release.wait()
        return trio_ws.Response.text(200, "first")

    await start_memory_server(nursery, app, memory_listener)
    client = HttpClient(await memory_listener.connect())
    await client.request("GET", "/wait")
    await trio.testing.wait_all_tasks_blocked()
    await client.stream.send_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond")
    await trio.testing.wait_all_tasks_blocked()
    release.set()
    assert (await client.response())[1] == b"first\n"
    client.next_cycle()
    client.conn.send(
        h11.Request(method="POST", target="/echo", headers=[("host", "x"), ("content-length", "6")])
    )
    client.conn.send(h11.Data(data=b"second"))
    client.conn.send(h11.EndOfMessage())
    assert (await client.response())[1] == b"second"


async def test_an_idle_keep_alive_connection_is_closed_after_http_idle_timeout(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """Between requests a connection may wait http_idle_timeout; a request before then is served."""
    await start_memory_server(nursery, _app(), memory_listener, http_idle_timeout=5)
    client = HttpClient(await memory_listener.connect())
    await client.request("GET", "/healthz")
    assert (await client.response())[0].status_code == 200
    client.next_cycle()
    await trio.sleep(4.9)
    await client.request("GET", "/healthz")
    assert (await client.response())[0].status_code == 200
    start = trio.current_time()
    assert await client.stream.receive_some() == b""
    assert trio.current_time() - start == pytest.approx(5)


@pytest.mark.parametrize(
    ("version", "headers"), [(b"1.1", [("connection", "close")]), (b"1.0", [])], ids=["close", "HTTP/1.0"]
)
async def test_connection_close_and_http_1_0_end_the_connection(
    nursery: trio.Nursery, version: bytes, headers: list[tuple[str, str]]
) -> None:
    """A request with Connection: close, or an HTTP/1.0 one, gets its answer and then EOF."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            lines = [f"GET /who HTTP/{version.decode()}", "Host: x", *(f"{k}: {v}" for k, v in headers)]
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            client = HttpClient(stream)  # its parser, told of a request, reads the answer
            client.conn.send(h11.Request(method="GET", target="/who", headers=[("host", "x")]))
            client.conn.send(h11.EndOfMessage())
            head, _ = await client.response()
            assert head.status_code == 200
            assert await stream.receive_some() == b""


async def test_max_requests_per_connection_closes_after_the_last(nursery: trio.Nursery) -> None:
    """With max_requests_per_connection=2 the second answer says Connection: close, and the server closes."""
    server = await start_server(nursery, _app(), max_requests_per_connection=2)
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            client = HttpClient(stream)
            await client.request("GET", "/who")
            first, _ = await client.response()
            assert _header(first, b"connection") is None
            client.next_cycle()
            await client.request("GET", "/who")
            second, _ = await client.response()
            assert _header(second, b"connection") == b"close"
            assert await stream.receive_some() == b""


async def test_a_websocket_upgrade_may_follow_plain_requests(nursery: trio.Nursery) -> None:
    """GET /healthz, then an upgrade to /ws on the same connection: 101 and a working echo."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            client = HttpClient(stream)
            await client.request("GET", "/healthz")
            assert (await client.response())[1] == b"ok\n"
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host="127.0.0.1", target="/ws")))
            events: list[object] = []
            while not any(isinstance(e, TextMessage) for e in events):
                ws.receive_data(bytes(await stream.receive_some()))
                for event in ws.events():
                    events.append(event)
                    if isinstance(event, AcceptConnection):
                        await stream.send_all(ws.send(TextMessage(data="after HTTP")))
    assert isinstance(events[0], AcceptConnection)
    assert events[-1] == TextMessage(data="after HTTP")


async def test_shutdown_closes_idle_connections_at_once_and_lets_requests_in_flight_finish(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aclose(): a kept-alive connection between requests is closed at once; a request in flight
    gets its whole answer (with Connection: close); a new connection's first request gets 503."""
    release = trio.Event()
    app = _app()

    @app.route("/slow")
    async def slow(request: trio_ws.Request) -> trio_ws.Response:
        await release.wait()
        return trio_ws.Response.text(200, "finished")

    server = await start_memory_server(nursery, app, memory_listener, shutdown_timeout=10)
    idle = HttpClient(await memory_listener.connect())
    await idle.request("GET", "/healthz")
    await idle.response()
    busy = HttpClient(await memory_listener.connect())
    await busy.request("GET", "/slow")
    fresh = await memory_listener.connect()
    await trio.testing.wait_all_tasks_blocked()

    start = trio.current_time()
    async with trio.open_nursery() as inner:
        inner.start_soon(server.aclose)
        assert await idle.stream.receive_some() == b""
        assert trio.current_time() == start  # at once
        await fresh.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await fresh.receive_some()).startswith(b"HTTP/1.1 503 ")
        await trio.sleep(1)
        release.set()
        head, body = await busy.response()
        assert (head.status_code, body, _header(head, b"connection")) == (200, b"finished\n", b"close")
        await busy.stream.aclose()  # as a client does after Connection: close
    assert trio.current_time() - start == pytest.approx(1)
    assert alarms_logged(caplog.records) == []


async def test_a_404_keeps_the_connection_but_a_refused_body_closes_it(nursery: trio.Nursery) -> None:
    """An answer that needs no body (404) leaves the connection usable; one given before a body was
    read (a POST to a missing path) closes it, so the unread body is never taken for a request."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            client = HttpClient(stream)
            await client.request("GET", "/nowhere")
            assert (await client.response())[0].status_code == 404
            client.next_cycle()
            await client.request("POST", "/nowhere", body=b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _ = await client.response()
            assert (head.status_code, _header(head, b"connection")) == (404, b"close")
            assert await stream.receive_some() == b""


async def test_upgrade_during_keep_alive_logs_no_alarm(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Many requests and an upgrade on one connection, then the client leaves: nothing above INFO."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            for _ in range(3):
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await stream.send_all(upgrade_request())
            received = b""
            while b"101 Switching" not in received:
                received += await stream.receive_some()
            assert received.count(b"HTTP/1.1 200 OK") == 3
    assert alarms_logged(caplog.records) == []
