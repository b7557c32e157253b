"""Hostile HTTP clients (issue 15, items 5 to 9), reproduced over real sockets where they hurt.

Each test here failed against the server as it was before its fix:

5. idle TCP connections used up the open files, so nobody else (not even
   ``/healthz``) was served, and trio logged an ERROR with a traceback every
   0.1 s;
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
import resource
import signal
import socket
import subprocess
import time
import unicodedata
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import trio
import trio.testing

import trio_ws

from ..helpers import (
    IO_DEADLINE,
    MemoryListener,
    OutOfFilesListener,
    alarms_logged,
    start_memory_server,
    start_server,
    warnings_logged,
)
from ..processes import running_cli
from ..raw import http_exchange, parse_response, upgrade_request

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


# -- 5. idle connections ------------------------------------------------------------

_IDLE = 300  # sockets that never send a byte: twice what the server may open below


@contextmanager
def _idle_sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            for _ in range(count)
        ]


def _status_of(port: int, request: bytes) -> int:
    """The status the server answers ``request`` with, over a fresh blocking socket (10 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return int(sock.recv(4096).split(b" ", 2)[1])


_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return err


def _hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


def test_idle_sockets_leave_the_health_check_room_when_files_run_out() -> None:
    """With an open-file limit it can't raise, the server closes the longest-waiting silent socket
    whenever accept() runs out of files: /healthz answers while 300 idle sockets are open, and the
    log has one WARNING for it (per 10 s), no ERROR and no traceback."""
    started = time.monotonic()
    with running_cli("--max-connections", "20", open_files=(150, 150)) as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with _idle_sockets(port, _IDLE) as idle:
            assert [_status_of(port, _HEALTHZ) for _ in range(5)] == [200] * 5
            assert idle[0].recv(1) == b""  # the first to arrive was closed to make room
        err = _stop(proc)
    elapsed = time.monotonic() - started
    exhausted = [line for line in err.splitlines() if "accept() failed with EMFILE" in line]
    assert 1 <= len(exhausted) <= 1 + elapsed // 10
    assert " WARNING trio_ws.admission: accept() failed with EMFILE (Too many open files)" in exhausted[0]
    assert "max_connections (20) and max_idle_connections (1000) do not fit" in err
    assert " ERROR " not in err and "Traceback" not in err


def test_the_open_file_limit_is_raised_for_idle_connections_too() -> None:
    """Started with a soft limit of 150, the server raises it to fit max_idle_connections as well as
    max_connections: 300 idle sockets all stay open, and /healthz answers, with nothing logged."""
    with running_cli("--max-connections", "20", open_files=(150, _hard_limit())) as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with _idle_sockets(port, _IDLE) as idle:
            assert _status_of(port, _HEALTHZ) == 200
            idle[0].setblocking(False)
            with pytest.raises(BlockingIOError):  # still open, still waiting
                idle[0].recv(1)
        err = _stop(proc)
    assert f"raised the open-file limit from 150 to {min(20 + 1000 + 64, _hard_limit())}" in err
    assert " WARNING " not in err and " ERROR " not in err and "Traceback" not in err


def test_max_idle_connections_closes_the_longest_waiting() -> None:
    """--max-idle-connections 40: past 40 silent sockets, the one that waited longest is closed, so
    /healthz answers at once; one WARNING says so, and no traceback."""
    with running_cli("--max-idle-connections", "40", open_files=(150, _hard_limit())) as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with _idle_sockets(port, 100) as idle:
            assert _status_of(port, _HEALTHZ) == 200
            assert idle[0].recv(1) == b""
        err = _stop(proc)
    assert err.count("max_idle_connections (40) connections were waiting for a request") == 1
    assert " ERROR " not in err and "Traceback" not in err


async def test_a_new_connection_closes_the_one_that_waited_longest(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """max_idle_connections=3: a fourth silent connection closes the first; the others still get answers."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener, max_idle_connections=3)
    silent = [await memory_listener.connect() for _ in range(3)]
    await trio.testing.wait_all_tasks_blocked()
    fourth = await memory_listener.connect()
    assert await silent[0].receive_some() == b""
    for stream in (*silent[1:], fourth):
        await stream.send_all(_HEALTHZ)
        assert (await stream.receive_some()).startswith(b"HTTP/1.1 200 ")
    assert len(warnings_logged(caplog.records)) == 1
    assert alarms_logged(caplog.records) == warnings_logged(caplog.records)  # and no traceback


async def test_running_out_of_files_closes_a_waiting_connection_and_accepts_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE with a silent connection waiting: that one is closed and accepting resumes at once, without
    the 0.1 s pause it takes when nothing can be closed; one WARNING, no traceback."""
    listener = OutOfFilesListener(failures=0)
    await start_memory_server(nursery, trio_ws.echo_app(), listener)
    silent = await listener.connect()
    await trio.testing.wait_all_tasks_blocked()
    listener.failures = 1
    start = trio.current_time()
    await listener.connect()  # meets EMFILE
    assert await silent.receive_some() == b""
    late = await listener.connect()
    await late.send_all(_HEALTHZ)
    assert (await late.receive_some()).startswith(b"HTTP/1.1 200 ")
    assert trio.current_time() == start
    [warning] = alarms_logged(caplog.records)
    assert "closing the connections that have waited longest for a request" in warning


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
