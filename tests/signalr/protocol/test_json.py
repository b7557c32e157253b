"""The JSON hub protocol, sans-I/O: the spec's examples, framing, limits and refusals."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

import pytest

from trio_ws.signalr._protocol import JSON, ProtocolError
from trio_ws.signalr._protocol.messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    Sequence_,
    StreamInvocation,
    StreamItem,
)

from .. import helpers


def decode_all(data: bytes, *, chunk: int | None = None, limit: int = 2**20) -> list[HubMessage]:
    return helpers.decode_all(JSON, data, chunk=chunk, limit=limit)


# Each message next to its JSON from HubProtocol.md ("JSON Encoding").
SPEC_EXAMPLES: list[tuple[HubMessage, bytes]] = [
    (
        Invocation("Send", (42, "Test Message"), "123"),
        b'{"type":1,"invocationId":"123","target":"Send","arguments":[42,"Test Message"]}',
    ),
    (Invocation("Send", (42, "Test Message")), b'{"type":1,"target":"Send","arguments":[42,"Test Message"]}'),
    (
        Invocation("Send", (42,), "123", ("1",)),
        b'{"type":1,"invocationId":"123","target":"Send","arguments":[42],"streamIds":["1"]}',
    ),
    (
        StreamInvocation("123", "Send", (42, "Test Message")),
        b'{"type":4,"invocationId":"123","target":"Send","arguments":[42,"Test Message"]}',
    ),
    (StreamItem("123", 42), b'{"type":2,"invocationId":"123","item":42}'),
    (Completion.void("123"), b'{"type":3,"invocationId":"123"}'),
    (Completion.with_result("123", 42), b'{"type":3,"invocationId":"123","result":42}'),
    (
        Completion.with_error("123", "It didn't work!"),
        b'{"type":3,"invocationId":"123","error":"It didn\'t work!"}',
    ),
    (CancelInvocation("123"), b'{"type":5,"invocationId":"123"}'),
    (Ping(), b'{"type":6}'),
    (Close(), b'{"type":7}'),
    (
        Close("Connection closed because of an error!"),
        b'{"type":7,"error":"Connection closed because of an error!"}',
    ),
    (
        Close("Connection closed because of an error!", allow_reconnect=True),
        b'{"type":7,"error":"Connection closed because of an error!","allowReconnect":true}',
    ),
    (Ack(1394), b'{"type":8,"sequenceId":1394}'),
    (Sequence_(1234), b'{"type":9,"sequenceId":1234}'),
    (
        Invocation("Send", (42, "Test Message"), "123", headers={"Foo": "Bar"}),
        b'{"type":1,"invocationId":"123","target":"Send","arguments":[42,"Test Message"],'
        b'"headers":{"Foo":"Bar"}}',
    ),
]


@pytest.mark.parametrize(("message", "json"), SPEC_EXAMPLES)
def test_spec_examples_encode_exactly_and_decode_back(message: HubMessage, json: bytes) -> None:
    """Every message type encodes to the spec's JSON plus 0x1E, and decodes to the same message."""
    assert JSON.encode(message) == json + b"\x1e"
    assert decode_all(json + b"\x1e") == [message]


def test_a_result_of_null_is_not_a_void_completion() -> None:
    """``"result": null`` is a result (``has_result``), unlike a Completion without one."""
    (with_null,) = decode_all(b'{"type":3,"invocationId":"1","result":null}\x1e')
    assert with_null == Completion.with_result("1", None)
    assert JSON.encode(with_null) == b'{"type":3,"invocationId":"1","result":null}\x1e'


def test_framing_across_and_within_chunks() -> None:
    """Messages split at every byte, and many in one chunk, decode the same."""
    stream = b"".join(JSON.encode(message) for message, _ in SPEC_EXAMPLES)
    expected = [message for message, _ in SPEC_EXAMPLES]
    assert decode_all(stream) == expected
    for chunk in (1, 2, 7, 64):
        assert decode_all(stream, chunk=chunk) == expected


def test_unknown_properties_are_ignored_and_unknown_types_skipped() -> None:
    """As ASP.NET does: extra properties are ignored, and a message type from the future is skipped."""
    data = b'{"type":42,"whatever":[1]}\x1e{"type":6,"extra":true}\x1e'
    assert decode_all(data) == [Ping()]


def test_whitespace_around_a_message_is_json_too() -> None:
    """JSON allows whitespace around a value; a client that sends some is understood."""
    assert decode_all(b' {"type":6}\x1e{"type":6}\r\n\x1e\t{"type":6} \x1e') == [Ping(), Ping(), Ping()]


def test_an_empty_invocation_id_means_none() -> None:
    """``"invocationId": ""`` is a non-blocking invocation, as in ASP.NET."""
    (message,) = decode_all(b'{"type":1,"invocationId":"","target":"T","arguments":[]}\x1e')
    assert message == Invocation("T", ())


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (b"not json", "invalid JSON"),
        (b"[1,2]", "a message must be a JSON object"),
        (b'{"target":"x"}', "missing required property 'type'"),
        (b'{"type":"1"}', "expected 'type' to be an integer"),
        (b'{"type":true}', "expected 'type' to be an integer"),
        (b'{"type":1,"arguments":[]}', "missing required property 'target'"),
        (b'{"type":1,"target":5,"arguments":[]}', "expected 'target' to be a string"),
        (b'{"type":1,"target":"T"}', "missing required property 'arguments'"),
        (b'{"type":1,"target":"T","arguments":{}}', "expected 'arguments' to be an array"),
        (
            b'{"type":1,"target":"T","arguments":[],"invocationId":7}',
            "expected 'invocationId' to be a string",
        ),
        (b'{"type":1,"target":"T","arguments":[],"streamIds":[1]}', "expected 'streamIds'"),
        (b'{"type":1,"target":"T","arguments":[],"headers":{"a":1}}', "expected 'headers'"),
        (b'{"type":4,"target":"T","arguments":[]}', "missing required property 'invocationId'"),
        (b'{"type":2,"invocationId":"1"}', "missing required property 'item'"),
        (b'{"type":3,"invocationId":"1","result":1,"error":"e"}', "mutually exclusive"),
        (b'{"type":3,"invocationId":"1","error":5}', "expected 'error' to be a string"),
        (b'{"type":5}', "missing required property 'invocationId'"),
        (b'{"type":7,"allowReconnect":"yes"}', "expected 'allowReconnect' to be a boolean"),
        (b'{"type":8}', "missing required property 'sequenceId'"),
        (b'{"type":9,"sequenceId":-1}', "non-negative integer"),
        (b'{"type":1,"target":"T","arguments":[NaN]}', "NaN is not JSON"),
        (b'{"type":1,"target":"T","arguments":[Infinity]}', "Infinity is not JSON"),
        (b'{"type":6}\xff', "invalid JSON"),
        (b'{"type":6}{"type":6}', "invalid JSON: Extra data"),
        (b'{"type":6} x', "invalid JSON: Extra data"),
        (b'{"type":6,', "invalid JSON"),
        (b'{"type":1,"target":"T","arguments":[-Infinity]}', "-Infinity is not JSON"),
        (b"[" * 100_000, "invalid JSON"),
        (b"{" * 100_000, "invalid JSON"),
    ],
)
def test_malformed_messages_raise_protocol_error_naming_the_problem(record: bytes, problem: str) -> None:
    """Every malformed message raises ProtocolError (never another exception), saying what is wrong."""
    with pytest.raises(ProtocolError, match=problem):
        decode_all(record + b"\x1e", limit=2**20)


def test_a_message_over_the_limit_is_refused_before_it_is_complete() -> None:
    """A record longer than the limit fails as soon as the limit is passed, without its separator."""
    reader = JSON.reader(1000)
    reader.receive_data(b'{"type":1,"target":"T","arguments":["' + b"x" * 900)
    assert reader.next_message() is None
    reader.receive_data(b"x" * 200)
    with pytest.raises(ProtocolError, match="larger than the 1000-byte limit"):
        reader.next_message()


def test_a_message_exactly_at_the_limit_is_accepted() -> None:
    """The limit counts the message without its separator, and is inclusive."""
    message = Invocation("T", ("x" * 100,))
    data = JSON.encode(message)
    assert decode_all(data, limit=len(data) - 1) == [message]
    with pytest.raises(ProtocolError, match="exceeds the"):
        decode_all(data, limit=len(data) - 2)


@dataclass
class Point:
    x: int
    y: int


def test_python_values_are_encoded_as_aspnet_does() -> None:
    """bytes as base64, UTC datetimes with Z, UUIDs as text, dataclasses as objects, sets as arrays."""
    when = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    guid = uuid.UUID("00010203-0405-0607-0706-050403020100")
    data = JSON.encode(Completion.with_result("1", [b"\x01\x02\x03", when, guid, Point(1, 2), {7}]))
    assert data == (
        b'{"type":3,"invocationId":"1","result":["AQID","2000-01-01T00:00:00Z",'
        b'"00010203-0405-0607-0706-050403020100",{"x":1,"y":2},[7]]}\x1e'
    )


def test_values_json_cannot_carry_raise_type_error_in_the_sender() -> None:
    """An object with no JSON form, or NaN, is refused when encoding, naming the problem."""
    with pytest.raises(TypeError, match="'object' values cannot be sent in a hub message"):
        JSON.encode(Invocation("T", (object(),)))
    with pytest.raises(ValueError, match="Out of range float"):
        JSON.encode(Invocation("T", (float("nan"),)))


HELLO = "\u4f60\u597d\uff0c\u4e16\u754c\uff01"  # the official functional tests' Echo text


def test_non_ascii_text_is_sent_as_utf8() -> None:
    """Text is UTF-8 on the wire, not \\u escapes (as ASP.NET writes it)."""
    data = JSON.encode(Completion.with_result("1", HELLO))
    assert HELLO.encode() in data
    assert decode_all(data) == [Completion.with_result("1", HELLO)]
