"""Hostile HTTP clients (issue 15, item 7), reproduced over real sockets where they hurt.

Each test here failed against the server as it was before its fix:

7. the 403 log line printed a peer's ``Origin`` raw (NEL, CSI) and uncut.
"""

from __future__ import annotations

import logging
import unicodedata

import pytest
import trio
import trio.testing

import trio_ws

from .helpers import (
    IO_DEADLINE,
    http_exchange,
    parse_response,
    start_server,
    upgrade_request,
)

# -- shared -----------------------------------------------------------------------


def _target_app() -> trio_ws.App:
    app = trio_ws.echo_app()

    @app.route("/a/b")
    async def a_b(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, "the route /a/b")

    return app


async def _get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    raw = await http_exchange(port, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return parse_response(raw)


# -- 7. log injection -----------------------------------------------------------------

_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _invisible_characters(text: str) -> set[str]:
    return {c for c in text if unicodedata.category(c) in _INVISIBLE}


async def test_no_peer_value_reaches_the_log_raw(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """An Origin, a path and handshake headers full of NEL, CSI, LINE SEPARATOR and escapes are logged
    escaped and cut short, in every line at every level."""
    caplog.set_level(logging.DEBUG, logger="trio_ws")
    app = _target_app()

    @app.route("/fails/x\r\ny")
    async def fails(request: trio_ws.Request) -> trio_ws.Response:
        raise RuntimeError("a bug")

    server = await start_server(nursery, app)
    evil = "\u0085forged line\u009b[2J\u2028another\u202eright-to-left".encode() + b"\xff" + b"x" * 5000
    with trio.fail_after(IO_DEADLINE):
        with_origin = upgrade_request().replace(b"\r\n\r\n", b"\r\nOrigin: http://e" + evil + b"\r\n\r\n")
        raw = await http_exchange(server.port, with_origin)
        assert parse_response(raw)[0] == 403
        assert (await _get(server.port, "/fails/x%0D%0Ay"))[0] == 500
        assert (await _get(server.port, "/%C2%85%E2%80%A8%1B[2J"))[0] == 404
        odd_host = upgrade_request().replace(b"Host: 127.0.0.1", b"Host: \xc2\x85\xe2\x80\xa8")
        raw = await http_exchange(server.port, odd_host)
        assert parse_response(raw)[0] == 400
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("refused a WebSocket from origin http://e\\x85forged line\\x9b[2J\\u2028")
        for m in messages
    )
    assert "HTTP handler for /fails/x\\x0d\\x0ay failed" in messages
    for message in messages:
        assert _invisible_characters(message) == set(), message
        assert len(message) < 2000, message[:100]
