"""The front door over real sockets: the page, /healthz, and clear answers to bad requests."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

import trio_ws

from ..helpers import (
    IO_DEADLINE,
    MemoryListener,
    alarms_logged,
    start_memory_server,
    start_server,
    warnings_logged,
)
from ..raw import http_exchange, parse_response, upgrade_request


async def get(
    port: int, path: str, method: str = "GET", extra: str = ""
) -> tuple[int, dict[str, str], bytes]:
    raw = await http_exchange(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    return parse_response(raw, method)


async def test_page_is_served(echo_server: trio_ws.Server) -> None:
    """GET / returns the echo page with its security headers, and its assets are served."""
    status, headers, body = await get(echo_server.port, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    for text in (b"Connect", b"Send", b"Close Socket", b"Communication Log", b'id="status"'):
        assert text in body
    status, headers, body = await get(echo_server.port, "/app.js")
    assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert b"new WebSocket" in body
    status, headers, _ = await get(echo_server.port, "/style.css")
    assert (status, headers["content-type"]) == (200, "text/css; charset=utf-8")


async def test_head_has_no_body(echo_server: trio_ws.Server) -> None:
    """HEAD / answers with the headers of GET / and no body."""
    status, headers, body = await get(echo_server.port, "/", method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) > 1000


async def test_healthz(echo_server: trio_ws.Server) -> None:
    """/healthz answers 200 ok while the server runs, to GET and HEAD only (CONNECT crashed it once)."""
    status, headers, body = await get(echo_server.port, "/healthz")
    assert (status, headers["content-type"], body) == (200, "text/plain; charset=utf-8", b"ok\n")
    for method in ("CONNECT", "POST"):
        status, headers, _ = await get(echo_server.port, "/healthz", method=method)
        assert (status, headers["allow"]) == (405, "GET, HEAD")


async def test_wrong_path_is_404(echo_server: trio_ws.Server) -> None:
    """An unknown path gets 404 with a body that names it, for HTTP and for upgrades alike."""
    status, _, body = await get(echo_server.port, "/nowhere?x=1")
    assert status == 404 and b"/nowhere" in body
    raw = await http_exchange(echo_server.port, upgrade_request("/nowhere"))
    assert parse_response(raw)[0] == 404


async def test_wrong_method_is_405(echo_server: trio_ws.Server) -> None:
    """POST to the page gets 405 with an Allow header."""
    status, headers, _ = await get(echo_server.port, "/", method="POST", extra="Content-Length: 0\r\n")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


async def test_plain_request_to_websocket_path_is_426(echo_server: trio_ws.Server) -> None:
    """A plain GET on /ws gets 426 Upgrade Required, says why, and offers the upgrade."""
    status, headers, body = await get(echo_server.port, "/ws")
    assert status == 426
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "Upgrade"
    assert b"WebSocket endpoint" in body


async def test_bad_handshake_is_400(echo_server: trio_ws.Server) -> None:
    """An upgrade without Sec-WebSocket-Key gets 400 naming the missing header."""
    request = upgrade_request().replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"")
    status, _, body = parse_response(await http_exchange(echo_server.port, request))
    assert status == 400
    assert b"Sec-WebSocket-Key" in body


async def test_wrong_websocket_version_is_426(echo_server: trio_ws.Server) -> None:
    """An unsupported Sec-WebSocket-Version gets 426 and the version the server speaks."""
    request = upgrade_request().replace(b"Version: 13", b"Version: 8")
    status, headers, _ = parse_response(await http_exchange(echo_server.port, request))
    assert status == 426
    assert headers["sec-websocket-version"] == "13"


async def test_malformed_head_is_400(echo_server: trio_ws.Server) -> None:
    """Garbage instead of a request line gets 400 at once, without waiting for a timeout."""
    with trio.fail_after(IO_DEADLINE):
        status, _, body = parse_response(await http_exchange(echo_server.port, b"garbage\r\n\r\n"))
    assert status == 400
    assert b"Bad Request" in body


async def test_oversize_head_is_431(nursery: trio.Nursery) -> None:
    """A request head over max_request_head_size gets 431 instead of being buffered."""
    server = await start_server(nursery, trio_ws.echo_app(), max_request_head_size=4096)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    with trio.fail_after(IO_DEADLINE):
        status, _, _ = parse_response(await http_exchange(server.port, head))
    assert status == 431


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
async def test_forbidden_origin_is_403(echo_server: trio_ws.Server, origin: str) -> None:
    """A browser Origin other than the page's own host is refused with 403 before the upgrade."""
    with trio.fail_after(IO_DEADLINE), pytest.raises(InvalidStatus) as info:
        async with connect(echo_server.ws_url(), origin=origin):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    assert origin.encode() in info.value.response.body


async def test_same_origin_and_allowed_origins_are_accepted(nursery: trio.Nursery) -> None:
    """The page's own origin, and origins in allowed_origins, may connect."""
    server = await start_server(nursery, trio_ws.echo_app(), allowed_origins=["https://app.example/"])
    own = f"http://127.0.0.1:{server.port}"
    with trio.fail_after(IO_DEADLINE):
        for origin in (own, "https://app.example", "HTTPS://APP.EXAMPLE"):
            async with connect(server.ws_url(), origin=origin) as ws:  # type: ignore[arg-type]
                await ws.send(origin)
                assert await ws.recv() == origin


async def test_wildcard_origin_allows_every_origin(nursery: trio.Nursery) -> None:
    """allowed_origins=['*'] turns the origin check off."""
    server = await start_server(nursery, trio_ws.echo_app(), allowed_origins=["*"])
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), origin="http://elsewhere.example") as ws:  # type: ignore[arg-type]
            await ws.send("hi")
            assert await ws.recv() == "hi"


async def test_bad_requests_leave_other_connections_alone(echo_server: trio_ws.Server) -> None:
    """An open echo connection keeps working while bad requests come and go."""
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url()) as ws:
            for bad in (b"garbage\r\n\r\n", b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff" * 10):
                await http_exchange(echo_server.port, bad)
                await ws.send("still here")
                assert await ws.recv() == "still here"


async def test_handshake_timeout_drops_a_slow_client(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that never finishes its request head is dropped after handshake_timeout, with a log line."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener, handshake_timeout=7)
    client = await memory_listener.connect()
    start = trio.current_time()
    await client.send_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # ...and nothing more
    assert await client.receive_some() == b""
    assert trio.current_time() - start == 7
    assert [r.getMessage() for r in caplog.records if r.name == "trio_ws.http"] == [
        "dropped StapledStream: no complete request head within handshake_timeout (7 s)"
    ]


async def test_trickling_client_is_dropped_at_the_deadline(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """Trickling a byte a second does not extend the deadline: it covers the whole handshake."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener, handshake_timeout=5)
    client = await memory_listener.connect()
    start = trio.current_time()

    async def trickle() -> None:
        for byte in upgrade_request():
            await client.send_all(bytes([byte]))
            await trio.sleep(1)

    async with trio.open_nursery() as inner:
        inner.start_soon(trickle)
        assert await client.receive_some() == b""
        inner.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(5)


async def test_http_routes_and_static_directories(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's HTTP handler sees the request; a failing one gets 500; static files are served."""
    (tmp_path / "hello.txt").write_text("hello from disk")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "hidden.txt").write_text("not served")
    app = trio_ws.App()
    app.add_static_directory("/files", tmp_path)

    @app.route("/greet")
    async def greet(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, f"hi {request.query} via {request.header('X-Via')}")

    @app.route("/broken")
    async def broken(request: trio_ws.Request) -> trio_ws.Response:
        raise RuntimeError("bug in an HTTP handler")

    server = await start_server(nursery, app)
    status, _, body = await get(server.port, "/greet?name=ada", extra="X-Via: test\r\n")
    assert (status, body) == (200, b"hi name=ada via test\n")
    status, headers, body = await get(server.port, "/files/hello.txt")
    assert (status, headers["content-type"], body) == (200, "text/plain; charset=utf-8", b"hello from disk")
    for path in ("/files/sub/hidden.txt", "/files/../hello.txt", "/files/%2e%2e/hello.txt", "/files/"):
        assert (await get(server.port, path))[0] == 404, path
    status, _, body = await get(server.port, "/broken")
    assert (status, body) == (500, b"Internal Server Error\n")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "HTTP handler for /broken failed"
    ]


async def test_upgrade_with_a_body_is_400(echo_server: trio_ws.Server) -> None:
    """A WebSocket handshake has no body; one that announces a body gets 400."""
    request = upgrade_request(extra=["Content-Length: 5"]) + b"hello"
    status, _, body = parse_response(await http_exchange(echo_server.port, request))
    assert status == 400
    assert b"no body" in body


async def test_too_many_headers_is_431(nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    """More header lines than max_request_headers get 431 and one log line, even on a WebSocket path."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    server = await start_server(nursery, trio_ws.echo_app(), max_request_headers=10)
    fine = [f"X-H{i}: v" for i in range(5)]  # with the upgrade's own 5 headers: 10 in all
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(upgrade_request(extra=fine))
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 101 ")
        raw = await http_exchange(server.port, upgrade_request(extra=[*fine, "X-One-Too-Many: v"]))
    status, _, body = parse_response(raw)
    assert status == 431
    assert body == b"Request Header Fields Too Large: 11 header lines, the server takes at most 10\n"
    assert '"GET /ws" 431' in [r.getMessage() for r in caplog.records]
    assert alarms_logged(caplog.records) == []


async def test_oversize_and_malformed_heads_are_logged_without_a_traceback(
    echo_server: trio_ws.Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused request head leaves one INFO line naming the peer and the status, and no traceback."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    with trio.fail_after(IO_DEADLINE):
        assert parse_response(await http_exchange(echo_server.port, head))[0] == 431
        assert parse_response(await http_exchange(echo_server.port, b"garbage\r\n\r\n"))[0] == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_ws.http"]
    assert len(lines) == 2
    assert lines[0].startswith("refused a bad request head from 127.0.0.1:") and ": 431 (" in lines[0]
    assert ": 400 (" in lines[1]
    assert alarms_logged(caplog.records) == []


async def test_max_connections_refuses_upgrades_with_503(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """When max_connections WebSockets are open, upgrades get 503; open ones and plain HTTP carry on."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    server = await start_server(nursery, trio_ws.echo_app(), max_connections=2)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url()) as first, connect(server.ws_url()) as second:
            for _ in range(2):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(server.ws_url()):
                        pass
                assert refused.value.response.status_code == 503
                assert b"as many WebSocket connections as it takes" in refused.value.response.body
                assert refused.value.response.headers["x-content-type-options"] == "nosniff"
            assert (await get(server.port, "/healthz"))[0] == 200
            assert (await get(server.port, "/"))[0] == 200
            for ws in (first, second):
                await ws.send("unaffected")
                assert await ws.recv() == "unaffected"
        # Both closed: their slots are free again.
        async with connect(server.ws_url()) as ws:
            await ws.send("room again")
            assert await ws.recv() == "room again"
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count('"GET /ws" 503') == 2
    assert warnings_logged(caplog.records) == [  # once per episode, not once per refusal
        "connection limit reached: 2 WebSockets open (max_connections); new upgrades get 503 until one closes"
    ]
    assert "below the connection limit again: accepting WebSocket upgrades" in messages


async def test_max_connections_counts_upgrades_in_progress(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A handshake still under way holds its slot, so a burst of upgrades can't overshoot the limit."""
    listener = MemoryListener()
    server = await start_memory_server(
        nursery, trio_ws.echo_app(), listener, max_connections=1, handshake_timeout=5
    )
    # Lockstep streams: the server's 101 waits until the client reads it, which this one never does.
    stalled = await listener.connect(trio.testing.lockstep_stream_pair)
    await stalled.send_all(upgrade_request())
    await trio.testing.wait_all_tasks_blocked()
    assert server.statistics().open_websockets == 0  # not open yet, but counted

    async def status_of_upgrade() -> int:
        stream = await listener.connect()
        await stream.send_all(upgrade_request())
        first = await stream.receive_some()
        await stream.aclose()
        return int(first.split(b" ")[1])

    assert await status_of_upgrade() == 503
    await trio.sleep(5)  # the stalled handshake times out and gives its slot back
    await trio.testing.wait_all_tasks_blocked()
    assert await status_of_upgrade() == 101


async def test_static_files_never_reach_outside_their_directory(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """'..', encoded '%2e%2e', absolute paths and symlinks out of the root all get 404, never the file."""
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    public = tmp_path / "public"
    public.mkdir()
    (public / "hello.txt").write_text("hello")
    (public / "link-out.txt").symlink_to(secret)
    (public / "link-in.txt").symlink_to(public / "hello.txt")
    (public / "root-link").symlink_to("/")
    app = trio_ws.App()
    app.add_static_directory("/files", public)
    assert "not serving link-out.txt, a link to" in warnings_logged(caplog.records)[0]
    server = await start_server(nursery, app)

    assert (await get(server.port, "/files/link-in.txt"))[::2] == (200, b"hello")
    attempts = [
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2E%2E%2Fsecret.txt",
        "/files/..%2fsecret.txt",
        "/files/..%5csecret.txt",
        "/files/....//secret.txt",
        "/files/./hello.txt/../../secret.txt",
        "/files/link-out.txt",
        "/files/root-link/etc/passwd",
        "/files/root-link",
        "/files/%00",
        "/etc/passwd",
        "//etc/passwd",
        str(secret),
        "/files/" + str(secret),
        f"http://127.0.0.1/files/../{secret.name}",
    ]
    for path in attempts:
        status, headers, body = await get(server.port, path)
        assert status in (400, 404), path
        assert b"top secret" not in body and b"root:" not in body, path
        assert headers["x-content-type-options"] == "nosniff"


async def test_non_ascii_handshake_header_is_400(
    echo_server: trio_ws.Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A handshake header wsproto can't decode as ASCII gets 400, not an internal error (found by fuzzing)."""
    request = upgrade_request(extra=["Connection: \x80"])
    status, _, body = parse_response(await http_exchange(echo_server.port, request))
    assert (status, body) == (400, b"Bad Request: a WebSocket handshake header is not ASCII\n")
    assert warnings_logged(caplog.records) == []


async def test_a_handler_cannot_break_the_framing(nursery: trio.Nursery) -> None:
    """Framing is the server's: a body on a 204 is not sent, a handler's Content-Length or
    Transfer-Encoding is dropped, and a 1xx status can't be built at all."""
    app = trio_ws.App()

    @app.route("/no-content")
    async def no_content(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response(204, b"ignored", None, (("content-length", "99"),))

    @app.route("/lying")
    async def lying(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response(
            200, b"four", headers=(("Content-Length", "99"), ("transfer-encoding", "gzip"))
        )

    server = await start_server(nursery, app)
    status, headers, body = await get(server.port, "/no-content")
    assert (status, body, "content-length" in headers) == (204, b"", False)
    status, headers, body = await get(server.port, "/lying")
    assert (status, headers["content-length"], body, "transfer-encoding" in headers) == (
        200,
        "4",
        b"four",
        False,
    )
    with pytest.raises(ValueError, match="from 200 to 599"):
        trio_ws.Response(101)
