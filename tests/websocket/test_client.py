"""The test client's handshake: it checks the server's 101 and reports a refusal whole."""

from __future__ import annotations

import pytest
import trio
import trio.testing
import trio_websocket

from trio_ws._websocket.client import accept_token, client_connection


async def _answer(stream: trio.abc.Stream, head: bytes) -> bytes:
    """Read the client's request head, send ``head``; the request's Sec-WebSocket-Key."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive_some(65536)
    await stream.send_all(head)
    line = next(line for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:"))
    return line.split(b":", 1)[1].strip()


async def _open(nursery: trio.Nursery, stream: trio.abc.Stream) -> object:
    return await client_connection(
        nursery, stream, "/ws", subprotocols=[], extra_headers=[], message_queue_size=1, max_message_size=1024
    )


def test_the_accept_token_is_rfc_6455s() -> None:
    """The example of RFC 6455 section 1.3."""
    assert accept_token(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def test_a_101_that_does_not_answer_our_key_fails_the_handshake(nursery: trio.Nursery) -> None:
    client, server = trio.testing.memory_stream_pair()
    bad = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    nursery.start_soon(_answer, server, bad + b"Sec-WebSocket-Accept: bm90IHRoZSBhbnN3ZXI=\r\n\r\n")
    with pytest.raises(trio_websocket.HandshakeError, match="does not answer our Sec-WebSocket-Key"):
        await _open(nursery, client)


async def test_a_refusal_comes_with_its_status_headers_and_body(nursery: trio.Nursery) -> None:
    client, server = trio.testing.memory_stream_pair()
    refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nX-Why: origin\r\n\r\nForbidden"
    nursery.start_soon(_answer, server, refusal)
    with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
        await _open(nursery, client)
    assert rejected.value.status_code == 403
    assert (b"x-why", b"origin") in rejected.value.headers
    assert rejected.value.body == b"Forbidden"


async def test_frames_that_came_with_the_101_are_the_first_messages(nursery: trio.Nursery) -> None:
    """A server that sends at once may put its first frame in the same write as its 101."""
    client, server = trio.testing.memory_stream_pair()

    async def serve() -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += await server.receive_some(65536)
        key = next(h for h in request.split(b"\r\n") if h.lower().startswith(b"sec-websocket-key:"))
        token = accept_token(key.split(b":", 1)[1].strip())
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        await server.send_all(head + b"Sec-WebSocket-Accept: " + token + b"\r\n\r\n" + b"\x81\x05hello")

    nursery.start_soon(serve)
    ws = await client_connection(
        nursery, client, "/ws", subprotocols=[], extra_headers=[], message_queue_size=1, max_message_size=1024
    )
    assert await ws.get_message() == "hello"
    assert ws.is_client and not ws.is_server and str(ws).startswith("client-")
    nursery.cancel_scope.cancel()
