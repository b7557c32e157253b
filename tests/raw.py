"""Raw clients: the bytes a test or a benchmark sends when it must send what a well-behaved
client never would, and reads back exactly as the server wrote them. One module for all of them,
so a handshake, a frame or a response is built and read one way only.

Connections (127.0.0.1, or any trio stream such as a memory stream):

* :class:`Peer` is one raw WebSocket (or plain) connection: it sends what it is told, reads the
  server's head and frames only when told to, never answers a ping unless asked, never closes on
  its own; :meth:`Peer.reset` makes its close a TCP reset;
* :class:`RawClient` is a WebSocket client made of wsproto (:func:`open_raw_websocket` opens one
  through a memory listener): valid frames, but only the ones the test sends;
* :class:`HttpClient` is request after request on one connection, through h11;
* :func:`http_exchange` sends raw bytes on a new connection and returns the one response.

Bytes:

* :func:`upgrade_request` is a WebSocket handshake request;
* :func:`client_frame` is one client frame: any opcode, fragment, reserved bits and mask,
  including the bad ones a hostile test needs (unmasked, fragmented control frames, ...);
* :func:`frame_end` finds where a frame ends in a buffer, for readers that parse their own;
* :func:`read_response` and :func:`parse_response` read one HTTP response with h11.

Benchmarks import it too (``from tests.raw import ...``, run from the repository's root): the
hostile and soak benchmarks' clients are :class:`Peer`, driven longer, and the load generators
build their frames with :func:`client_frame`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Generic, NamedTuple, TypeVar

import h11
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, RejectConnection, Request

from trio_ws.testing import MemoryListener, StreamPairFactory

# Absolute deadline for any test step that does real I/O.
IO_DEADLINE = 15

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1 = 4  # the ``rsv`` value of the first reserved bit: permessage-deflate's "compressed"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample Sec-WebSocket-Key
MASK = b"\x01\x02\x03\x04"  # the masking key client_frame uses unless told otherwise
ZERO_MASK = b"\0\0\0\0"  # a legal key that leaves the payload as it is: free for long payloads


def upgrade_request(path: str = "/ws", host: str = "127.0.0.1", extra: Iterable[str] = ()) -> bytes:
    """The bytes of a valid WebSocket handshake request; ``extra`` header lines go at its end."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    mask: bytes = MASK,
) -> bytes:
    """One client frame, built by hand, including frames wsproto would refuse to send.

    ``rsv`` is the three reserved bits as a number (:data:`RSV1` is 4). ``masked=False`` leaves
    the mask bit clear, which a server must refuse from a client.
    """
    size = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    bit = 0x80 if masked else 0
    if size < 126:
        header = bytes([first, bit | size])
    elif size < 1 << 16:
        header = bytes([first, bit | 126]) + struct.pack("!H", size)
    else:
        header = bytes([first, bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return header + payload
    if mask == ZERO_MASK or not payload:
        return header + mask + payload
    key = (mask * (size // 4 + 1))[:size]
    return header + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """A Close frame's payload: the code, then the reason (bytes, so a test can send bad UTF-8)."""
    return struct.pack("!H", code) + reason


def frame_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """Where the frame that starts at ``start`` ends (masked or not), or -1 if its header is not
    all in ``buffer`` yet."""
    available = len(buffer) - start
    if available < 2:
        return -1
    second = buffer[start + 1]
    size, position = second & 0x7F, start + 2
    if size >= 126:
        width = 2 if size == 126 else 8
        if available < 2 + width:
            return -1
        size = int.from_bytes(buffer[position : position + width], "big")
        position += width
    if second & 0x80:
        position += 4
    return position + size


# -- HTTP ---------------------------------------------------------------------------------


async def http_exchange(port: int, data: bytes) -> bytes:
    """Send raw ``data`` to the server; return what it answers, up to the end of one response.

    The server keeps a connection open after a response (keep-alive), so the
    answer ends where h11 says the response ends, or where the server closes.
    """
    method = data.split(b" ", 1)[0].decode("ascii", "replace")
    method = method if method.isascii() and method.isalpha() else "GET"
    with trio.fail_after(IO_DEADLINE):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            return await read_response(stream, method)


async def read_response(stream: trio.abc.Stream, method: str = "GET") -> bytes:
    """The bytes of one response to a ``method`` request read from ``stream`` (all, if it is not HTTP)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    chunks: list[bytes] = []
    parsing = True
    while True:
        try:
            chunk = bytes(await stream.receive_some(65536))
        except trio.BrokenResourceError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if not parsing:
            continue
        client.receive_data(chunk)
        try:
            while (event := client.next_event()) is not h11.NEED_DATA:
                if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return b"".join(chunks)
        except h11.RemoteProtocolError:
            parsing = False  # not one HTTP response: read until the server closes


def parse_response(raw: bytes, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Parse a raw HTTP response to a ``method`` request with h11: (status, headers, body)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    response = conn.next_event()
    assert isinstance(response, h11.Response), response
    body = b""
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    headers: dict[str, str] = {}
    for key, value in response.headers:
        name = key.decode()
        headers[name] = f"{headers[name]}, {value.decode()}" if name in headers else value.decode()
    return response.status_code, headers, body


class HttpClient:
    """An HTTP/1.1 client made of h11 and a stream: request after request on one connection, each
    exactly as the test says, and each response read whole."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        all_headers = [("host", "127.0.0.1"), *headers]
        if body:
            all_headers.append(("content-length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)

    async def response(self) -> tuple[h11.Response, bytes]:
        """The next whole response: its head and body."""
        head: h11.Response | None = None
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(bytes(await self.stream.receive_some()))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return head, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    def next_cycle(self) -> None:
        self.conn.start_next_cycle()


# -- WebSocket ----------------------------------------------------------------------------


class RawClient:
    """A WebSocket client made of wsproto and a stream: it does only what the test says.

    Unlike a full client library it never answers a ping and never closes on
    its own, so a test can make it a silent or misbehaving peer.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.eof = False

    async def handshake(self, path: str = "/ws", subprotocols: list[str] | None = None) -> Event:
        await self.send(Request(host="localhost", target=path, subprotocols=subprotocols or []))
        event = await self.next_event()
        assert isinstance(event, AcceptConnection | RejectConnection), event
        return event

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(self.ws.send(e) for e in events))

    async def next_event(self) -> Event | None:
        """The next event from the server, or ``None`` once the server has closed TCP."""
        while True:
            for event in self.ws.events():
                return event
            if self.eof:
                return None
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.eof = True
                continue
            self.ws.receive_data(bytes(data))


async def open_raw_websocket(
    listener: MemoryListener,
    path: str = "/ws",
    stream_pair: StreamPairFactory = trio.testing.memory_stream_pair,
) -> RawClient:
    """A RawClient connected through ``listener`` (over ``stream_pair``) and past an accepted handshake."""
    client = RawClient(await listener.connect(stream_pair))
    accepted = await client.handshake(path)
    assert isinstance(accepted, AcceptConnection), accepted
    return client


class Refused(AssertionError):
    """The server answered the upgrade with something other than 101 (its status line)."""


class Frame(NamedTuple):
    """One frame from the server, as it came: its FIN bit, reserved bits, opcode and payload."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes


StreamT = TypeVar("StreamT", bound=trio.abc.Stream)


class Peer(Generic[StreamT]):
    """One raw connection: it sends what the test says and reads only when told to.

    Unlike a client library it never answers a ping (unless ``answer_pings``) and never closes on
    its own, so a test can make it a silent, slow or misbehaving peer.
    """

    def __init__(self, stream: StreamT) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.headers: dict[str, str] = {}  # the last response head's, names in lower case

    @staticmethod
    async def connect(port: int, *, receive_buffer: int | None = None) -> Peer[trio.SocketStream]:
        """A TCP connection to 127.0.0.1:``port``, nothing sent yet. ``receive_buffer`` sets
        SO_RCVBUF before connecting, so the window the server sees is small from the start."""
        sock = trio.socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await sock.connect(("127.0.0.1", port))
        return Peer(trio.SocketStream(sock))

    @staticmethod
    async def open(
        port: int,
        *,
        path: str = "/ws",
        receive_buffer: int | None = None,
        extra: Iterable[str] = (),
        early: bytes = b"",
    ) -> Peer[trio.SocketStream]:
        """:meth:`connect`, then :meth:`upgrade`: a WebSocket open on 127.0.0.1:``port``."""
        peer = await Peer.connect(port, receive_buffer=receive_buffer)
        await peer.upgrade(path, extra=extra, early=early)
        return peer

    async def upgrade(self, path: str = "/ws", *, extra: Iterable[str] = (), early: bytes = b"") -> None:
        """Send the handshake request (and ``early`` bytes in the same write) and read the 101;
        anything else raises :class:`Refused`."""
        await self.stream.send_all(upgrade_request(path, extra=extra) + early)
        head = await self.read_head()
        if not head.startswith(b"HTTP/1.1 101 "):
            raise Refused(head.split(b"\r\n", 1)[0].decode("latin-1"))

    async def send(self, *data: bytes) -> None:
        await self.stream.send_all(b"".join(data))

    async def read_head(self) -> bytes:
        """The next HTTP response head, without its blank line; its headers go to ``headers``."""
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        self.headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return head

    async def frame(self, *, answer_pings: bool = False) -> Frame:
        """The next frame from the server, fragments not joined; a server frame is never masked.
        With ``answer_pings``, pings are answered with a Pong and skipped, and so are pongs."""
        while True:
            while (end := frame_end(self.buffer)) < 0 or len(self.buffer) < end:
                await self._fill()
            first, second = self.buffer[0], self.buffer[1]
            assert not second & 0x80, "a server frame must not be masked"
            payload = bytes(self.buffer[2 + _length_bytes(second) : end])
            del self.buffer[:end]
            if answer_pings and first & 0x0F in (PING, PONG):
                if first & 0x0F == PING:
                    await self.stream.send_all(client_frame(PONG, payload, mask=ZERO_MASK))
                continue
            return Frame(bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, payload)

    async def next_frame(self, *, answer_pings: bool = False) -> tuple[int, bytes]:
        """The next frame from the server as (opcode, payload); fragments are not joined."""
        got = await self.frame(answer_pings=answer_pings)
        return got.opcode, got.payload

    async def message(self, *, answer_pings: bool = False) -> tuple[int, int, bytes]:
        """The server's next message as (rsv bits, opcode, payload), its fragments joined."""
        first = await self.frame(answer_pings=answer_pings)
        payload = first.payload
        fin = first.fin
        while not fin:
            more = await self.frame(answer_pings=answer_pings)
            assert more.opcode == CONTINUATION, "a fragmented message goes on in continuation frames"
            payload += more.payload
            fin = more.fin
        return first.rsv, first.opcode, payload

    async def close_frame(self) -> tuple[int, str]:
        """Read until the server's Close frame; its code and reason."""
        while True:
            opcode, payload = await self.next_frame()
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def closed_by_server(self) -> bool:
        """Whether the server has closed TCP (EOF or reset), reading what is left first."""
        try:
            while await self.stream.receive_some(64 * 1024):
                pass
        except trio.BrokenResourceError:
            pass
        return True

    def reset(self: Peer[trio.SocketStream]) -> None:
        """Make the coming close a TCP reset (SO_LINGER 0), as a peer that vanishes does."""
        self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(64 * 1024)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data


def _length_bytes(second: int) -> int:
    """How many extended-length bytes follow a frame's second byte."""
    size = second & 0x7F
    return 2 if size == 126 else 8 if size == 127 else 0
