"""Hostile HTTP clients (issue 15, items 6 to 9), reproduced over real sockets where they hurt.

Each test here failed against the server as it was before its fix:

6. ``/a%2Fb`` reached the route ``/a/b``, ``/app.js%3Fx`` served ``/app.js``,
   an absolute-form target got 404, and the 404 body echoed control characters;
7. the 403 log line printed a peer's ``Origin`` raw (NEL, CSI) and uncut;
8. malformed handshakes (a bad or doubled key, HTTP/1.0) got 101, version 8
   got a misleading body, and ``Upgrade: h2c, WebSocket`` got 400;
9. a page on an attacker's name that resolves to 127.0.0.1 (DNS rebinding)
   could open a WebSocket on a server bound to loopback.
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
    alarms_logged,
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


# -- 6. the request target ------------------------------------------------------------


async def test_an_encoded_slash_is_not_a_path_separator(nursery: trio.Nursery) -> None:
    """/a%2Fb is one segment 'a/b', so it does not reach the route /a/b (RFC 3986 section 2.2)."""
    server = await start_server(nursery, _target_app())
    assert (await _get(server.port, "/a/b"))[::2] == (200, b"the route /a/b\n")
    for target in ("/a%2Fb", "/a%2fb", "/a%2F%62"):
        assert (await _get(server.port, target))[0] == 404, target


async def test_an_encoded_question_mark_does_not_start_the_query(nursery: trio.Nursery) -> None:
    """/app.js%3Fx is the path '/app.js?x', not /app.js with a query: 404."""
    server = await start_server(nursery, _target_app())
    assert (await _get(server.port, "/app.js?x"))[0] == 200
    assert (await _get(server.port, "/app.js%3Fx"))[0] == 404


async def test_absolute_form_targets_are_served(nursery: trio.Nursery) -> None:
    """GET http://host/path is served like GET /path (RFC 9112 section 3.2.2), upgrades included,
    and its host stands in for the Host header in the origin check."""
    server = await start_server(nursery, _target_app())
    own = f"127.0.0.1:{server.port}"
    assert (await _get(server.port, f"http://{own}/healthz"))[::2] == (200, b"ok\n")
    assert (await _get(server.port, f"HTTP://{own}/a/b?x=1"))[0] == 200
    upgrade = upgrade_request(f"http://{own}/ws", host="elsewhere.localhost", extra=[f"Origin: http://{own}"])
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(upgrade)
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 101 ")
    for bad in ("ftp://host/a/b", "a/b", "http:/a/b", "http://user@host/a/b"):
        assert (await _get(server.port, bad))[0] == 400, bad


async def test_the_404_body_escapes_control_characters(nursery: trio.Nursery) -> None:
    """A 404 names the path with CR, LF, ESC, NUL and other invisible characters escaped."""
    server = await start_server(nursery, _target_app())
    status, _, body = await _get(server.port, "/x%0D%0AX-Injected:%20yes%1B[31m%00%C2%85%E2%80%A8")
    assert status == 404
    assert body == b"Not Found: no route for /x\\x0d\\x0aX-Injected: yes\\x1b[31m\\x00\\x85\\u2028\n"


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


# -- 8. handshake checks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"), 400, b"16 random bytes in base64"),
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="), 400, b"16 random bytes in base64"),
        (
            (
                b"Sec-WebSocket-Version: 13",
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2Vjb25kIGtleSBoZXJlIQ==",
            ),
            400,
            b"more than one 'Sec-WebSocket-Key'",
        ),
        ((b" HTTP/1.1\r\n", b" HTTP/1.0\r\n"), 400, b"needs HTTP/1.1, not HTTP/1.0"),
        ((b"Version: 13", b"Version: 8"), 426, b"speaks WebSocket version 13, and the client asked for 8"),
    ],
)
async def test_malformed_handshakes_are_refused(
    echo_server: trio_ws.Server, change: tuple[bytes, bytes], status: int, says: bytes
) -> None:
    """A key that is not 16 bytes of base64, two keys, an HTTP/1.0 upgrade and version 8 are refused
    (RFC 6455 sections 4.2.1, 4.2.2 and 11.3.1), each with a body that says what is wrong."""
    request = upgrade_request().replace(*change)
    status_got, headers, body = parse_response(await http_exchange(echo_server.port, request))
    assert (status_got, says in body) == (status, True), body
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
        assert b"Missing header" not in body


async def test_an_upgrade_list_naming_websocket_is_accepted(echo_server: trio_ws.Server) -> None:
    """Upgrade: h2c, WebSocket (a list, RFC 9110 section 7.8) opens a WebSocket like Upgrade: websocket."""
    request = upgrade_request().replace(b"Upgrade: websocket", b"Upgrade: h2c, WebSocket")
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", echo_server.port) as stream:
            await stream.send_all(request)
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 101 ")


# -- 9. DNS rebinding -----------------------------------------------------------------


async def _upgrade_status(port: int, host: str, origin: str | None) -> int:
    extra = [] if origin is None else [f"Origin: {origin}"]
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(upgrade_request(host=host, extra=extra))
            return int((await stream.receive_some()).split(b" ", 2)[1])


async def test_a_rebound_name_is_refused_on_a_loopback_server(
    echo_server: trio_ws.Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Bound to 127.0.0.1, the server refuses a browser (Origin) that names it evil.example:PORT, even
    from evil.example's own page, and says which flag would allow it; loopback names pass."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    port = echo_server.port
    rebound = f"evil.example:{port}"
    assert await _upgrade_status(port, rebound, f"http://{rebound}") == 403
    raw = await http_exchange(
        port, f"GET / HTTP/1.1\r\nHost: {rebound}\r\nOrigin: http://{rebound}\r\n\r\n".encode()
    )
    status, _, body = parse_response(raw)
    assert status == 403 and b"--allowed-host" in body and b"evil.example" in body
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"app.localhost:{port}",
        f"127.1.2.3:{port}",
        f"[::1]:{port}",
    ):
        assert await _upgrade_status(port, host, f"http://{host}") == 101, host
    assert await _upgrade_status(port, rebound, None) == 101  # not a browser: the check does not apply
    assert alarms_logged(caplog.records) == []


async def test_allowed_hosts_names_the_server_for_browsers(nursery: trio.Nursery) -> None:
    """allowed_hosts=['app.example'] lets browsers reach a loopback server as app.example (a proxy's
    name, say); other names are still refused, and '*' turns the check off."""
    server = await start_server(nursery, trio_ws.echo_app(), allowed_hosts=["App.Example"])
    port = server.port
    assert await _upgrade_status(port, f"app.example:{port}", f"http://app.example:{port}") == 101
    assert await _upgrade_status(port, f"other.example:{port}", f"http://other.example:{port}") == 403
    anywhere = await start_server(nursery, trio_ws.echo_app(), allowed_hosts=["*"])
    port = anywhere.port
    assert await _upgrade_status(port, f"other.example:{port}", f"http://other.example:{port}") == 101
