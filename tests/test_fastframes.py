"""The fast framing path gives exactly what wsproto gives: the same bytes, events and errors."""

from __future__ import annotations

import random
import struct

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameDecoder, MessageDecoder, XorMaskerSimple

from trio_ws._websocket import frames as _fastframes
from trio_ws._websocket.frames import LONG_PAYLOAD, FastWSConnection, pure_unmask, server_frame, unmask

from .helpers import client_frame


def _wsproto_unmask(data: bytes, key: bytes) -> bytes:
    return bytes(XorMaskerSimple(key).process(bytearray(data)))


@pytest.mark.parametrize("c", [True, False], ids=["websockets-c", "pure-python"])
def test_unmask_equals_wsproto_for_every_length(c: bool) -> None:
    """unmask() equals wsproto's masker for random payloads of every length 0..2100, and for 64 KiB and
    1 MiB, in C (websockets' apply_mask) and in the pure-Python fallback."""
    if c:
        assert unmask is not pure_unmask, "this platform's websockets wheel has no C extension"
    function = unmask if c else pure_unmask
    rng = random.Random(6455)
    for size in [*range(2101), 65536, 2**20 + 3]:
        key = rng.randbytes(4)
        data = rng.randbytes(size)
        assert function(data, key) == _wsproto_unmask(data, key), size
        assert function(bytearray(data), key) == _wsproto_unmask(data, key), size


def test_the_fast_path_works_with_the_pure_python_unmask(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no C extension (unmask is pure_unmask), the fast connection still decodes as wsproto does."""
    monkeypatch.setattr(_fastframes, "unmask", pure_unmask)
    rng = random.Random(7)
    stream = _client_stream(rng)
    _, plain = _server_pair(WSConnection)
    _, fast = _server_pair(FastWSConnection)
    chunks = [rng.choice([7, 4096, 200_000]) for _ in range(len(stream))]
    assert _whole_messages(_feed(fast, stream, chunks)) == _whole_messages(_feed(plain, stream, chunks))


def test_masker_continues_across_fragment_boundaries() -> None:
    """The fast masker, fed a payload in random pieces, rotates its key as wsproto's does."""
    rng = random.Random(5)
    for _ in range(200):
        key = rng.randbytes(4)
        data = rng.randbytes(rng.randrange(0, 5000))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(1, 6))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        fast, slow = _fastframes._FastMasker(key), XorMaskerSimple(key)
        assert [fast.process(bytearray(p)) for p in pieces] == [slow.process(bytearray(p)) for p in pieces]


def _server_pair(server_class: type[WSConnection]) -> tuple[WSConnection, WSConnection]:
    """A client and an open server connection of ``server_class``, past the handshake."""
    client = WSConnection(ConnectionType.CLIENT)
    server = server_class(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example.com", target="/ws")))
    assert isinstance(next(server.events()), Request)
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client, server


def _feed(server: WSConnection, stream: bytes, chunks: list[int]) -> list[Event]:
    """Feed ``stream`` in pieces of the given sizes, collecting events until a close or an error.

    A ``FastWSConnection`` is read through ``received()``, its fast path, with
    each whole message it gives turned into the event wsproto would give.
    """
    events: list[Event] = []
    pos = 0
    for size in [*chunks, len(stream)]:
        if pos >= len(stream):
            break
        server.receive_data(stream[pos : pos + size])
        pos += size
        if isinstance(server, FastWSConnection):
            events += [_as_event(item) for item in server.received()]
        else:
            events += list(server.events())
        if any(isinstance(e, CloseConnection) for e in events):
            break
    return events


def _as_event(item: str | bytes | Event) -> Event:
    if isinstance(item, str):
        return TextMessage(data=item)
    if isinstance(item, bytes):
        return BytesMessage(data=item)
    return item


def _whole_messages(events: list[Event]) -> list[Event]:
    """``events`` with each fragmented message joined into one event, as a handler receives it.

    wsproto hands on every fragment, the fast connection only the whole
    message (and empty placeholders before it); what a handler gets must be
    the same.
    """
    result: list[Event] = []
    parts: list[str | bytes | bytearray] = []
    for event in events:
        if isinstance(event, TextMessage | BytesMessage):
            parts.append(event.data)
            if event.message_finished:
                if isinstance(event, TextMessage):
                    result.append(TextMessage(data="".join(p for p in parts if isinstance(p, str))))
                else:
                    result.append(BytesMessage(data=b"".join(p for p in parts if not isinstance(p, str))))
                parts = []
        else:
            result.append(event)
    return result


def _client_stream(rng: random.Random) -> bytes:
    """Frames a client may send: whole and fragmented messages of many sizes, and pings between."""
    client, _ = _server_pair(WSConnection)
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
    return out


@pytest.mark.parametrize("seed", range(4))
def test_fast_connection_decodes_every_stream_as_wsproto_does(seed: int) -> None:
    """The same bytes, cut into random pieces, give the same messages and control events from
    FastWSConnection and wsproto."""
    rng = random.Random(seed)
    stream = _client_stream(rng)
    chunks = [rng.choice([1, 2, 7, 100, 4096, 65536, 200_000]) for _ in range(len(stream))]
    _, plain = _server_pair(WSConnection)
    _, fast = _server_pair(FastWSConnection)
    assert _whole_messages(_feed(fast, stream, chunks)) == _whole_messages(_feed(plain, stream, chunks))


@pytest.mark.parametrize(
    "frame",
    [
        client_frame(0x1, b"\xff\xfe not utf-8"),  # invalid UTF-8: 1007
        client_frame(0x1, "caf\u00e9".encode()[:-1]),  # truncated UTF-8
        bytes([0x81, 0xFE, 0x00, 0x05]) + b"\x00\x00\x00\x00hello",  # 16-bit length for 5 bytes
        bytes([0x81, 0xFF]) + (5).to_bytes(8, "big") + b"\x00\x00\x00\x00hello",  # 64-bit length for 5
        bytes([0x82, 0xFF]) + (2**63 + 5).to_bytes(8, "big") + b"\x00\x00\x00\x00hello",  # top bit set
        bytes([0x81, 0x05]) + b"hello",  # unmasked frame from a client
        bytes([0xC1, 0x85]) + b"\x00\x00\x00\x00hello",  # RSV1 set without an extension
        bytes([0x83, 0x85]) + b"\x00\x00\x00\x00hello",  # reserved opcode
        bytes([0x09, 0x80, 0, 0, 0, 0]),  # fragmented ping
        client_frame(0x0, b"continuation with nothing to continue"),
        client_frame(0x1, b"start", fin=False) + client_frame(0x2, b"wrong opcode"),
    ],
)
@pytest.mark.parametrize("pieces", ["whole", "bytes"])
def test_fast_connection_rejects_bad_frames_as_wsproto_does(frame: bytes, pieces: str) -> None:
    """A malformed frame gives the same close code and reason from the fast path as from wsproto,
    whether it comes in one read or byte by byte, and a good frame behind it is never parsed.

    (Byte by byte, the reason for bad UTF-8 names the position in the piece
    wsproto was decoding, which differs: the fast path hands wsproto the
    frame whole. The code is the same.)
    """
    stream = client_frame(0x1, b"before") + frame + client_frame(0x1, b"after")
    chunks = [len(stream)] if pieces == "whole" else [1] * len(stream)
    _, plain = _server_pair(WSConnection)
    _, fast = _server_pair(FastWSConnection)
    events = _whole_messages(_feed(fast, stream, chunks))
    expected = _whole_messages(_feed(plain, stream, chunks))
    if pieces == "bytes":
        events, expected = _without_reasons(events), _without_reasons(expected)
    assert events == expected
    assert events[0] == TextMessage(data="before")
    assert isinstance(events[-1], CloseConnection) and events[-1].code in (1002, 1007)
    assert len(events) == 2


def _without_reasons(events: list[Event]) -> list[Event]:
    return [CloseConnection(e.code) if isinstance(e, CloseConnection) else e for e in events]


def _message(kind: str, size: int) -> TextMessage | BytesMessage:
    if kind == "text":
        return TextMessage(data="é" * (size // 2) + "a" * (size % 2))
    data = random.Random(size).randbytes(size)
    return BytesMessage(data=data if kind == "bytes" else bytearray(data))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100_000])
@pytest.mark.parametrize("kind", ["text", "bytes", "bytearray"])
def test_fast_connection_sends_the_bytes_wsproto_sends(size: int, kind: str) -> None:
    """Outgoing frames are byte for byte wsproto's, for text and binary at every length boundary."""
    event = _message(kind, size)
    _, plain = _server_pair(WSConnection)
    _, fast = _server_pair(FastWSConnection)
    assert fast.send(event) == plain.send(event) == server_frame(event.data)


def test_fast_connection_leaves_other_sends_to_wsproto() -> None:
    """Fragments, pings and closes go through wsproto, and its state follows them."""
    _, plain = _server_pair(WSConnection)
    _, fast = _server_pair(FastWSConnection)
    for event in [
        TextMessage(data="first half ", message_finished=False),
        Ping(payload=b"p"),
        TextMessage(data="second half"),
        BytesMessage(data=b"\x00" * 300),
        CloseConnection(code=1000, reason="bye"),
    ]:
        assert fast.send(event) == plain.send(event)
    assert fast.state is plain.state


def test_only_the_fast_connection_is_changed() -> None:
    """Accelerating one connection leaves wsproto's classes and other connections as they were."""
    _, plain_before = _server_pair(WSConnection)
    _, fast = _server_pair(FastWSConnection)
    _, plain_after = _server_pair(WSConnection)
    assert fast.connection is not None
    assert isinstance(fast.connection._proto._frame_decoder, _fastframes._FastFrameDecoder)
    assert isinstance(fast.connection._proto._message_decoder, _fastframes._FastMessageDecoder)
    for plain in (plain_before, plain_after):
        assert plain.connection is not None
        assert type(plain.connection._proto._frame_decoder) is FrameDecoder
        assert type(plain.connection._proto._message_decoder) is MessageDecoder


def test_server_frame_header_lengths() -> None:
    """server_frame uses the shortest length encoding RFC 6455 allows."""
    assert server_frame(b"x" * 125)[:2] == bytes([0x82, 125])
    assert server_frame(b"x" * 126)[:4] == bytes([0x82, 126]) + struct.pack("!H", 126)
    assert server_frame("x" * 65536)[:10] == bytes([0x81, 127]) + struct.pack("!Q", 65536)


def test_frames_after_a_close_are_not_parsed() -> None:
    """Simple frames behind a Close in the same read come out neither from the fast path nor from
    wsproto: nothing is parsed after a Close."""
    client, fast = _server_pair(FastWSConnection)
    stream = (
        client.send(TextMessage(data="before"))
        + client.send(CloseConnection(code=1000))
        + client_frame(0x1, b"after")
    )
    assert _feed(fast, stream, [len(stream)]) == [TextMessage(data="before"), CloseConnection(1000, "")]
    assert isinstance(fast, FastWSConnection)
    assert list(fast.received()) == []


def test_a_simple_frame_too_large_is_left_to_wsproto_which_fails_with_1009() -> None:
    """A whole simple frame over max_message_size is not taken by the fast path: wsproto fails the
    connection with 1009 (the messages before it come out first)."""
    client = WSConnection(ConnectionType.CLIENT)
    fast = FastWSConnection(ConnectionType.SERVER, max_message_size=100)
    fast.receive_data(client.send(Request(host="example.com", target="/ws")))
    assert isinstance(next(fast.events()), Request)
    client.receive_data(fast.send(AcceptConnection()))
    stream = client.send(BytesMessage(data=b"a" * 100)) + client.send(BytesMessage(data=b"b" * 101))
    events = _feed(fast, stream, [len(stream)])
    assert events[0] == BytesMessage(data=b"a" * 100)
    assert isinstance(events[1], CloseConnection) and events[1].code == 1009
    assert len(events) == 2


def test_a_long_frame_arriving_in_pieces_comes_out_once_whole() -> None:
    """A 64 KiB frame fed in 1,000-byte pieces gives nothing until its last byte, then the message."""
    client, fast = _server_pair(FastWSConnection)
    assert isinstance(fast, FastWSConnection)
    payload = random.Random(1).randbytes(65536)
    stream = client.send(BytesMessage(data=payload)) + client.send(TextMessage(data="next"))
    frame_end = len(stream) - len(client.send(TextMessage(data="next")))
    given: list[str | bytes | Event] = []
    for start in range(0, len(stream), 1000):
        fast.receive_data(stream[start : start + 1000])
        given += fast.received()
        if start + 1000 < frame_end:
            assert given == []
    assert given == [payload, "next"]


def test_an_open_connection_lets_its_handshake_go() -> None:
    """Once open, a connection drops its handshake's h11 state, and still works."""
    client, fast = _server_pair(FastWSConnection)
    assert fast.handshake is _fastframes._FINISHED_HANDSHAKE
    fast.receive_data(client.send(TextMessage(data="still here")))
    assert list(fast.events()) == [TextMessage(data="still here")]
    assert fast.state is ConnectionState.OPEN


@pytest.mark.parametrize("size", [0, 125, LONG_PAYLOAD - 1, LONG_PAYLOAD, 65536, 100_000])
@pytest.mark.parametrize("kind", ["text", "bytes"])
def test_send_message_gives_a_long_frame_as_header_and_the_payload_itself(size: int, kind: str) -> None:
    """send_message gives wsproto's frame: one bytes below LONG_PAYLOAD bytes of payload, from there
    its header and the very payload object (binary) or its UTF-8 (text), which joined are the frame."""
    event = _message(kind, size)
    _, plain = _server_pair(WSConnection)
    _, fast = _server_pair(FastWSConnection)
    assert isinstance(fast, FastWSConnection) and isinstance(event.data, str | bytes)
    expected = plain.send(event)
    given = fast.send_message(event.data)
    payload_size = len(event.data.encode() if isinstance(event.data, str) else event.data)
    if payload_size < LONG_PAYLOAD:
        assert given == expected
    else:
        assert isinstance(given, tuple)
        header, payload = given
        assert header + payload == expected
        if kind == "bytes":
            assert payload is event.data


def test_bytes_appended_to_the_receive_buffer_read_as_if_given_to_receive_data() -> None:
    """What is appended to receive_buffer() is parsed as receive_data would parse it; there is no
    such buffer during the handshake or once a Close has been received."""
    client = WSConnection(ConnectionType.CLIENT)
    fast = FastWSConnection(ConnectionType.SERVER)
    assert fast.receive_buffer() is None
    fast.receive_data(client.send(Request(host="example.com", target="/ws")))
    assert isinstance(next(fast.events()), Request)
    client.receive_data(fast.send(AcceptConnection()))
    payload = random.Random(2).randbytes(70_000)
    stream = client.send(BytesMessage(data=payload)) + client.send(TextMessage(data="then"))
    stream += client.send(CloseConnection(code=1000))
    given: list[str | bytes | Event] = []
    for start in range(0, len(stream), 4096):
        buffer = fast.receive_buffer()
        assert buffer is not None
        buffer += stream[start : start + 4096]
        given += fast.received()
    assert given == [payload, "then", CloseConnection(code=1000, reason="")]
    assert fast.receive_buffer() is None
