"""The hub protocol, sans-I/O: bytes in, messages out, and back (HubProtocol.md).

Nothing in this package imports trio or does I/O, so every rule can be
tested by feeding bytes, and fuzzed. The layout follows the spec:

    messages.py     the message types, as frozen dataclasses
    framing.py      0x1E-terminated records and VarInt-prefixed frames, bounded
    handshake.py    the JSON handshake, with ASP.NET's refusal texts
    codec.py        what a protocol offers: encode() and an incremental reader()
    json.py         the JSON protocol
    messagepack.py  the MessagePack protocol
    values.py       how Python values travel (bytes, datetimes, dataclasses...)
    errors.py       ProtocolError and HandshakeError: all a parser ever raises
"""

from __future__ import annotations

from .codec import HubProtocol, MessageReader
from .errors import HandshakeError, ProtocolError
from .json import JSON
from .messagepack import MESSAGEPACK

__all__ = [
    "JSON",
    "MESSAGEPACK",
    "PROTOCOLS",
    "HandshakeError",
    "HubProtocol",
    "MessageReader",
    "ProtocolError",
]

PROTOCOLS: dict[str, HubProtocol] = {JSON.name: JSON, MESSAGEPACK.name: MESSAGEPACK}
"""Every protocol trio_ws speaks, by handshake name."""
