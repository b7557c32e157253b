"""Request bodies: Content-Length and chunked, buffered or streamed, bounded in size and time, and
every request-smuggling shape refused (issue 10, items 2 and 7)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

import trio_ws

from ..helpers import IO_DEADLINE, MemoryListener, alarms_logged, start_memory_server, start_server
from ..raw import http_exchange, parse_response


def _app() -> trio_ws.App:
    app = trio_ws.App()

    @app.route("/digest", methods=["POST"])
    async def digest(request: trio_ws.Request) -> trio_ws.Response:
        body = request.body
        return trio_ws.Response.text(200, f"{len(body)} {hashlib.sha256(body).hexdigest()}")

    @app.route("/stream-digest", methods=["POST", "PUT"], stream_body=True)
    async def stream_digest(request: trio_ws.Request) -> trio_ws.Response:
        sha, size, chunks = hashlib.sha256(), 0, 0
        async for chunk in request.body_stream:
            sha.update(chunk)
            size += len(chunk)
            chunks += 1
        return trio_ws.Response.text(200, f"{size} {sha.hexdigest()} {chunks > 1}")

    @app.route("/header", methods=["POST"])
    async def header(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, repr(request.header("x-folded")))

    return app


def _expected(body: bytes) -> str:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}"


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_content_length_and_chunked_bodies_are_read_whole(nursery: trio.Nursery) -> None:
    """A body sent with Content-Length and one sent chunked both reach request.body whole."""
    server = await start_server(nursery, _app())
    body = bytes(range(256)) * 1000
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            fixed = await client.post("/digest", content=body)
            chunked = await client.post("/digest", content=_chunks(body, 7000))
            assert "content-length" in fixed.request.headers
            assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert fixed.text.strip() == chunked.text.strip() == _expected(body)


async def test_a_streamed_body_reaches_the_handler_chunk_by_chunk(nursery: trio.Nursery) -> None:
    """stream_body=True: the handler reads request.body_stream as the client sends it, bounded by
    max_request_body, which is raised here to 8 MiB for a 5 MiB body."""
    server = await start_server(nursery, _app(), max_request_body=8 * 2**20)
    body = b"x" * (5 * 2**20)
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.put("/stream-digest", content=_chunks(body, 65536))
    assert response.text.strip() == f"{_expected(body)} True"


def test_a_streamed_body_is_not_request_body() -> None:
    """Reading request.body on a route that streams its body says what to read instead."""

    class _Source:
        async def next_chunk(self) -> bytes | None:
            return None

    request = trio_ws.Request("POST", "/up", body_stream=trio_ws.RequestBody(_Source()))
    with pytest.raises(RuntimeError, match=r"read request\.body_stream instead"):
        _ = request.body


async def test_a_declared_body_over_the_limit_gets_413_before_it_is_read(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Content-Length over max_request_body: 413 and a closed connection, while the client has sent
    only the head (the server never waits for the body)."""
    server = await start_server(nursery, _app(), max_request_body=1000)
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
            raw = b""
            while chunk := await stream.receive_some():
                raw += chunk
    status, headers, body = parse_response(raw)
    assert (status, headers["connection"]) == (413, "close")
    assert body == b"Content Too Large: 1001 bytes is over max_request_body (1000)\n"
    assert alarms_logged(caplog.records) == []


async def test_a_chunked_body_over_the_limit_gets_413(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked body gets 413 once it passes max_request_body, buffered or streamed alike."""
    server = await start_server(nursery, _app(), max_request_body=10_000)
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            for path in ("/digest", "/stream-digest"):
                response = await client.post(path, content=_chunks(b"y" * 20_000, 1000))
                assert response.status_code == 413, path
                assert "max_request_body (10000 bytes)" in response.text
    assert alarms_logged(caplog.records) == []


async def test_a_slow_body_gets_408_at_request_body_timeout(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A body that trickles is a slowloris too: 408 when request_body_timeout is up, however it trickles."""
    await start_memory_server(nursery, _app(), memory_listener, request_body_timeout=7)
    client = await memory_listener.connect()
    await client.send_all(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    start = trio.current_time()

    async def trickle() -> None:
        for _ in range(99):
            await client.send_all(b"z")
            await trio.sleep(1)

    async with trio.open_nursery() as inner:
        inner.start_soon(trickle)
        raw = await client.receive_some()
        inner.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(7)
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert b"request_body_timeout" in raw


async def test_expect_100_continue_is_answered_before_the_body(nursery: trio.Nursery) -> None:
    """A client that sends Expect: 100-continue gets 100 Continue, then sends its body, then the answer."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(
                b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            assert await stream.receive_some() == b"HTTP/1.1 100 \r\n\r\n"
            await stream.send_all(b"hello")
            raw = await stream.receive_some()
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(_expected(b"hello").encode() + b"\n")


@pytest.mark.parametrize(
    ("head", "says"),
    [
        (
            b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"conflicting Content-Length headers",
        ),
        (
            b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding:\r\n chunked\r\n\r\n",
            b"both Content-Length and Transfer-Encoding",
        ),
        (
            b"POST /digest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"Transfer-Encoding: chunked is supported",
        ),
    ],
    ids=["CL then TE", "TE then CL", "two Content-Lengths", "obs-fold TE with CL", "TE not chunked"],
)
async def test_request_smuggling_shapes_are_refused(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, head: bytes, says: bytes
) -> None:
    """Each request-smuggling shape gets a 4xx or 501 saying why, and a closed connection; the handler
    never runs and nothing is logged above INFO."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(head + b"hello0\r\n\r\nGET /digest HTTP/1.1\r\nHost: x\r\n\r\n")
            raw = b""
            while chunk := await stream.receive_some():
                raw += chunk
    status, headers, body = parse_response(raw)
    assert status in (400, 501) and headers["connection"] == "close" and says in body, body
    assert raw.count(b"HTTP/1.1 ") == 1  # the smuggled request after it was never answered
    assert alarms_logged(caplog.records) == []


async def test_obs_fold_is_unfolded(nursery: trio.Nursery) -> None:
    """A folded header line (obs-fold) is unfolded into one value, as RFC 9112 section 5.2 allows."""
    server = await start_server(nursery, _app())
    raw = await http_exchange(
        server.port,
        b"POST /header HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX-Folded: one\r\n  two\r\n\r\n",
    )
    assert parse_response(raw)[::2] == (200, b"'one two'\n")


def test_headers_keep_their_order_and_values_whatever_they_hold() -> None:
    request = trio_ws.Request(
        "GET",
        "/",
        headers=[(b"Host", b"example.com:8080"), (b"x-a", b""), (b"x-a", b"b: c"), (b"accept", b"*/*")],
    )
    assert request.headers == (
        (b"host", b"example.com:8080"),
        (b"x-a", b""),
        (b"x-a", b"b: c"),
        (b"accept", b"*/*"),
    )
    assert request.header("HOST") == "example.com:8080"
    assert request.header("x-a") == ", b: c"
    assert request.header("x") is None  # a prefix of a name is not the name
    assert request.header("accept") == "*/*"
    assert trio_ws.Request("GET", "/").headers == ()
    assert trio_ws.Request("GET", "/").header("host") is None


@pytest.mark.parametrize(
    "header",
    [(b"x-a", b"one\ntwo"), (b"x\na", b"v"), (b"x:a", b"v")],
    ids=["line-break-in-value", "line-break-in-name", "colon-in-name"],
)
def test_a_header_http_cannot_carry_is_refused(header: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="header name holds a colon or a line break"):
        trio_ws.Request("GET", "/", headers=[(b"host", b"h"), header])
