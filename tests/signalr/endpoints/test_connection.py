"""Connection handlers (``map_connection``) on real sockets: raw bytes over every transport,
negotiate versions 0 and 1, auth, limits, timeouts, the handler's end, and shutdown.

The clients are independent of trio_ws: httpx for negotiate, Server-Sent Events and Long
Polling, and trio-websocket for WebSockets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, open_websocket_url

import trio_ws
from trio_ws.signalr import Connection, HttpTransportType, HubOptions, map_connection

from ...helpers import IO_DEADLINE, alarms_logged, start_server
from ..http_helpers import HttpHubClient


async def echo(connection: Connection) -> None:
    async for data in connection:
        await connection.send(data)


@asynccontextmanager
async def served(
    handler: Any = echo, *, path: str = "/echo", **mapping: Any
) -> AsyncIterator[tuple[trio_ws.Server, str]]:
    """``handler`` mapped at ``path`` on a real socket: the server and the endpoint's URL."""
    app = trio_ws.App()
    map_connection(app, path, handler, **mapping)
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, app)
        yield server, f"http://127.0.0.1:{server.port}{path}"
        nursery.cancel_scope.cancel()


async def negotiate(http: httpx.AsyncClient, url: str, version: int = 1, **kwargs: Any) -> dict[str, Any]:
    answer = await http.post(f"{url}/negotiate?negotiateVersion={version}", **kwargs)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def token_of(body: dict[str, Any]) -> str:
    token: str = body.get("connectionToken", body["connectionId"])
    return token


# -- every transport ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1])
async def test_echo_over_websockets_after_negotiate(version: int) -> None:
    with trio.fail_after(IO_DEADLINE):
        async with served() as (_, url), httpx.AsyncClient() as http:
            body = await negotiate(http, url, version)
            assert body["negotiateVersion"] == version
            assert ("connectionToken" in body) == (version == 1)
            assert [t["transport"] for t in body["availableTransports"]] == [
                "WebSockets",
                "ServerSentEvents",
                "LongPolling",
            ]
            ws_url = url.replace("http", "ws", 1) + f"?id={token_of(body)}"
            async with open_websocket_url(ws_url) as ws:
                await ws.send_message("Hello World!")
                assert await ws.get_message() == "Hello World!"
                await ws.send_message("你好".encode())  # a Binary frame: its bytes come back as text
                assert await ws.get_message() == "你好"


async def test_echo_over_a_websocket_without_negotiate_closes_with_1000() -> None:
    """skipNegotiation, and a plain WebSocket client: no id, a connection of its own."""
    with trio.fail_after(IO_DEADLINE):
        async with served() as (_, url):
            async with open_websocket_url(url.replace("http", "ws", 1)) as ws:
                await ws.send_message("message")
                assert await ws.get_message() == "message"
            assert ws.closed is not None and ws.closed.code == 1000


async def test_echo_over_server_sent_events() -> None:
    with trio.fail_after(IO_DEADLINE):
        async with served() as (_, url), httpx.AsyncClient() as http:
            token = token_of(await negotiate(http, url))
            headers = {"accept": "text/event-stream"}
            async with http.stream("GET", f"{url}?id={token}", headers=headers) as events:
                assert events.status_code == 200
                assert events.headers["content-type"] == "text/event-stream"
                chunks = events.aiter_raw()
                assert await anext(chunks) == b":\r\n"
                posted = await http.post(f"{url}?id={token}", content=b"Hello World!")
                assert posted.status_code == 200
                assert await anext(chunks) == b"data: Hello World!\r\n\r\n"


@pytest.mark.parametrize("version", [0, 1])
async def test_echo_over_long_polling_then_delete(version: int) -> None:
    with trio.fail_after(IO_DEADLINE):
        async with served() as (_, url), httpx.AsyncClient() as http:
            target = f"{url}?id={token_of(await negotiate(http, url, version))}"
            first = await http.get(target)
            assert (first.status_code, first.content) == (200, b"")  # the first poll answers at once
            assert (await http.post(target, content=b"\x00\xffbinary")).status_code == 200
            echoed = await http.get(target)
            assert (echoed.status_code, echoed.content) == (200, b"\x00\xffbinary")
            assert (await http.delete(target)).status_code == 202
            assert (await http.get(target)).status_code == 404


async def test_the_refusals_are_a_hubs() -> None:
    """No id 400, unknown 404, a transport not allowed 404, POST to a WebSocket's connection 405."""
    with trio.fail_after(IO_DEADLINE):
        polls_only = [HttpTransportType.LONG_POLLING]
        async with served(transports=polls_only) as (_, url), httpx.AsyncClient() as http:
            body = await negotiate(http, url)
            assert [t["transport"] for t in body["availableTransports"]] == ["LongPolling"]
            assert (await http.get(url)).status_code == 400
            assert (await http.get(f"{url}?id=nope")).status_code == 404
            sse = await http.get(f"{url}?id={token_of(body)}", headers={"accept": "text/event-stream"})
            assert (sse.status_code, sse.text) == (
                404,
                "ServerSentEvents transport not supported by this end point type\n",
            )


# -- what the handler sees and does ---------------------------------------------------------------


async def test_the_handler_sees_its_connection() -> None:
    seen: list[tuple[str, str, str | None, str | None]] = []

    async def handler(connection: Connection) -> None:
        request = connection.request
        assert request is not None
        seen.append(
            (connection.connection_id, connection.transport, connection.user_id, request.header("x-app"))
        )
        await connection.send("seen")

    with trio.fail_after(IO_DEADLINE):
        async with served(handler) as (_, url), httpx.AsyncClient() as http:
            body = await negotiate(http, url)
            target = f"{url}?id={token_of(body)}"
            assert (await http.get(target, headers={"x-app": "1"})).status_code == 200
            reply = await http.get(target)
            assert reply.content == b"seen"
            assert (await http.get(target)).status_code == 204  # the handler returned: the end
    assert seen == [(body["connectionId"], "LongPolling", None, "1")]


async def test_a_returning_handler_closes_the_websocket_with_1000_after_its_last_words() -> None:
    async def handler(connection: Connection) -> None:
        await connection.send("first")
        await connection.send("last")

    with trio.fail_after(IO_DEADLINE):
        async with served(handler) as (_, url), open_websocket_url(url.replace("http", "ws", 1)) as ws:
            received = ""
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received += str(await ws.get_message())
            assert received == "firstlast"  # joined or not, in order
            assert closed.value.reason is not None and closed.value.reason.code == 1000


async def test_binary_frames_when_the_handler_asks_and_text_only_over_sse() -> None:
    outcomes: list[str] = []

    async def handler(connection: Connection) -> None:
        try:
            connection.binary = True
        except ValueError as exc:
            outcomes.append(f"binary refused: {exc}")
        try:
            await connection.send(b"\xff\x00")
        except ValueError:
            outcomes.append("bytes refused")
        await connection.send("text")
        await connection.receive()

    with trio.fail_after(IO_DEADLINE):
        async with served(handler) as (_, url), httpx.AsyncClient() as http:
            async with open_websocket_url(url.replace("http", "ws", 1)) as ws:
                received = b""
                while received != b"\xff\x00text":  # Binary frames, joined or not
                    message = await ws.get_message()
                    assert isinstance(message, bytes)
                    received += message
            token = token_of(await negotiate(http, url))
            headers = {"accept": "text/event-stream"}
            async with http.stream("GET", f"{url}?id={token}", headers=headers) as events:
                chunks = events.aiter_raw()
                assert await anext(chunks) == b":\r\n"
                assert await anext(chunks) == b"data: text\r\n\r\n"
    assert outcomes == [
        "binary refused: Server-Sent Events carry text only: send UTF-8 (str), not binary",
        "bytes refused",
    ]


async def test_the_client_going_lets_the_handler_finish(caplog: pytest.LogCaptureFixture) -> None:
    """receive() returns None when the client closes; code after the loop runs; no alarm logged."""
    finished = trio.Event()

    async def handler(connection: Connection) -> None:
        async for data in connection:
            await connection.send(data)
        assert connection.closed
        await connection.send("dropped")  # the client has gone: dropped, not an error
        finished.set()

    with trio.fail_after(IO_DEADLINE):
        async with served(handler) as (_, url):
            async with open_websocket_url(url.replace("http", "ws", 1)) as ws:
                await ws.send_message("ping")
                assert await ws.get_message() == "ping"
            await finished.wait()
    assert alarms_logged(caplog.records) == []


async def test_a_failing_handler_is_logged_and_its_connection_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(connection: Connection) -> None:
        await connection.receive()
        raise RuntimeError("the app's bug")

    with trio.fail_after(IO_DEADLINE):
        async with served(handler) as (_, url), open_websocket_url(url.replace("http", "ws", 1)) as ws:
            await ws.send_message("boom")
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "the connection handler raised" in errors[0].getMessage()


class AppEscape(BaseException):
    """What an app may raise that is not an ``Exception`` (and is not a stop)."""


async def test_a_handler_raising_a_base_exception_fails_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``except Exception`` is not enough: the server logs it and serves the next client."""

    async def handler(connection: Connection) -> None:
        if await connection.receive() == b"escape":
            raise AppEscape("not an Exception")
        await connection.send("still here")

    with trio.fail_after(IO_DEADLINE):
        async with served(handler) as (_, url):
            ws_url = url.replace("http", "ws", 1)
            async with open_websocket_url(ws_url) as ws:
                await ws.send_message("escape")
                with pytest.raises(ConnectionClosed):
                    await ws.get_message()
            async with open_websocket_url(ws_url) as ws:
                await ws.send_message("hello")
                assert await ws.get_message() == "still here"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "the connection handler raised" in errors[0].getMessage()


async def test_shutdown_cancels_the_handler_and_closes_with_1001() -> None:
    cancelled = trio.Event()

    async def handler(connection: Connection) -> None:
        try:
            await connection.send("ready")
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    with trio.fail_after(IO_DEADLINE):
        async with served(handler) as (server, url):
            async with open_websocket_url(url.replace("http", "ws", 1)) as ws:
                assert await ws.get_message() == "ready"
                await server.aclose()
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert closed.value.reason is not None and closed.value.reason.code == 1001
            await cancelled.wait()


# -- auth and limits ---------------------------------------------------------------------------


async def _verify(token: str) -> trio_ws.Identity | None:
    return trio_ws.Identity(token.removeprefix("token-")) if token.startswith("token-") else None


async def test_auth_as_for_hubs() -> None:
    """401 with an empty body without a token; the identity reaches the handler; another user's
    request for the connection is refused with 403."""
    users: list[tuple[str | None, str | None]] = []

    async def handler(connection: Connection) -> None:
        identity = connection.identity
        users.append((connection.user_id, None if identity is None else identity.user_id))
        await echo(connection)

    with trio.fail_after(IO_DEADLINE):
        async with (
            served(handler, auth=trio_ws.bearer_auth(_verify)) as (_, url),
            httpx.AsyncClient() as http,
        ):
            refused = await http.post(f"{url}/negotiate?negotiateVersion=1")
            assert (refused.status_code, refused.content) == (401, b"")
            ann = {"authorization": "Bearer token-ann"}
            target = f"{url}?id={token_of(await negotiate(http, url, headers=ann))}"
            assert (await http.get(target, headers=ann)).status_code == 200
            assert (
                await http.post(target, content=b"hi", headers={"authorization": "Bearer token-bob"})
            ).status_code == 403
            assert (await http.post(target, content=b"hi", headers=ann)).status_code == 200
            assert (await http.get(target, headers=ann)).content == b"hi"
            async with open_websocket_url(url.replace("http", "ws", 1) + "?access_token=token-cy") as ws:
                await ws.send_message("x")
                assert await ws.get_message() == "x"
    assert users == [("ann", "ann"), ("cy", "cy")]


async def test_max_connections() -> None:
    with trio.fail_after(IO_DEADLINE):
        options = HubOptions(max_connections=1)
        async with served(options=options) as (_, url), httpx.AsyncClient() as http:
            await negotiate(http, url)
            full = await http.post(f"{url}/negotiate?negotiateVersion=1")
            assert full.status_code == 503
            assert "max_connections" in full.text


# Timeouts, with autojump_clock: served in memory, spoken to request by request.


@asynccontextmanager
async def in_memory(handler: Any, **options: Any) -> AsyncIterator[HttpHubClient]:
    app = trio_ws.App()
    map_connection(app, "/echo", handler, options=HubOptions(**options))
    async with trio_ws.testing.open_memory_server(app) as memory:
        yield HttpHubClient(memory.listener.connect, "/echo")


async def test_a_negotiated_connection_never_opened_is_gone_after_disconnect_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def never(connection: Connection) -> None:
        raise AssertionError("no transport came, so no handler runs")

    async with in_memory(never, disconnect_timeout=5) as client:
        await client.negotiate()
        await trio.sleep(5.1)
        assert (await client.poll()).status == 404


async def test_a_long_polling_client_that_stops_polling_is_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ended = trio.Event()
    waited: list[float] = []

    async def handler(connection: Connection) -> None:
        start = trio.current_time()
        assert await connection.receive() is None  # the client went: no poll within disconnect_timeout
        waited.append(trio.current_time() - start)
        ended.set()

    async with in_memory(handler, disconnect_timeout=15) as client:
        await client.negotiate()
        assert (await client.poll()).status == 200
        await ended.wait()
        assert waited == [pytest.approx(15)]
        assert (await client.poll()).status == 404


async def test_a_client_too_slow_to_read_is_cut_off(autojump_clock: trio.testing.MockClock) -> None:
    """A Long Polling client that stops polling while the handler sends: once the send buffer has
    been full for slow_client_timeout, the connection ends and the handler is cancelled at once."""
    cancelled: list[float] = []
    cut_off = trio.Event()

    async def flood(connection: Connection) -> None:
        try:
            while True:
                await connection.send(b"x" * 1024)
        except trio.Cancelled:
            cancelled.append(trio.current_time())
            cut_off.set()
            raise

    async with in_memory(
        flood, send_buffer_size=4096, slow_client_timeout=3, disconnect_timeout=60
    ) as client:
        await client.negotiate()
        start = trio.current_time()
        assert (await client.poll()).status == 200
        await cut_off.wait()
        assert cancelled[0] - start == pytest.approx(3)
        assert (await client.poll()).status in (204, 404)


def test_map_connection_checks_its_arguments() -> None:
    app = trio_ws.App()
    with pytest.raises(ValueError, match="must start with '/'"):
        map_connection(app, "echo", echo)
    with pytest.raises(ValueError, match="at least one transport"):
        map_connection(app, "/echo", echo, transports=[])
    with pytest.raises(TypeError, match="async function of one connection"):
        map_connection(app, "/echo", "echo")  # type: ignore[arg-type]


async def test_the_guides_twenty_lines_run_as_written() -> None:
    """docs/connections.md's first example, served in memory: a WebSocket gets its text back in capitals."""
    guide = (Path(__file__).parents[3] / "docs" / "connections.md").read_text()
    example = re.findall(r"```python\n(.*?)```", guide, flags=re.DOTALL)[0]
    assert len(example.strip().splitlines()) <= 20
    namespace: dict[str, Any] = {}
    exec(compile(example, "docs/connections.md", "exec"), namespace)
    with trio.fail_after(IO_DEADLINE):
        async with (
            trio_ws.testing.open_memory_server(namespace["app"]) as memory,
            memory.connect("/shout") as ws,
        ):
            await ws.send_message("hello")
            assert await ws.get_message() == "HELLO"
