"""The MessagePack hub protocol, sans-I/O: the spec's byte examples, VarInt framing, limits, refusals."""

from __future__ import annotations

import datetime
import threading

import msgpack
import pytest

from trio_ws.signalr._protocol import MESSAGEPACK, ProtocolError
from trio_ws.signalr._protocol.framing import encode_varint
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
    return helpers.decode_all(MESSAGEPACK, data, chunk=chunk, limit=limit)


def framed(body_hex: str) -> bytes:
    body = bytes.fromhex(body_hex)
    return encode_varint(len(body)) + body


# Each message next to its bytes from HubProtocol.md ("MessagePack (MsgPack) encoding").
SPEC_EXAMPLES: list[tuple[HubMessage, str]] = [
    (Invocation("method", (42,), "xyz"), "96 01 80 a3 78 79 7a a6 6d 65 74 68 6f 64 91 2a 90"),
    (Invocation("method", (42,)), "96 01 80 c0 a6 6d 65 74 68 6f 64 91 2a 90"),
    (StreamInvocation("xyz", "method", (42,)), "96 04 80 a3 78 79 7a a6 6d 65 74 68 6f 64 91 2a 90"),
    (StreamItem("xyz", 42), "94 02 80 a3 78 79 7a 2a"),
    (Completion.with_error("xyz", "Error"), "95 03 80 a3 78 79 7a 01 a5 45 72 72 6f 72"),
    (Completion.void("xyz"), "94 03 80 a3 78 79 7a 02"),
    (Completion.with_result("xyz", 42), "95 03 80 a3 78 79 7a 03 2a"),
    (CancelInvocation("xyz"), "93 05 80 a3 78 79 7a"),
    (Ping(), "91 06"),
    (Close("xyz", allow_reconnect=True), "93 07 a3 78 79 7a c3"),
    (
        Invocation("method", (42,), "xyz", headers={"x": "y", "z": "z"}),
        "96 01 82 a1 78 a1 79 a1 7a a1 7a a3 78 79 7a a6 6d 65 74 68 6f 64 91 2a 90",
    ),
]


@pytest.mark.parametrize(("message", "body"), SPEC_EXAMPLES)
def test_spec_examples_encode_exactly_and_decode_back(message: HubMessage, body: str) -> None:
    """Every example encodes to the spec's bytes behind a VarInt length, and decodes back."""
    assert MESSAGEPACK.encode(message) == framed(body)
    assert decode_all(framed(body)) == [message]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("92 07 a3 78 79 7a", Close("xyz")),
        ("92 08 cc 24", Ack(36)),
        ("92 09 cc 13", Sequence_(19)),
        ("95 01 80 a3 78 79 7a a6 6d 65 74 68 6f 64 91 2a", Invocation("method", (42,), "xyz")),
        ("96 01 80 a0 a6 6d 65 74 68 6f 64 90 90", Invocation("method", ())),
    ],
)
def test_shorter_forms_and_spec_decodings(body: str, message: HubMessage) -> None:
    """A Close without allowReconnect, Ack and Sequence, an Invocation without stream ids, and an
    empty invocation id (non-blocking) decode as the spec says."""
    assert decode_all(framed(body)) == [message]


def test_varint_examples_from_the_spec() -> None:
    """0x35 is 53, 0x80 0x29 is 5248, and 2 GiB - 1 takes five bytes."""
    assert encode_varint(0x35) == b"\x35"
    assert encode_varint(5248) == b"\x80\x29"
    assert encode_varint(0x7FFFFFFF) == b"\xff\xff\xff\xff\x07"
    with pytest.raises(ValueError, match="cannot be framed"):
        encode_varint(2**31)


def test_framing_across_and_within_chunks() -> None:
    """Messages split at every byte (the length prefix too), and many in one chunk, decode the same."""
    messages = [message for message, _ in SPEC_EXAMPLES] + [Invocation("T", ("x" * 300,), "1")]
    stream = b"".join(MESSAGEPACK.encode(message) for message in messages)
    assert decode_all(stream) == messages
    for chunk in (1, 3, 50):
        assert decode_all(stream, chunk=chunk) == messages


def test_a_length_over_the_limit_is_refused_before_the_body_arrives() -> None:
    """The length prefix alone is enough to refuse an oversized message; nothing is buffered."""
    reader = MESSAGEPACK.reader(1000)
    reader.receive_data(encode_varint(1001))
    with pytest.raises(ProtocolError, match="message of 1001 bytes exceeds the 1000-byte limit"):
        reader.next_message()


def test_a_length_prefix_of_more_than_five_bytes_is_refused() -> None:
    """A sixth VarInt byte is malformed, whatever the limit."""
    with pytest.raises(ProtocolError, match="longer than 5 bytes"):
        decode_all(b"\x80\x80\x80\x80\x80\x01", limit=2**40)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\xc1", "invalid MessagePack"),
        (b"\x92\x01", "invalid MessagePack"),
        (b"\x91\x06\x00", "invalid MessagePack"),
        (b"\x81\x90\x01", "invalid MessagePack"),
        (b"\xa2\xff\xfe", "invalid MessagePack"),
        (b"\x91" * 3000 + b"\xc0", "invalid MessagePack"),
        (msgpack.packb({"type": 1}), "a message must be a non-empty array"),
        (msgpack.packb([]), "a message must be a non-empty array"),
        (msgpack.packb(["1"]), "its type, an integer"),
        (msgpack.packb([1, {}, "id", "T"]), "too short for an invocation"),
        (msgpack.packb([1, {}, 5, "T", []]), "expected the invocation id to be a string"),
        (msgpack.packb([1, {}, None, 5, []]), "expected the target to be a string"),
        (msgpack.packb([1, {}, None, "T", {}]), "expected the arguments to be an array"),
        (msgpack.packb([1, {}, None, "T", [], [1]]), "stream ids"),
        (msgpack.packb([1, {"a": 1}, None, "T", []]), "headers"),
        (msgpack.packb([4, {}, None, "T", []]), "non-empty string"),
        (msgpack.packb([2, {}, "1"]), "too short for a stream item"),
        (msgpack.packb([3, {}, "1", 4]), "invalid completion result kind 4"),
        (msgpack.packb([3, {}, "1", 3]), "too short for a completion with an error or a result"),
        (msgpack.packb([3, {}, "1", 1, 5]), "expected the error to be a string"),
        (msgpack.packb([3, {}, "1", True]), "invalid completion result kind True"),
        (msgpack.packb([7, 5]), "close error"),
        (msgpack.packb([7, None, "yes"]), "allowReconnect"),
        (msgpack.packb([8, -1]), "non-negative integer"),
        (msgpack.packb([9]), "too short for an ack or sequence"),
    ],
)
def test_malformed_messages_raise_protocol_error_naming_the_problem(body: bytes, problem: str) -> None:
    """Every malformed message raises ProtocolError (never another exception), saying what is wrong."""
    with pytest.raises(ProtocolError, match=problem):
        decode_all(encode_varint(len(body)) + body)


def test_unknown_message_types_are_skipped() -> None:
    """A message type from the future is ignored, as ASP.NET ignores it."""
    assert decode_all(framed("92 2a 01") + MESSAGEPACK.encode(Ping())) == [Ping()]


def test_binary_and_timestamps_travel_natively() -> None:
    """bytes go as MessagePack bin, datetimes as the timestamp extension (naive ones taken as UTC)."""
    when = datetime.datetime(2002, 4, 1, 10, 20, 15, tzinfo=datetime.UTC)
    data = MESSAGEPACK.encode(Completion.with_result("1", [b"hello", when, when.replace(tzinfo=None)]))
    (message,) = decode_all(data)
    assert message == Completion.with_result("1", [b"hello", when, when])
    assert b"\xc4\x05hello" in data  # bin 8, not a string
    assert b"\xd6\xff" in data  # fixext 4, type -1: the timestamp extension


def test_a_message_after_one_that_could_not_be_encoded_is_whole() -> None:
    """An argument with no MessagePack form is refused, naming its type, and the next message on the
    same thread (encoded by the same packer) carries nothing of the refused one."""
    with pytest.raises(TypeError, match="'object' values cannot be sent in a hub message"):
        MESSAGEPACK.encode(Invocation("T", ("half-packed", object())))
    sent = Invocation("T", ("whole",))
    assert decode_all(MESSAGEPACK.encode(sent)) == [sent]


def test_threads_encode_at_once_without_mixing_messages() -> None:
    """Hub servers may run in several threads (one trio run each): each thread's messages come out
    whole, even when a conversion hook lets another thread in halfway through one."""
    when = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    failures: list[str] = []

    def encode_many(name: str) -> None:
        for number in range(2000):
            sent = Invocation("T", (name, number, [when] * 3, bytearray(b"x" * number)))
            try:
                (got,) = decode_all(MESSAGEPACK.encode(sent))
            except (ProtocolError, ValueError) as exc:
                failures.append(f"{name} {number}: {exc}")
                return
            if got != Invocation("T", (name, number, [when] * 3, b"x" * number)):
                failures.append(f"{name} {number}: {got!r}")

    threads = [threading.Thread(target=encode_many, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
