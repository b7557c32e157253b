"""Bad input, generated: random and mutated request heads and WebSocket frames (Hypothesis).

Three layers, each bounded so the suite stays fast and each run tries the
same examples (``derandomize``):

* the request-head parser on its own (h11 under the server's limits, then
  the server's own checks), with no I/O;
* a live server over memory streams with the autojump clock, so a peer that
  stops half-way costs no real time;
* a live server on a real socket.

After every example the server must still serve a good client, every task
it started for the bad one must be gone, and nothing may be logged at
WARNING or above: a peer's mistake never logs a traceback.
"""

from __future__ import annotations

import struct
from functools import partial
from typing import TypeVar

import h11
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.trio.client import connect
from wsproto.events import AcceptConnection, TextMessage

import trio_ws
from trio_ws._app.app import HTTPRoute, WebSocketRoute
from trio_ws._app.response import Response
from trio_ws._http.decide import Routed, check_head_limits, decide, open_websocket
from trio_ws._http.target import parse_target

from .helpers import IO_DEADLINE, MemoryListener, start_memory_server, task_count, warnings_logged
from .raw import open_raw_websocket, upgrade_request

T = TypeVar("T")

# Every status the front door may answer a request head with.
HEAD_STATUSES = {101, 200, 204, 400, 403, 404, 405, 426, 431, 500, 501, 503, 505}

_fuzz = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies ------------------------------------------------------------------


def _app() -> trio_ws.App:
    app = trio_ws.echo_app()
    app.add_static("/page.html", b"<p>hi</p>")
    return app


@st.composite
def _mostly(draw: st.DrawFn, common: st.SearchStrategy[T], rare: st.SearchStrategy[T]) -> T:
    """From ``common`` about seven times in eight, else from ``rare``.

    (``st.one_of`` would not do: Hypothesis does not pick its branches evenly.)
    """
    return draw(rare) if draw(st.sampled_from([False] * 7 + [True])) else draw(common)


_header_names = _mostly(
    st.sampled_from(
        [
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Protocol",
            "Sec-WebSocket-Extensions",
            "Origin",
            "Content-Length",
            "Transfer-Encoding",
            "X-Anything",
        ]
    ),
    st.text(max_size=12),
)
_header_values = _mostly(
    st.sampled_from(
        [
            "websocket",
            "Upgrade",
            "13",
            "8",
            "dGhlIHNhbXBsZSBub25jZQ==",
            "http://evil.example",
            "0",
            "chunked",
            "",
        ]
    ),
    st.text(max_size=30),
)
_request_lines = st.tuples(
    _mostly(st.sampled_from(["GET", "GET", "HEAD", "POST", "OPTIONS", "CONNECT"]), st.text(max_size=8)),
    _mostly(
        st.sampled_from(["/", "/ws", "/ws", "/healthz", "/page.html", "*", "http://x/ws", "/%2e%2e/ws"]),
        st.text(max_size=20),
    ),
    _mostly(
        st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0"]), st.text(max_size=9)
    ),
)


@st.composite
def request_heads(draw: st.DrawFn) -> bytes:
    """A request head built from plausible parts, then possibly mutated byte by byte."""
    if draw(st.booleans()):  # a valid upgrade, with a few more headers
        upgrade = upgrade_request(draw(st.sampled_from(["/ws", "/ws?x=1", "/healthz", "/nowhere"])))
        lines = upgrade.decode().split("\r\n")[:-2]
    else:
        method, target, version = draw(_request_lines)
        lines = [f"{method} {target} {version}"]
        if draw(st.sampled_from([True, True, False])):
            lines.append("Host: x")
    lines += [f"{n}: {v}" for n, v in draw(st.lists(st.tuples(_header_names, _header_values), max_size=3))]
    head = bytearray("\r\n".join(lines).encode("utf-8", "replace") + b"\r\n\r\n")
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 3]))):  # flip, insert or delete a few bytes
        where = draw(st.integers(0, len(head) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = draw(st.sampled_from([0, 10, 13, 32, 58, 127, 255]) | st.integers(0, 255))
        if action == "flip":
            head[where] = byte
        elif action == "insert":
            head.insert(where, byte)
        else:
            del head[where]
    return bytes(head)


heads = _mostly(request_heads(), st.binary(max_size=300))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One WebSocket frame as a client might send it, mostly valid, sometimes not: any opcode,
    flags, mask and length encoding (including lengths that lie about the payload)."""
    fin = draw(st.sampled_from([1, 1, 1, 0]))
    rsv = draw(st.sampled_from([0] * 6 + [1, 2, 4]))
    opcode = draw(_mostly(st.sampled_from([1, 1, 2, 2, 0, 8, 9, 10]), st.integers(0, 15)))
    binary = st.binary(max_size=150)
    payload = draw(binary if opcode == 2 else _mostly(st.text(max_size=40).map(str.encode), binary))
    if opcode == 8 and draw(st.booleans()):
        payload = (
            struct.pack("!H", draw(st.sampled_from([1000, 1001, 1005, 1006, 999, 3000, 5000]))) + payload
        )
    masked = draw(st.sampled_from([1] * 5 + [0]))  # a client must mask
    length = draw(st.sampled_from([len(payload)] * 6 + [0, 125, 126, 65535, 2**40]))
    if length < 126:
        header = bytes([fin << 7 | rsv << 4 | opcode, masked << 7 | length])
    elif length < 65536:
        header = bytes([fin << 7 | rsv << 4 | opcode, masked << 7 | 126]) + struct.pack("!H", length)
    else:
        header = bytes([fin << 7 | rsv << 4 | opcode, masked << 7 | 127]) + struct.pack("!Q", length)
    if not masked:
        return header + payload
    mask = draw(st.binary(min_size=4, max_size=4))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


frame_streams = st.lists(_mostly(frames(), st.binary(min_size=1, max_size=40)), max_size=6).map(b"".join)


# -- 1. the parser on its own ------------------------------------------------------


@settings(_fuzz, max_examples=300)
@given(data=heads, chunk=st.integers(1, 64))
@example(data=upgrade_request(extra=["Connection: \x80"]), chunk=64)  # found by this test: was a crash
def test_request_head_parser_survives_anything(data: bytes, chunk: int) -> None:
    """Any bytes, in any chunks, end in a request, an HTTP status to answer, or a wait for more."""
    server = trio_ws.Server(_app(), [MemoryListener()], trio_ws.Options(max_request_head_size=256))
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=256)
    event: object = h11.NEED_DATA
    try:
        for start in range(0, len(data), chunk):
            conn.receive_data(data[start : start + chunk])
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                break
        else:
            conn.receive_data(b"")  # the client hangs up
            event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        assert exc.error_status_hint in HEAD_STATUSES
        return
    if not isinstance(event, h11.Request):
        assert event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed)
        return
    decision = check_head_limits(event, server.options) or decide(event, parse_target(event.target), server)
    if isinstance(decision, Response):
        assert decision.status in HEAD_STATUSES
    elif isinstance(decision.route, WebSocketRoute):
        stream = trio.testing.memory_stream_pair()[1]
        ws = open_websocket(stream, event, b"", server.options)
        if isinstance(ws, Response):
            assert ws.status in {400, 426}
    else:
        assert isinstance(decision, Routed) and isinstance(decision.route, HTTPRoute)


# -- 2. a live server over memory streams ------------------------------------------


async def _read_all(stream: trio.abc.Stream) -> bytes:
    received = b""
    try:
        while chunk := await stream.receive_some():
            received += chunk
    except trio.BrokenResourceError:
        pass
    return received


def _check_answer(raw: bytes) -> None:
    """The server's answer to a bad head: nothing, or one well-formed HTTP response."""
    if not raw:
        return
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.receive_data(raw)
    response = client.next_event()
    assert isinstance(response, h11.InformationalResponse | h11.Response), raw[:200]
    assert response.status_code in HEAD_STATUSES - {101}


async def _a_good_client_is_served(listener: MemoryListener) -> None:
    client = await open_raw_websocket(listener)
    await client.send(TextMessage(data="good"))
    assert await client.next_event() == TextMessage(data="good")
    await client.stream.aclose()


@settings(_fuzz, max_examples=150)
@given(head=heads, tail=frame_streams)
@example(head=b"CONNECT /healthz HTTP/1.1\r\nHost: x\r\n\r\n", tail=b"")  # found by this test: was a crash
async def test_live_server_survives_bad_heads(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    head: bytes,
    tail: bytes,
) -> None:
    """A random or mutated head (and whatever follows it) gets an HTTP answer or a drop; then a good
    client is served, and every task the bad one cost is gone."""
    caplog.clear()
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    server = await start_memory_server(nursery, _app(), memory_listener, max_request_head_size=512)
    tasks_idle = task_count()
    bad = await memory_listener.connect()
    await bad.send_all(head + tail)
    await bad.send_eof()  # type: ignore[attr-defined]
    raw = await _read_all(bad)
    await bad.aclose()
    if not raw.startswith(b"HTTP/1.1 101 "):
        _check_answer(raw)
    await _a_good_client_is_served(memory_listener)
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_idle
    assert server.statistics().open_websockets == 0
    assert warnings_logged(caplog.records) == []
    await server.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before


@settings(_fuzz, max_examples=150)
@given(stream=frame_streams, hang_up=st.booleans())
async def test_live_server_survives_bad_frames(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    stream: bytes,
    hang_up: bool,
) -> None:
    """Random frames after a good handshake: the server answers with well-formed frames and closes,
    or goes on echoing; either way a good client is served after, and no task is left behind."""
    caplog.clear()
    server = await start_memory_server(
        nursery, _app(), memory_listener, max_message_size=100, keep_alive_interval=5, keep_alive_timeout=5
    )
    await trio.testing.wait_all_tasks_blocked()
    tasks_idle = task_count()
    bad = await open_raw_websocket(memory_listener)
    await bad.stream.send_all(stream)
    if hang_up:
        await bad.stream.send_eof()  # type: ignore[attr-defined]
    # Read what the server says until it hangs up; a silent client is dropped by keep-alive.
    while (event := await bad.next_event()) is not None:
        assert not isinstance(event, AcceptConnection)
    await bad.stream.aclose()
    await _a_good_client_is_served(memory_listener)
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_idle
    assert server.statistics().open_websockets == 0
    assert warnings_logged(caplog.records) == []


# -- 3. a live server on a real socket ---------------------------------------------


@settings(_fuzz, max_examples=25)
@given(head=heads, tail=frame_streams)
async def test_real_socket_survives_bad_input(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, head: bytes, tail: bytes
) -> None:
    """The same bad heads and frames over TCP: answered or dropped, then a good client is served."""
    caplog.clear()
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    server: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve, _app(), "127.0.0.1", 0, options=trio_ws.Options(max_message_size=100))
    )
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as bad:
            try:
                await bad.send_all(head + tail)
                await bad.send_eof()
            except trio.BrokenResourceError:
                pass  # the server answered and hung up before taking all of it
            raw = await _read_all(bad)
        if not raw.startswith(b"HTTP/1.1 101 "):
            _check_answer(raw)
        async with connect(server.ws_url()) as ws:
            await ws.send("good")
            assert await ws.recv() == "good"
        await server.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before
    assert warnings_logged(caplog.records) == []
