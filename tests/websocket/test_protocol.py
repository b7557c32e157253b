"""The sans-I/O protocol, with no event loop: wsproto's client writes the frames and is the oracle.

What a handler receives from ``Protocol`` must be what wsproto's own
server decodes from the same bytes, cut anywhere; what it sends must be what
wsproto's client reads back; bad frames fail with the code RFC 6455 names.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from trio_ws._websocket import frames, protocol
from trio_ws._websocket.frames import most_frames, pure_unmask, server_frame, unmask
from trio_ws._websocket.protocol import (
    FRAGMENT,
    ClientProtocol,
    Close,
    Failure,
    LocalProtocolError,
    Protocol,
    State,
)

from ..helpers import client_frame

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def _pair() -> tuple[WSConnection, WSConnection]:
    """wsproto's client and server, open, through wsproto's public handshake."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example.com", target="/ws")))
    assert isinstance(next(server.events()), Request)
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client, server


def _received(server: Protocol, stream: bytes, chunks: Iterable[int]) -> list[object]:
    """Feed ``stream`` in pieces of the given sizes; everything ``events()`` gives, as plain values."""
    out: list[object] = []
    pos = 0
    for size in [*chunks, len(stream)]:
        if pos >= len(stream):
            break
        server.receive_data(stream[pos : pos + size])
        pos += size
        for item in server.events():
            if item is not FRAGMENT:
                out.append(_plain(item))
    return out


def _plain(item: object) -> object:
    if isinstance(item, str | bytes):
        return item
    if isinstance(item, Close | Failure):
        return (type(item).__name__, item.code, item.reason)
    assert isinstance(item, protocol.Ping | protocol.Pong)
    return (type(item).__name__, item.payload)


def _wsproto_received(stream: bytes) -> list[object]:
    """What wsproto's server makes of ``stream``, as the same plain values (fragments joined)."""
    _, server = _pair()
    server.receive_data(stream)
    out: list[object] = []
    parts: list[str | bytes] = []
    for event in server.events():
        if isinstance(event, Message):
            parts.append(event.data)
            if event.message_finished:
                out.append("".join(parts) if isinstance(event, TextMessage) else b"".join(parts))  # type: ignore[arg-type]
                parts = []
        elif isinstance(event, Ping | Pong):
            out.append((type(event).__name__, bytes(event.payload)))
        elif isinstance(event, CloseConnection):
            out.append(("Close", event.code, event.reason or ""))
    return out


def _client_stream(rng: random.Random) -> bytes:
    """Frames a client may send: whole and fragmented messages of many sizes, and pings between."""
    client, _ = _pair()
    out = b""
    for _ in range(60):
        kind = rng.randrange(5)
        size = rng.choice([0, 1, 3, 4, 5, 125, 126, 127, 1000, 1030, 65535, 65536, 70000])
        if kind == 0:
            out += client.send(TextMessage(data="é" * (size // 2) + "x" * (size % 2)))
        elif kind == 1:
            out += client.send(BytesMessage(data=rng.randbytes(size)))
        elif kind == 2:
            out += client.send(TextMessage(data="part ", message_finished=False))
            out += client.send(Ping(payload=b"in between"))
            out += client.send(TextMessage(data="end" * size))
        elif kind == 3:
            out += client.send(BytesMessage(data=rng.randbytes(size), message_finished=False))
            out += client.send(BytesMessage(data=b"!"))
        else:
            out += client.send(Ping(payload=rng.randbytes(min(size, 125))))
    return out + client.send(CloseConnection(code=4000, reason="done"))


@pytest.mark.parametrize("seed", range(4))
def test_every_stream_decodes_as_wsproto_decodes_it(seed: int) -> None:
    """The same bytes, cut into random pieces, give the messages and control events wsproto's server gives."""
    rng = random.Random(seed)
    stream = _client_stream(rng)
    chunks = [rng.choice([1, 2, 7, 100, 4096, 65536, 200_000]) for _ in range(len(stream))]
    expected = _wsproto_received(stream)
    assert expected[-1] == ("Close", 4000, "done")
    assert _received(Protocol(max_message_size=2**20), stream, chunks) == expected


def test_the_pure_python_unmask_decodes_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no C extension (``unmask`` is ``pure_unmask``), the protocol decodes as before."""
    monkeypatch.setattr(protocol, "unmask", pure_unmask)
    stream = _client_stream(random.Random(7))
    assert _received(Protocol(max_message_size=2**20), stream, [4096] * 1000) == _wsproto_received(stream)


@pytest.mark.parametrize("c", [True, False], ids=["websockets-c", "pure-python"])
def test_unmask_is_a_repeated_xor_for_every_length(c: bool) -> None:
    """unmask() XORs with the key repeated, for every length 0..2100 and for 1 MiB, in C and in Python."""
    if c:
        assert unmask is not pure_unmask, "this platform's websockets wheel has no C extension"
    function = unmask if c else pure_unmask
    rng = random.Random(6455)
    for size in [*range(2101), 2**20 + 3]:
        key = rng.randbytes(4)
        data = rng.randbytes(size)
        expected = bytes(b ^ key[i % 4] for i, b in enumerate(data)) if size < 3000 else None
        if expected is not None:
            assert function(data, key) == expected, size
        assert function(bytearray(data), key) == pure_unmask(data, key), size


BAD_FRAMES = {
    "unmasked": (bytes([0x81, 0x05]) + b"hello", 1002),
    "RSV1 without an extension": (client_frame(TEXT, b"hi", rsv=4), 1002),
    "RSV2 and RSV3": (client_frame(BINARY, b"hi", rsv=3), 1002),
    "reserved data opcode": (client_frame(0x3, b""), 1002),
    "reserved control opcode": (client_frame(0xB, b""), 1002),
    "16-bit length for 5 bytes": (bytes([0x81, 0xFE, 0x00, 0x05]) + b"\x00\x00\x00\x00hello", 1002),
    "64-bit length for 5 bytes": (
        bytes([0x81, 0xFF]) + (5).to_bytes(8, "big") + b"\x00" * 4 + b"hello",
        1002,
    ),
    "length with the top bit set": (bytes([0x82, 0xFF]) + (2**63 + 5).to_bytes(8, "big") + b"\x00" * 4, 1002),
    "fragmented ping": (client_frame(PING, b"x", fin=False), 1002),
    "ping over 125 bytes": (client_frame(PING, b"x" * 126), 1002),
    "continuation of nothing": (client_frame(CONTINUATION, b"x"), 1002),
    "new message inside one": (client_frame(TEXT, b"a", fin=False) + client_frame(BINARY, b"b"), 1002),
    "invalid UTF-8": (client_frame(TEXT, b"\xff\xfe not utf-8"), 1007),
    "truncated UTF-8": (client_frame(TEXT, "café".encode()[:-1]), 1007),
    "invalid UTF-8 across fragments": (
        client_frame(TEXT, b"\xce", fin=False) + client_frame(CONTINUATION, b"\xff"),
        1007,
    ),
    "close code 5000": (client_frame(CLOSE, (5000).to_bytes(2, "big")), 1002),
    "close code 1005": (client_frame(CLOSE, (1005).to_bytes(2, "big")), 1002),
    "close code 1004": (client_frame(CLOSE, (1004).to_bytes(2, "big")), 1002),
    "close code 999": (client_frame(CLOSE, (999).to_bytes(2, "big")), 1002),
    "close payload of one byte": (client_frame(CLOSE, b"\x03"), 1002),
    "invalid UTF-8 in a close reason": (client_frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
}


@pytest.mark.parametrize("frame, code", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
@pytest.mark.parametrize("pieces", ["whole", "bytes"])
def test_a_bad_frame_fails_with_its_code_and_nothing_after_it_is_parsed(
    frame: bytes, code: int, pieces: str
) -> None:
    """The message before a bad frame comes out, then one Failure with the RFC's code, whether the
    frame comes in one piece or byte by byte; the good frame behind it is never parsed."""
    stream = client_frame(TEXT, b"before") + frame + client_frame(TEXT, b"after")
    server = Protocol(max_message_size=1000)
    out = _received(server, stream, [len(stream)] if pieces == "whole" else [1] * len(stream))
    assert out[0] == "before"
    assert len(out) == 2 and isinstance(out[1], tuple) and out[1][:2] == ("Failure", code), out
    assert server.failed is not None and not server.receiving
    if code != 1007:  # wsproto decodes a close reason's UTF-8 lazily; its codes agree otherwise
        wsproto_close = _wsproto_received(stream)[-1]
        assert isinstance(wsproto_close, tuple) and wsproto_close[:2] == ("Close", code)


def test_a_frame_over_the_limit_fails_from_its_header_alone() -> None:
    """A frame longer than max_message_size fails with 1009 before its payload has come."""
    server = Protocol(max_message_size=100)
    server.receive_data(bytes([0x82, 0xFE]) + (200).to_bytes(2, "big"))
    assert [_plain(e) for e in server.events()] == [("Failure", 1009, "message larger than 100 bytes")]


def test_fragments_count_against_the_size_and_the_number_of_frames() -> None:
    """A fragmented message fails with 1009 past max_message_size bytes in all, or past most_frames frames."""
    server = Protocol(max_message_size=100)
    stream = client_frame(BINARY, b"x" * 60, fin=False) + client_frame(CONTINUATION, b"x" * 60)
    assert _received(server, stream, [len(stream)]) == [("Failure", 1009, "message larger than 100 bytes")]
    server = Protocol(max_message_size=100)
    limit = most_frames(100)
    stream = client_frame(BINARY, b"", fin=False) + client_frame(CONTINUATION, b"", fin=False) * limit
    events = list(_received(server, stream, [len(stream)]))
    assert events == [("Failure", 1009, f"message in more than {limit} frames")]


def test_a_whole_frame_waits_in_the_buffer_until_its_end_comes() -> None:
    """A long frame arriving in pieces comes out once, whole; until then its bytes wait in ``buffer``."""
    payload = random.Random(1).randbytes(200_000)
    stream = client_frame(BINARY, payload)
    server = Protocol(max_message_size=2**20)
    for start in range(0, len(stream) - 1000, 1000):
        server.receive_data(stream[start : start + 1000])
        assert list(server.events()) == []
    server.receive_data(stream[len(server.buffer) :])
    assert list(server.events()) == [payload]
    assert not server.buffer


def test_a_text_message_with_bad_utf8_fails_at_the_bad_fragment() -> None:
    """Invalid UTF-8 fails the connection with the fragment that holds it, before the message ends."""
    server = Protocol(max_message_size=1000)
    stream = client_frame(TEXT, b"caf", fin=False) + client_frame(CONTINUATION, b"\xc3\x28", fin=False)
    assert _received(server, stream, [len(stream)]) == [("Failure", 1007, "invalid UTF-8 in a text message")]


def _state(server: Protocol) -> State:
    """The state now (a function, so that mypy does not keep what it saw before a send)."""
    return server.state


def test_the_close_handshake_states() -> None:
    """OPEN -> REMOTE_CLOSING on the peer's Close -> CLOSED on ours; data may still go in between;
    nothing is parsed after the peer's Close, and nothing may be sent after ours."""
    server = Protocol(max_message_size=1000)
    server.receive_data(client_frame(CLOSE, (1001).to_bytes(2, "big") + b"bye") + client_frame(TEXT, b"late"))
    assert [_plain(e) for e in server.events()] == [("Close", 1001, "bye")]
    assert server.state is State.REMOTE_CLOSING and not server.receiving and server.sending
    assert server.send_message("a last reply") == server_frame("a last reply")
    assert server.send_close(1001, "bye") == b"\x88\x05\x03\xe9bye"
    assert _state(server) is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send_message("too late")

    server = Protocol(max_message_size=1000)
    server.send_close(1000)
    assert server.state is State.LOCAL_CLOSING and server.receiving and not server.sending
    with pytest.raises(LocalProtocolError):
        server.send_pong(b"")
    server.receive_data(client_frame(TEXT, b"still read") + client_frame(CLOSE, b""))
    assert [_plain(e) for e in server.events()] == ["still read", ("Close", 1005, "")]
    assert _state(server) is State.CLOSED


def test_our_close_payload_follows_the_rfc() -> None:
    """No code for 1005, 1000 for a local-only code, and a long reason cut at a character's edge."""
    assert frames.close_payload(1005, "ignored") == b""
    assert frames.close_payload(None, None) == b""
    assert frames.close_payload(1006, None) == (1000).to_bytes(2, "big")
    payload = frames.close_payload(4000, "é" * 100)
    assert len(payload) <= 125 and payload[2:].decode("utf-8") == "é" * 61


@pytest.mark.parametrize("size", [0, 1, 125, 126, 4095, 4096, 65535, 65536, 100_000])
@pytest.mark.parametrize("kind", ["text", "bytes"])
def test_what_we_send_is_what_wsprotos_client_reads(size: int, kind: str) -> None:
    """Whole messages, fragments, pings, pongs and a Close, read back by wsproto's client."""
    message: str | bytes = (
        "é" * (size // 2) + "a" * (size % 2) if kind == "text" else random.Random(size).randbytes(size)
    )
    server = Protocol(max_message_size=2**20)
    frame = server.send_message(message)
    # A long payload comes apart from its header, to be written with it (never joined).
    assert isinstance(frame, tuple) == (
        len(message.encode() if isinstance(message, str) else message) >= 4096
    )
    wire = frame if isinstance(frame, bytes) else b"".join(frame)
    half = len(message) // 2
    wire += server.send_fragment(message[:half], last=False)
    wire += server.send_ping(b"between")
    wire += server.send_fragment(message[half:], last=True)
    wire += server.send_pong(b"unsolicited") + server.send_close(4001, "done")
    client, _ = _pair()
    client.receive_data(wire)
    events: list[Event] = list(client.events())
    whole = type(events[0])(data=message)  # type: ignore[call-arg]
    assert events[0] == whole
    joined = events[1].data + events[3].data  # type: ignore[attr-defined]
    assert joined == message and events[2] == Ping(payload=b"between")
    assert events[4] == Pong(payload=b"unsolicited")
    assert isinstance(events[5], CloseConnection) and (events[5].code, events[5].reason) == (4001, "done")


def test_control_events_stop_at_a_data_frame() -> None:
    """control_events() gives the control frames at the head of the buffer and leaves data frames as bytes."""
    server = Protocol(max_message_size=1000)
    server.receive_data(client_frame(PONG, b"p") + client_frame(TEXT, b"data") + client_frame(CLOSE, b""))
    assert [_plain(e) for e in server.control_events()] == [("Pong", b"p")]
    assert not server.control_frame_next()
    assert [_plain(e) for e in server.events()] == ["data", ("Close", 1005, "")]


@pytest.mark.parametrize("fragmented", [False, True])
def test_bad_utf8_fails_when_it_comes_even_inside_a_frame(fragmented: bool) -> None:
    """A text frame arriving in pieces fails with 1007 at the piece that holds the bad bytes, before
    the rest of the frame comes (Autobahn 6.4.3 and 6.4.4), in a first frame or a continuation."""
    good, bad, rest = bytes.fromhex("cebae1bdb9cf83cebcceb5"), bytes.fromhex("f4908080"), b"edited"
    start = client_frame(TEXT, "κ".encode(), fin=False) if fragmented else b""
    frame = client_frame(CONTINUATION if fragmented else TEXT, good + bad + rest)
    server = Protocol(max_message_size=1000)
    head = len(frame) - len(good + bad + rest)
    assert _received(server, start + frame[: head + len(good)], [10**6]) == []
    server.receive_data(frame[head + len(good) : head + len(good + bad)])
    assert [_plain(e) for e in server.events()] == [("Failure", 1007, "invalid UTF-8 in a text message")]


def test_the_client_side_masks_what_it_sends_and_refuses_masked_frames() -> None:
    """ClientProtocol's frames are masked with a fresh key each (wsproto's server reads them); it reads
    a server's unmasked frames and fails a masked one with 1002."""
    client = ClientProtocol(max_message_size=2**20)
    frames = [client.send_message("hello"), client.send_message(b"x" * 70_000)]
    assert all(isinstance(frame, bytes) for frame in frames), "a client's frame is masked whole"
    wire = b"".join(f for f in frames if isinstance(f, bytes)) + client.send_ping(b"p")
    again = client.send_message("hello")
    assert wire[1] & 0x80 and isinstance(again, bytes) and again[2:6] != wire[2:6]
    assert _wsproto_received(wire) == ["hello", b"x" * 70_000, ("Ping", b"p")]
    client.receive_data(server_frame("from the server") + server_frame(b"\x00" * 200))
    assert list(client.events()) == ["from the server", b"\x00" * 200]
    client.receive_data(client_frame(TEXT, b"masked"))
    assert [_plain(e) for e in client.events()] == [("Failure", 1002, "masked frame from a server")]
