"""The handshake, sans-I/O: parsing the request, choosing a protocol, and ASP.NET's refusal texts."""

from __future__ import annotations

import pytest

from trio_ws.signalr._protocol import JSON, MESSAGEPACK, HandshakeError, ProtocolError
from trio_ws.signalr._protocol.handshake import (
    HandshakeReader,
    HandshakeRequest,
    choose_protocol,
    encode_request,
    encode_response,
    parse_response,
)
from trio_ws.signalr._protocol.messages import TransferFormat

BOTH = frozenset({TransferFormat.TEXT, TransferFormat.BINARY})


def read(data: bytes, limit: int = 1000) -> tuple[HandshakeRequest | None, bytes]:
    reader = HandshakeReader(limit)
    reader.receive_data(data)
    return reader.next_request(), reader.take_rest()


def test_a_request_split_anywhere_is_read_and_the_bytes_after_it_are_kept() -> None:
    """The request may arrive byte by byte; whatever follows its 0x1E belongs to the hub protocol."""
    data = encode_request("json", 1) + b'{"type":6}\x1e'
    reader = HandshakeReader(1000)
    for byte in data[: data.index(b"\x1e")]:
        reader.receive_data(bytes([byte]))
        assert reader.next_request() is None
    reader.receive_data(data[data.index(b"\x1e") :])
    assert reader.next_request() == HandshakeRequest("json", 1)
    assert reader.take_rest() == b'{"type":6}\x1e'


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"hello\x1e", "invalid JSON"),
        (b'["json"]\x1e', "must be a JSON object"),
        (b'{"version":1}\x1e', "missing required property 'protocol'"),
        (b'{"protocol":1,"version":1}\x1e', "expected 'protocol' to be a string"),
        (b'{"protocol":"json"}\x1e', "missing required property 'version'"),
        (b'{"protocol":"json","version":"1"}\x1e', "expected 'version' to be an integer"),
        (b'{"protocol":"json","version":true}\x1e', "expected 'version' to be an integer"),
    ],
)
def test_malformed_requests_get_aspnets_text_and_a_detail(data: bytes, detail: str) -> None:
    """A malformed request is refused with ASP.NET's text; the detail says what was wrong."""
    with pytest.raises(HandshakeError, match=detail) as caught:
        read(data)
    assert caught.value.reply == "An unexpected error occurred during connection handshake."


def test_a_request_over_the_limit_is_canceled_before_it_ends() -> None:
    """A handshake larger than the hub's message limit is "Handshake was canceled.", as in ASP.NET."""
    with pytest.raises(HandshakeError) as caught:
        read(b'{"protocol":"' + b"j" * 2000, limit=1000)
    assert caught.value.reply == "Handshake was canceled."


@pytest.mark.parametrize(
    ("request_", "formats", "reply"),
    [
        (HandshakeRequest("xml", 1), BOTH, "The protocol 'xml' is not supported."),
        (HandshakeRequest("json", 3), BOTH, "The server does not support version 3 of the 'json' protocol."),
        (
            HandshakeRequest("json", -1),
            BOTH,
            "The server does not support version -1 of the 'json' protocol.",
        ),
        (
            HandshakeRequest("messagepack", 1),
            frozenset({TransferFormat.TEXT}),
            "Cannot use the 'messagepack' protocol on the current transport. "
            "The transport does not support 'Binary' transfer format.",
        ),
    ],
)
def test_refusals_use_aspnets_texts(
    request_: HandshakeRequest, formats: frozenset[TransferFormat], reply: str
) -> None:
    """Unknown protocols, versions past the protocol's, and binary on a text transport are refused."""
    with pytest.raises(HandshakeError) as caught:
        choose_protocol(request_, [JSON, MESSAGEPACK], formats)
    assert caught.value.reply == reply


@pytest.mark.parametrize("version", [0, 1, 2])
@pytest.mark.parametrize(("name", "protocol"), [("json", JSON), ("JSON", JSON), ("MessagePack", MESSAGEPACK)])
def test_versions_0_to_2_of_both_protocols_are_accepted_case_insensitively(
    version: int, name: str, protocol: object
) -> None:
    """signalrcore asks for version 0, the TS client 1 or 2; names match whatever their case."""
    assert choose_protocol(HandshakeRequest(name, version), [JSON, MESSAGEPACK], BOTH) is protocol


def test_responses_and_their_parsing() -> None:
    """``{}`` accepts; ``{"error": ...}`` refuses; a client reads either."""
    assert encode_response() == b"{}\x1e"
    assert encode_response("no") == b'{"error":"no"}\x1e'
    assert parse_response(b"{}") is None
    assert parse_response(b'{"error":"no"}') == "no"
    with pytest.raises(ProtocolError):
        parse_response(b"[]")
    with pytest.raises(ProtocolError):
        parse_response(b'{"error":1}')
