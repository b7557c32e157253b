"""A peer's values reach the log only escaped and bounded: no forged lines, no terminal escapes.

Hostile peers over real sockets put control characters (LF, ESC, LINE
SEPARATOR, a bidi override) into everything they can: a WebSocket close
reason, hub method names, invocation and stream ids, a user id, a hub
handshake's protocol, a broken hub message, a malformed request body. Every
log record must then be one line of visible text, the hostile parts escaped
by ``printable``.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

import trio_ws
from trio_ws.signalr import Hub, map_hub
from trio_ws.signalr._protocol.messages import CancelInvocation, Completion, Invocation, StreamItem

from ..helpers import IO_DEADLINE, start_server
from ..signalr.helpers import open_hub_websocket

HOSTILE = "bye\nFORGED-LINE \x1b[31mred\u2028\u202e"
ESCAPED = "bye\\x0aFORGED-LINE \\x1b[31mred\\u2028\\u202e"
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _unsafe_lines(records: list[logging.LogRecord]) -> list[str]:
    """trio_ws's messages (as formatted) that hold a character a terminal or log viewer acts on."""
    messages = [r.getMessage() for r in records if r.name.startswith("trio_ws")]
    return [m for m in messages if any(unicodedata.category(c) in _INVISIBLE for c in m)]


class _LogWatch(logging.Handler):
    """Lets a test wait, without sleeping, until the server has logged a line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, fragment: str) -> str:
        while True:
            for message in self.messages:
                if fragment in message:
                    return message
            await self._changed.wait()


@contextmanager
def _watching() -> Iterator[_LogWatch]:
    watch = _LogWatch()
    logger = logging.getLogger("trio_ws")
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)


@pytest.fixture
def watch(caplog: pytest.LogCaptureFixture) -> Iterator[_LogWatch]:
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    with _watching() as watch:
        yield watch


async def test_a_close_reason_is_logged_escaped_on_one_line(
    nursery: trio.Nursery, watch: _LogWatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The client closes with 4000 and a reason holding LF and ESC: the server's line about the
    close shows them escaped."""
    server = await start_server(nursery, trio_ws.echo_app())
    with trio.fail_after(IO_DEADLINE):
        async with open_websocket_url(server.ws_url("/ws")) as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
            await ws.aclose(4000, HOSTILE)
        line = await watch.wait_for("closed with 4000")
    assert line.endswith(f"closed with 4000 ({ESCAPED})")
    assert _unsafe_lines(caplog.records) == []


class Plain(Hub):
    async def echo(self, text: str) -> str:
        return text

    async def double(self, number: int) -> int:
        return 2 * number


async def _verify(token: str) -> trio_ws.Identity | None:
    await trio.lowlevel.checkpoint()
    return trio_ws.Identity(token)


async def test_hub_values_from_a_peer_are_logged_escaped(
    nursery: trio.Nursery, watch: _LogWatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A user id, method names, invocation and stream ids, a handshake's protocol, a broken
    message and a WebSocket close reason, all holding LF and ESC: every line logged is one line
    of visible text, and the hostile values appear escaped."""
    app = trio_ws.App()
    map_hub(app, "/hub", Plain(), auth=trio_ws.bearer_auth(_verify))
    server = await start_server(nursery, app)
    token = quote(HOSTILE, safe="")

    async def hub_url(http: httpx.AsyncClient) -> str:
        negotiated = await http.post(f"/hub/negotiate?negotiateVersion=1&access_token={token}")
        connection = negotiated.json()["connectionToken"]
        return server.ws_url(f"/hub?id={connection}&access_token={token}")

    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as http:
            async with open_hub_websocket(await hub_url(http)) as client:
                await watch.wait_for("connected to Plain")
                await client.send(Invocation(HOSTILE, [], "1"))
                unknown = await client.receive()
                assert isinstance(unknown, Completion) and unknown.error is not None
                await client.send(Invocation("Echo", [1, 2], HOSTILE))  # bad arguments
                assert isinstance(await client.receive(), Completion)
                await client.send(Invocation("Double", [HOSTILE * 300], "2"))  # not an int
                assert isinstance(await client.receive(), Completion)
                await client.send(CancelInvocation(HOSTILE))
                await client.send(CancelInvocation(HOSTILE * 300))
                await client.send(StreamItem(HOSTILE, 1))
                await client.send(Completion(HOSTILE, result=1))
                assert await client.call("Echo", "still here") == "still here"
                broken = {"type": 1, "target": HOSTILE, "arguments": {HOSTILE: HOSTILE}}
                await client.ws.send(json.dumps(broken) + "\x1e")
                await watch.wait_for("broke the protocol")
            async with open_hub_websocket(await hub_url(http), handshake=False) as refused:
                await refused.ws.send(json.dumps({"protocol": HOSTILE, "version": 1}) + "\x1e")
                await watch.wait_for("handshake refused")
            async with open_hub_websocket(await hub_url(http)) as leaving:
                assert await leaving.call("Echo", "bye") == "bye"
                await leaving.ws.aclose(4000, HOSTILE)
                await watch.wait_for(f"closed with 4000 ({ESCAPED})")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("trio_ws")]
    assert _unsafe_lines(caplog.records) == []
    assert any(line.endswith(f"as user '{ESCAPED}'") for line in lines)
    assert any(line.endswith(f"unknown hub method {ESCAPED}") for line in lines)
    assert any(f"CancelInvocation for unknown id {ESCAPED}" in line for line in lines)
    assert any(f"StreamItem for unknown stream {ESCAPED}" in line for line in lines)
    assert any(f"Completion for unknown id {ESCAPED}" in line for line in lines)
    assert any(f"The protocol '{ESCAPED}' is not supported." in line for line in lines)
    assert any(
        "bad arguments for Double: argument 1 ('number'): expected an integer" in line for line in lines
    )
    assert max(len(line) for line in lines) < 1000  # each value cut to 200 characters, then "..."


async def test_a_malformed_body_is_logged_escaped(
    nursery: trio.Nursery, watch: _LogWatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked body whose chunk header holds ESC and CR: refused with 400, logged escaped."""
    app = trio_ws.App()

    @app.route("/upload", methods=["POST"])
    async def upload(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, f"{len(request.body)} bytes")

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\x1b[31m\rFORGED\r\nhello\r\n0\r\n\r\n"
        )
        answer = b""
        while chunk := await stream.receive_some():
            answer += chunk
        await stream.aclose()
        await watch.wait_for("request body for /upload refused")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"\x1b" not in answer
    assert _unsafe_lines(caplog.records) == []
