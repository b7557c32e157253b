"""Hypothesis over the hub protocol's parsers: random bytes never raise anything but
ProtocolError, buffers stay bounded, and every message survives a round trip in any chunking."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_ws.signalr._protocol import JSON, MESSAGEPACK, HandshakeError, HubProtocol, ProtocolError
from trio_ws.signalr._protocol.handshake import HandshakeReader
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

LIMIT = 4096
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values both protocols carry and give back unchanged.
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ids = st.text(min_size=1, max_size=8)
headers = st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)
arguments = st.lists(values, max_size=4).map(tuple)
stream_ids = st.lists(ids, max_size=2).map(tuple)

messages: st.SearchStrategy[HubMessage] = st.one_of(
    st.builds(Invocation, st.text(max_size=10), arguments, st.none() | ids, stream_ids, headers),
    st.builds(StreamInvocation, ids, st.text(max_size=10), arguments, stream_ids, headers),
    st.builds(StreamItem, ids, values, headers),
    st.builds(Completion.void, ids),
    st.builds(Completion.with_result, ids, values),
    st.builds(Completion.with_error, ids, st.text(max_size=20)),
    st.builds(CancelInvocation, ids, headers),
    st.just(Ping()),
    st.builds(Close, st.none() | st.text(max_size=20), st.booleans()),
    st.builds(Ack, st.integers(0, 2**62)),
    st.builds(Sequence_, st.integers(0, 2**62)),
)
protocols = st.sampled_from([JSON, MESSAGEPACK])


def feed(protocol: HubProtocol, data: bytes, cuts: list[int]) -> list[HubMessage]:
    reader = protocol.reader(LIMIT)
    out: list[HubMessage] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        reader.receive_data(data[start:cut])
        start = max(start, cut)
        while (message := reader.next_message()) is not None:
            out.append(message)
        # Bounded: what waits for more bytes is at most one message and its length prefix.
        assert reader._framer.pending <= LIMIT + 5  # type: ignore[attr-defined]
    return out


@SETTINGS
@given(protocols, st.lists(messages, max_size=6), st.lists(st.integers(0, 4000), max_size=8))
def test_round_trip_in_any_chunking(protocol: HubProtocol, sent: list[HubMessage], cuts: list[int]) -> None:
    """Messages encoded back to back decode to the same messages however the bytes are cut."""
    data = b"".join(protocol.encode(message) for message in sent)
    assert feed(protocol, data, [c for c in cuts if c < len(data)]) == sent


@SETTINGS
@given(protocols, st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=5))
def test_random_bytes_raise_only_protocol_error(protocol: HubProtocol, data: bytes, cuts: list[int]) -> None:
    """Whatever the bytes, the reader returns messages or raises ProtocolError: nothing else."""
    with contextlib.suppress(ProtocolError):
        feed(protocol, data, [c for c in cuts if c < len(data)])


@SETTINGS
@given(
    protocols,
    st.lists(messages, min_size=1, max_size=4),
    st.integers(0, 10_000),
    st.binary(min_size=1, max_size=8),
)
def test_mutated_messages_raise_only_protocol_error(
    protocol: HubProtocol, sent: list[HubMessage], position: int, noise: bytes
) -> None:
    """Valid messages with bytes overwritten: messages or ProtocolError, never a crash."""
    data = bytearray(b"".join(protocol.encode(message) for message in sent))
    at = position % len(data)
    data[at : at + len(noise)] = noise
    with contextlib.suppress(ProtocolError):
        feed(protocol, bytes(data), [])


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_handshakes_raise_only_handshake_error(data: bytes) -> None:
    """The handshake reader returns a request, waits, or raises HandshakeError: nothing else."""
    reader = HandshakeReader(LIMIT)
    reader.receive_data(data)
    with contextlib.suppress(HandshakeError):
        reader.next_request()


@SETTINGS
@given(st.dictionaries(st.sampled_from(["protocol", "version", "x"]), values, max_size=3))
def test_handshake_objects_of_any_shape(request: dict[str, Any]) -> None:
    """Any JSON object as a handshake: a request with a str protocol and an int version, or a refusal."""
    reader = HandshakeReader(LIMIT)
    reader.receive_data(json.dumps(request).encode() + b"\x1e")
    try:
        parsed = reader.next_request()
    except HandshakeError:
        return
    assert parsed is not None
    assert isinstance(parsed.protocol, str)
    assert isinstance(parsed.version, int)
