"""Whatever app code raises fails its own request or connection, never the server.

Each app here fails in a way ``except Exception`` does not catch: a
``BaseException`` of the app's own, or the ``BaseExceptionGroup[GeneratorExit]``
that ``aclose()`` raises for a generator that yields inside a nursery. The
server must log it once, with its traceback, end that request or connection
alone, and serve the next client.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import open_websocket_url

import trio_ws
from trio_ws.signalr import Hub, map_hub
from trio_ws.signalr._protocol.messages import (
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    StreamInvocation,
    StreamItem,
)

from ..helpers import IO_DEADLINE, close_of, start_server
from ..processes import LogLines, running_cli
from ..signalr.helpers import open_hub_websocket


class AppEscape(BaseException):
    """What an app may raise that is not an ``Exception`` (and is not a stop)."""


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def _forbidden_yield_app() -> trio_ws.App:
    """``/forbidden-yield`` streams a body that yields inside a nursery, faster than anyone reads."""
    app = trio_ws.App()
    app.add_websocket("/ws", trio_ws.echo)

    @app.route("/forbidden-yield")
    async def forbidden_yield(request: trio_ws.Request) -> trio_ws.Response:
        async def body() -> AsyncIterator[bytes]:
            async with trio.open_nursery():
                while True:
                    yield b"tick\n" * 16384  # trio forbids this: a yield inside a nursery

        return trio_ws.Response(200, body())

    return app


CLI_APP = _forbidden_yield_app()
"""For ``python -m trio_ws tests.app.test_app_failures:CLI_APP``."""


def test_python_m_trio_ws_outlives_a_client_leaving_such_a_stream() -> None:
    """As a user meets it: a client reads part of the stream and leaves; the process logs the body's
    failure and goes on serving (it exited with status 1 before)."""
    with running_cli("tests.app.test_app_failures:CLI_APP") as (proc, url):
        assert proc.stderr is not None
        log = LogLines(proc.stderr)
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), timeout=IO_DEADLINE) as sock:
            sock.sendall(b"GET /forbidden-yield HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        log.wait_for(lambda line: "the response body for /forbidden-yield failed" in line)
        assert httpx.get(f"{url}healthz", timeout=IO_DEADLINE).text == "ok\n"
        assert proc.poll() is None


async def test_a_client_leaving_a_body_that_yields_inside_a_nursery_fails_only_that_request(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The body yields inside ``trio.open_nursery()`` faster than the client reads; the client reads a
    little and leaves while the server is sending, so the server's ``aclose()`` raises
    ``BaseExceptionGroup[GeneratorExit]``. One traceback is logged, and the server goes on serving."""
    app = trio_ws.App()
    closed = trio.Event()

    @app.route("/forbidden-yield")
    async def forbidden_yield(request: trio_ws.Request) -> trio_ws.Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                async with trio.open_nursery():
                    while True:
                        yield b"tick\n" * 16384  # trio forbids this: a yield inside a nursery
            finally:
                closed.set()

        return trio_ws.Response(200, body())

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"GET /forbidden-yield HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"tick" not in received:
            received += await stream.receive_some()
        await stream.aclose()  # mid-stream
        await closed.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().streaming_responses == 0
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).text == "ok\n"
    errors = _errors(caplog)
    assert [r.getMessage() for r in errors] == ["the response body for /forbidden-yield failed"]
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], BaseExceptionGroup)


async def test_handlers_and_hooks_that_raise_base_exceptions_get_500(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """An HTTP handler, an auth hook and a ``before_upgrade`` hook that raise a ``BaseException`` (or
    a group of one) are answered 500 with one traceback each; the server serves on."""

    async def failing_auth(request: trio_ws.Request) -> trio_ws.Identity:
        raise AppEscape("auth")

    async def failing_before_upgrade(request: trio_ws.Request) -> trio_ws.Response | None:
        raise BaseExceptionGroup("before_upgrade", [GeneratorExit()])

    async def unused(ws: trio_ws.WebSocketConnection) -> None:
        raise AssertionError("never upgraded")  # pragma: no cover

    app = trio_ws.App()

    @app.route("/handler")
    async def handler(request: trio_ws.Request) -> trio_ws.Response:
        raise AppEscape("handler")

    @app.route("/guarded", auth=failing_auth)
    async def guarded(request: trio_ws.Request) -> trio_ws.Response:
        raise AssertionError("never reached")  # pragma: no cover

    app.add_websocket("/ws-hooked", unused, before_upgrade=failing_before_upgrade)

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/handler")).status_code == 500
            assert (await client.get("/guarded")).status_code == 500
            upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
            upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
            assert (await client.get("/ws-hooked", headers=upgrade)).status_code == 500
            assert (await client.get("/healthz")).text == "ok\n"
    logged = [r.getMessage() for r in _errors(caplog)]
    assert len(logged) == 3
    assert logged[0] == "HTTP handler for /handler failed"
    assert logged[1].startswith("auth hook ") and logged[1].endswith("failing_auth failed on /guarded")
    assert logged[2].startswith("before_upgrade hook ")
    assert logged[2].endswith("failing_before_upgrade failed on /ws-hooked")
    assert all(r.exc_info is not None for r in _errors(caplog))


async def test_a_websocket_handler_that_raises_a_base_exception_closes_only_its_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A WebSocket handler that raises a ``BaseExceptionGroup`` closes its connection with 1011 and
    logs one traceback; another connection is served."""
    app = trio_ws.App()

    async def echo_or_escape(ws: trio_ws.WebSocketConnection) -> None:
        message = await ws.get_message()
        if message == "escape":
            async with trio.open_nursery() as inner:

                async def escape() -> None:
                    raise AppEscape("from a task of the handler")

                inner.start_soon(escape)
        await ws.send_message(message)

    app.add_websocket("/ws", echo_or_escape)
    server = await start_server(nursery, app)
    url = f"ws://127.0.0.1:{server.port}/ws"
    with trio.fail_after(IO_DEADLINE):
        async with open_websocket_url(url) as failing:
            await failing.send_message("escape")
            with pytest.raises(trio_ws.ConnectionClosed) as closed:
                await failing.get_message()
            assert close_of(closed.value) == (1011, "internal error")
        async with open_websocket_url(url) as other:
            await other.send_message("still here")
            assert await other.get_message() == "still here"
    errors = _errors(caplog)
    assert len(errors) == 1
    assert "echo_or_escape for /ws failed on connection" in errors[0].getMessage()
    assert isinstance(errors[0].exc_info and errors[0].exc_info[1], BaseExceptionGroup)


_UNEXPECTED = "An unexpected error occurred"


class Fragile(Hub):
    """A hub whose code fails in ways ``except Exception`` misses."""

    def __init__(self) -> None:
        self.fail_on_connected = False
        self.stream_closed = trio.Event()

    async def on_connected(self) -> None:
        if self.fail_on_connected:
            raise AppEscape("on_connected")

    async def echo(self, text: str) -> str:
        return text

    async def escape(self) -> None:
        raise BaseExceptionGroup("hub method", [GeneratorExit()])

    async def ticks(self) -> AsyncIterator[int]:
        try:
            async with trio.open_nursery():
                while True:
                    yield 1  # trio forbids this: a yield inside a nursery
        finally:
            self.stream_closed.set()


async def test_hub_code_that_raises_base_exceptions_fails_only_its_call_or_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Over a real socket: a hub method raising ``BaseExceptionGroup[GeneratorExit]`` gets an error
    completion; a stream that yields inside a nursery, cancelled by the client, ends with a
    Completion; ``on_connected`` raising a ``BaseException`` closes that connection with an error.
    Each logs one traceback, and the connection (or the next one) is served."""
    app = trio_ws.App()
    hub = Fragile()
    map_hub(app, "/hub", hub)
    server = await start_server(nursery, app)
    async with httpx.AsyncClient(base_url=server.url) as http:

        async def hub_url() -> str:
            negotiated = (await http.post("/hub/negotiate?negotiateVersion=1")).json()
            return server.ws_url(f"/hub?id={negotiated['connectionToken']}")

        with trio.fail_after(IO_DEADLINE):
            async with open_hub_websocket(await hub_url()) as client:
                await client.send(Invocation("Escape", [], "1"))
                failed = await client.receive()
                assert failed == Completion(
                    "1", error="An unexpected error occurred invoking 'Escape' on the server."
                )
                await client.send(StreamInvocation("2", "Ticks", []))
                assert isinstance(await client.receive(), StreamItem)
                await client.send(CancelInvocation("2"))
                while not isinstance(ended := await client.receive(), Completion):
                    pass
                assert ended.invocation_id == "2"
                await hub.stream_closed.wait()
                assert await client.call("Echo", "still here") == "still here"
            hub.fail_on_connected = True
            async with open_hub_websocket(await hub_url()) as refused:
                assert await refused.receive() == Close(
                    "Connection closed with an error.", allow_reconnect=False
                )
            hub.fail_on_connected = False
            async with open_hub_websocket(await hub_url()) as other:
                assert await other.call("Echo", "served") == "served"
    logged = [r.getMessage() for r in _errors(caplog)]
    assert logged[0].startswith("hub method Escape failed on connection ")
    assert logged[1].startswith("hub method Ticks failed on connection ")
    assert logged[2].endswith(": on_connected failed")
    assert len(logged) == 3
    assert all(r.exc_info is not None for r in _errors(caplog))
