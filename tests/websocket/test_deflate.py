"""permessage-deflate without an event loop: negotiation, bounded inflating, context takeover."""

from __future__ import annotations

import zlib

import pytest

from trio_ws._websocket.deflate import Deflate, MessageTooBig, Parameters, negotiate, offers_deflate
from trio_ws._websocket.protocol import Failure, Protocol

from ..helpers import client_frame

RSV1 = 4


def _client_deflate(data: bytes, compressor: zlib._Compress) -> bytes:
    """``data`` as a client's permessage-deflate message body: a sync flush without its 4-byte tail."""
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _raw_compressor(bits: int = 15) -> zlib._Compress:
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits)


@pytest.mark.parametrize(
    "offers, answer, parameters",
    [
        (["permessage-deflate"], "permessage-deflate", Parameters()),
        (
            ["permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"],
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
            Parameters(10, 9),
        ),
        (
            ["permessage-deflate; client_max_window_bits"],
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            Parameters(12, 12),
        ),
        (
            ["permessage-deflate; client_no_context_takeover; server_no_context_takeover"],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12",
            Parameters(12, 15, True, True),
        ),
        (
            ["permessage-deflate; server_max_window_bits=8", "permessage-deflate; x=1", "permessage-deflate"],
            "permessage-deflate; server_max_window_bits=12",
            Parameters(12, 15),
        ),
        (["x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=16"], None, None),
    ],
)
def test_the_first_offer_that_can_be_honoured_is_taken(
    offers: list[str], answer: str | None, parameters: Parameters | None
) -> None:
    """RFC 7692 section 7.1: malformed offers and a window of 8 are skipped; our window is at most 12 here."""
    window_bits = 15 if offers == ["permessage-deflate"] or "=10" in offers[0] else 12
    expected = None if answer is None else (answer, parameters)
    assert negotiate(offers, window_bits) == expected
    assert offers_deflate(offers) == any(o.startswith("permessage-deflate") for o in offers)


def test_what_is_compressed_inflates_with_zlib_and_short_messages_are_not() -> None:
    """Messages of min_size bytes or more go compressed (RSV1) and inflate back; shorter ones do not."""
    deflate = Deflate(Parameters(), min_size=20)
    assert deflate.compress(b"short", first=True, last=True) == (False, b"short")
    inflater = zlib.decompressobj(-15)
    for _ in range(3):  # with context takeover, each message builds on the last
        compressed, body = deflate.compress(b"hello " * 100, first=True, last=True)
        assert compressed and len(body) < 600
        assert inflater.decompress(body + b"\x00\x00\xff\xff") == b"hello " * 100


def test_inflating_stops_one_byte_past_the_room() -> None:
    """A bomb fails with MessageTooBig as soon as more than the room would come out, never inflated whole."""
    body = _client_deflate(b"\x00" * 10_000_000, _raw_compressor())
    with pytest.raises(MessageTooBig):
        Deflate(Parameters(), min_size=0).inflate(body, 1_000_000, last=True)
    exact = _client_deflate(b"\x00" * 1000, _raw_compressor())
    assert Deflate(Parameters(), min_size=0).inflate(exact, 1000, last=True) == b"\x00" * 1000


@pytest.mark.parametrize("takeover", [True, False])
def test_the_inflater_keeps_or_drops_its_window_as_agreed(takeover: bool) -> None:
    """With client context takeover, a second message may refer to the first; without, each starts afresh."""
    deflate = Deflate(Parameters(client_no_context_takeover=not takeover), min_size=0)
    compressor = _raw_compressor()
    first = _client_deflate(b"repeat me please " * 10, compressor)
    assert deflate.inflate(first, 1000, last=True) == b"repeat me please " * 10
    if not takeover:
        compressor = _raw_compressor()
    second = _client_deflate(b"repeat me please " * 10, compressor)
    assert deflate.inflate(second, 1000, last=True) == b"repeat me please " * 10


def test_the_protocol_fails_a_compressed_message_past_the_limit_with_1009() -> None:
    """Inflated bytes count against max_message_size across the frames of a message."""
    server = Protocol(max_message_size=1000, deflate=Deflate(Parameters(), min_size=0))
    compressor = _raw_compressor()
    first = compressor.compress(b"a" * 800) + compressor.flush(zlib.Z_SYNC_FLUSH)
    last = _client_deflate(b"b" * 800, compressor)
    server.receive_data(client_frame(0x1, first, fin=False, rsv=RSV1) + client_frame(0x0, last))
    failures = [(e.code, e.reason) for e in server.events() if isinstance(e, Failure)]
    assert failures == [(1009, "decompressed message larger than 1000 bytes")]


def test_the_protocol_reads_a_compressed_fragmented_text_message_and_answers_compressed() -> None:
    """A compressed message in two fragments comes out whole; our reply carries RSV1 and inflates back."""
    server = Protocol(max_message_size=10_000, deflate=Deflate(Parameters(), min_size=0))
    compressor = _raw_compressor()
    first = compressor.compress("héllo ".encode() * 50) + compressor.flush(zlib.Z_SYNC_FLUSH)
    last = _client_deflate("wörld".encode(), compressor)
    server.receive_data(client_frame(0x1, first, fin=False, rsv=RSV1) + client_frame(0x0, last))
    assert [e for e in server.events() if isinstance(e, str)] == ["héllo " * 50 + "wörld"]
    frame = server.send_message("héllo " * 50)
    assert isinstance(frame, bytes) and frame[0] == 0xC1
    body = frame[4:] if frame[1] == 126 else frame[2:]
    assert zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff").decode() == "héllo " * 50
