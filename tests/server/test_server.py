"""serve() and Server: start-up, TLS, and graceful shutdown."""

from __future__ import annotations

import logging
import resource
import ssl
import subprocess
import sys
from functools import partial

import pytest
import trio
import trio.testing
import trustme
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.trio.client import connect
from wsproto.events import CloseConnection

import trio_ws
from trio_ws._server.admission import make_room_for

from ..helpers import IO_DEADLINE, MemoryListener, start_memory_server, start_server, task_count
from ..raw import open_raw_websocket, parse_response


async def test_start_reports_the_real_port(echo_server: trio_ws.Server) -> None:
    """nursery.start(serve, ..., port=0) hands back a Server that knows its real port and URLs."""
    assert echo_server.port != 0
    assert echo_server.url == f"http://127.0.0.1:{echo_server.port}/"
    assert echo_server.ws_url() == f"ws://127.0.0.1:{echo_server.port}/ws"
    assert not echo_server.secure


async def test_port_in_use_raises_oserror(echo_server: trio_ws.Server, nursery: trio.Nursery) -> None:
    """Binding a port that is taken fails at start-up with OSError, from nursery.start()."""
    with pytest.raises(OSError, match="in use"):
        await nursery.start(trio_ws.serve, trio_ws.echo_app(), "127.0.0.1", echo_server.port)


async def test_tls_serves_https_and_wss(nursery: trio.Nursery) -> None:
    """With an ssl_context the same port speaks https for the page and wss for the echo."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    server: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve, trio_ws.echo_app(), "127.0.0.1", 0, ssl_context=server_context)
    )
    assert server.secure and server.url.startswith("https://")
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), ssl=client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"
        stream = await trio.open_ssl_over_tcp_stream(
            "127.0.0.1", server.port, ssl_context=client_context, https_compatible=True
        )
        async with stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            raw = b""
            while chunk := await stream.receive_some():
                raw += chunk
    assert parse_response(raw)[0] == 200


async def test_graceful_shutdown_sends_1001_to_every_client(nursery: trio.Nursery) -> None:
    """Server.aclose() sends close 1001 to each open WebSocket, waits for them, and serve() returns."""
    serve_returned = trio.Event()

    async def run_server(task_status: trio.TaskStatus[trio_ws.Server]) -> None:
        await trio_ws.serve(trio_ws.echo_app(), "127.0.0.1", 0, task_status=task_status)
        serve_returned.set()

    server: trio_ws.Server = await nursery.start(run_server)
    codes: list[int] = []

    async def client(ready: trio.Event) -> None:
        async with connect(server.ws_url()) as ws:
            await ws.send("hello")
            await ws.recv()
            ready.set()
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            assert ws.protocol.close_rcvd is not None
            codes.append(ws.protocol.close_rcvd.code)

    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as clients:
            for _ in range(3):
                ready = trio.Event()
                clients.start_soon(client, ready)
                await ready.wait()
            assert server.statistics().open_websockets == 3
            async with trio.open_nursery() as closers:  # a second call waits for the first
                closers.start_soon(server.aclose)
                closers.start_soon(server.aclose)
        await serve_returned.wait()
    assert codes == [1001, 1001, 1001]
    assert server.statistics().closing
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", server.port)


async def test_shutdown_cancels_handlers_after_the_grace_period(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A handler that ignores the close is cancelled once shutdown_timeout is over, and serve() ends."""
    cancelled = trio.Event()
    app = trio_ws.App()

    @app.websocket("/ws")
    async def stubborn(ws: trio_ws.WebSocketConnection) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    server = await start_memory_server(nursery, app, memory_listener, shutdown_timeout=4)
    client = await open_raw_websocket(memory_listener)
    # A second connection has been accepted but has not sent its request yet.
    late = await memory_listener.connect()
    await trio.testing.wait_all_tasks_blocked()

    start = trio.current_time()
    async with trio.open_nursery() as inner:
        inner.start_soon(server.aclose)
        close = await client.next_event()
        assert close is not None and close.code == 1001  # type: ignore[attr-defined]
        await client.send(close.response())  # type: ignore[attr-defined]
        # Requests that arrive during the grace period are told the server is going away.
        await late.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk := await late.receive_some():
            raw += chunk
        assert parse_response(raw)[:1] == (503,)
    assert trio.current_time() - start == 4
    assert cancelled.is_set()
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before


async def test_cancelling_serve_is_a_hard_stop() -> None:
    """Cancelling serve() ends every connection at once: the client sees TCP drop (1006)."""
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as server_nursery:
            server = await start_server(server_nursery, trio_ws.echo_app())
            async with connect(server.ws_url()) as ws:
                await ws.send("x")
                await ws.recv()
                server_nursery.cancel_scope.cancel()
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert ws.protocol.close_rcvd is None
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before


async def test_urls_use_the_host_name_asked_for(nursery: trio.Nursery) -> None:
    """serve(app, "localhost", 0) reports http://localhost:PORT/, not the address it resolved to."""
    server: trio_ws.Server = await nursery.start(trio_ws.serve, trio_ws.echo_app(), "localhost", 0)
    assert server.url == f"http://localhost:{server.port}/"
    assert server.ws_url("/chat") == f"ws://localhost:{server.port}/chat"


async def test_a_handler_that_ignores_cancellation_holds_only_itself(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A shielded handler can't be cancelled: aclose() still returns at grace + 1 s, logs it, and
    the other connections are closed; serve() returns when that handler finally ends."""
    release = trio.Event()
    serve_returned = trio.Event()
    app = trio_ws.App()

    @app.websocket("/shielded")
    async def shielded(ws: trio_ws.WebSocketConnection) -> None:
        with trio.CancelScope(shield=True):
            await release.wait()

    app.add_websocket("/ws", trio_ws.echo)

    async def run_server(task_status: trio.TaskStatus[trio_ws.Server]) -> None:
        options = trio_ws.Options(shutdown_timeout=4)
        await trio_ws.serve_listeners(app, [memory_listener], options=options, task_status=task_status)
        serve_returned.set()

    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    server: trio_ws.Server = await nursery.start(run_server)
    stuck = await open_raw_websocket(memory_listener, "/shielded")
    polite = await open_raw_websocket(memory_listener, "/ws")
    await trio.testing.wait_all_tasks_blocked()

    start = trio.current_time()
    with trio.fail_after(60):  # clock time: without the margin aclose() would wait for ever
        async with trio.open_nursery() as inner:
            inner.start_soon(server.aclose)
            close = await polite.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1001
            await polite.send(close.response())
            assert await polite.next_event() is None  # the echo connection is over
    assert trio.current_time() - start == 4 + 1
    assert not serve_returned.is_set()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "ignore cancellation" in errors[0]
    await server.aclose()  # a second call returns at once
    assert trio.current_time() - start == 4 + 1

    release.set()
    await serve_returned.wait()
    goodbye = await stuck.next_event()  # it was told, though its handler could not listen
    assert isinstance(goodbye, CloseConnection) and goodbye.code == 1001
    assert await stuck.next_event() is None  # and TCP closed with its task
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before


def test_the_open_file_limit_is_raised_to_fit_both_connection_caps(caplog: pytest.LogCaptureFixture) -> None:
    """A soft open-file limit too low for max_connections plus max_idle_connections is raised (up to
    the hard limit), and said so."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1564:
        pytest.skip(f"the hard open-file limit ({hard}) is too low to test raising the soft one")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        make_room_for(1000, 500)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1000 + 500 + 64
        make_room_for(None, 500)
        make_room_for(10, None)
        make_room_for(10, 10)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 1000 + 500 + 64  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert [r.getMessage() for r in caplog.records] == [
        "raised the open-file limit from 256 to 1564 for max_connections (1000) "
        "and max_idle_connections (500)"
    ]


def test_a_hard_open_file_limit_too_low_is_a_warning() -> None:
    """If even the hard limit can't hold both connection caps, a warning says what to change."""
    script = (
        "import logging, resource; from trio_ws._server.admission import make_room_for;"
        "logging.basicConfig(format='%(levelname)s %(message)s');"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300)); make_room_for(1000, 1000);"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "(300, 300)"
    assert result.stderr.strip() == (
        "WARNING max_connections (1000) and max_idle_connections (1000) do not fit under this "
        "process's limit of 300 open files: raise the hard limit (ulimit -Hn 2064) or lower them"
    )


async def test_shutdown_counts_every_connection_it_cancels(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The grace-period warning counts every connection it cancels, plain HTTP ones included, and
    says how many of them are WebSockets."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def stubborn(ws: trio_ws.WebSocketConnection) -> None:
        await trio.sleep_forever()

    server = await start_memory_server(nursery, app, memory_listener, shutdown_timeout=2)
    client = await open_raw_websocket(memory_listener)
    idle = await memory_listener.connect()  # accepted, but its request head never comes
    await trio.testing.wait_all_tasks_blocked()
    async with trio.open_nursery() as inner:
        inner.start_soon(server.aclose)
        close = await client.next_event()
        assert isinstance(close, CloseConnection) and close.code == 1001
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "shutdown grace period of 2 s is over; cancelling 2 connection(s), 1 of them WebSockets"
    ]
    await idle.aclose()


async def test_a_peer_that_never_answers_our_1001_is_logged_as_such(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On shutdown, a peer that never answers the server's Close 1001 is logged with 1001 and
    'no Close came back', not as a normal close."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    server = await start_memory_server(
        nursery, trio_ws.echo_app(), memory_listener, close_timeout=2, shutdown_timeout=5
    )
    client = await open_raw_websocket(memory_listener)
    await server.aclose()
    close = await client.next_event()
    assert isinstance(close, CloseConnection) and close.code == 1001
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_ws.connection"]
    assert lines[-1].endswith(": closed with 1001 (server shutting down); no Close came back")
