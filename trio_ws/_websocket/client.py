"""The client side, for ``trio_ws.testing``: the same connection as the server's, on ``ClientProtocol``.

A test client should behave like the clients users run: it masks its
frames, sends its handshake and checks the answer (RFC 6455 section 4.1),
and closes like any peer. It is built from the server's parts (the
protocol, the reader, the close rules), so it reaches into nothing either.
Rules:

* The handshake goes through h11's public API: the request, then the answer
  read until its head is whole. A 101 must carry the ``Sec-WebSocket-Accept``
  that answers our key (section 4.2.2), else the handshake fails with
  ``trio_websocket.HandshakeError``. Bytes that came with the 101 (the
  server's first frames) are the connection's first bytes (h11's
  ``trailing_data``). Any other answer raises
  ``trio_websocket.ConnectionRejected`` with its status, headers and body.
* It reads as trio-websocket's client did: it stops reading once
  ``message_queue_size`` messages and one more wait to be taken.
* No Pong goes out after our Close: a server's keep-alive ping may cross it.
* After the close handshake the client closes TCP, as trio-websocket's did.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

import h11
import trio
from trio_websocket import ConnectionRejected, HandshakeError

from .connection import BaseConnection
from .protocol import ClientProtocol

__all__ = ["ClientConnection", "client_connection"]

# RFC 6455 section 1.3: the server proves it read our key by hashing it with this.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_READ_SIZE = 65536
# The most an answer's head and body may take: a test server's refusal is short.
_MOST_ANSWER = 1 << 20


class ClientConnection(BaseConnection):
    """A client WebSocket: trio-websocket's public surface, and ``async for``."""

    __slots__ = ()


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` that answers ``Sec-WebSocket-Key: key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


async def client_connection(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    path: str,
    *,
    subprotocols: list[str],
    extra_headers: list[tuple[bytes, bytes]],
    message_queue_size: int,
    max_message_size: int,
) -> ClientConnection:
    """Open a client WebSocket over ``stream`` and start its reader in ``nursery``.

    Raises:
        trio_websocket.ConnectionRejected: the server answered the handshake over HTTP.
        trio_websocket.HandshakeError: the answer was a 101 that does not open a WebSocket.
    """
    key = base64.b64encode(secrets.token_bytes(16))
    http = h11.Connection(h11.CLIENT)
    headers = [
        (b"Host", b"localhost"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", key),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    if subprotocols:
        headers.append((b"Sec-WebSocket-Protocol", ", ".join(subprotocols).encode("ascii")))
    await stream.send_all(http.send(h11.Request(method="GET", target=path, headers=headers + extra_headers)))
    answer = await _next(http, stream)
    while isinstance(answer, h11.InformationalResponse) and answer.status_code != 101:
        answer = await _next(http, stream)
    if isinstance(answer, h11.Response):
        raise ConnectionRejected(answer.status_code, tuple(answer.headers), await _body(http, stream))
    if not isinstance(answer, h11.InformationalResponse):
        raise HandshakeError("the server closed the connection during the handshake")
    answered = dict(answer.headers)
    if answered.get(b"sec-websocket-accept") != accept_token(key):
        raise HandshakeError("the server's 101 does not answer our Sec-WebSocket-Key")
    subprotocol = answered.get(b"sec-websocket-protocol")
    connection = ClientConnection(
        stream,
        ClientProtocol(max_message_size=max_message_size),
        # As trio-websocket's client: message_queue_size messages wait in its channel, and its
        # reader holds one more before it stops reading.
        message_queue_size=message_queue_size + 1,
        read_size=_READ_SIZE,
        early_bytes=bytes(http.trailing_data[0]),
        close_timeout=None,
        target=path,
        subprotocol=None if subprotocol is None else subprotocol.decode("ascii"),
        handshake_headers=tuple(answer.headers),
    )
    nursery.start_soon(connection.run_reader)
    return connection


async def _next(http: h11.Connection, stream: trio.abc.Stream) -> object:
    """The next event of the server's answer (an ``h11.Event``, or ``h11.PAUSED`` after a 101),
    reading as needed."""
    while True:
        event = http.next_event()
        if event is not h11.NEED_DATA:
            return event
        if len(http.trailing_data[0]) > _MOST_ANSWER:
            raise HandshakeError("the server's answer is too long")
        http.receive_data(bytes(await stream.receive_some(_READ_SIZE)))


async def _body(http: h11.Connection, stream: trio.abc.Stream) -> bytes:
    """The body of a refusal, as far as it comes (the server may close TCP after it)."""
    body = b""
    while len(body) <= _MOST_ANSWER:
        try:
            event = await _next(http, stream)
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            break
        if isinstance(event, h11.Data):
            body += event.data
        else:
            break
    return body
