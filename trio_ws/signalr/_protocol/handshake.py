"""The handshake that opens every hub connection (HubProtocol.md, first section).

The client's first message is always JSON, whatever protocol it asks for:
``{"protocol":"json","version":1}`` then ``0x1E``. The server answers ``{}``
then ``0x1E``, or ``{"error":"..."}`` then ``0x1E`` and closes. Bytes after
the request's separator are already hub messages in the chosen protocol.

Rules of this module:

* The refusals use ASP.NET's own texts, which clients show to their users;
  for a malformed request, ``HandshakeError`` also carries the detail for
  the server's log (and for the peer when detailed errors are on).
* A request larger than the hub's message size limit is refused with
  "Handshake was canceled.", as ASP.NET does, as soon as the limit is passed.
* Protocol names match case-insensitively; every version from 0 to the
  protocol's own is accepted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .codec import HubProtocol
from .errors import HandshakeError, ProtocolError
from .framing import TextFramer
from .json import dumps_record, loads_record
from .messages import TransferFormat

__all__ = [
    "CANCELED",
    "HandshakeReader",
    "HandshakeRequest",
    "choose_protocol",
    "encode_request",
    "encode_response",
    "parse_response",
]

CANCELED = "Handshake was canceled."
_UNEXPECTED = "An unexpected error occurred during connection handshake."


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """What the client asked for."""

    protocol: str
    version: int


class HandshakeReader:
    """Reads the handshake request from the first bytes of a connection."""

    def __init__(self, max_size: int) -> None:
        self._framer = TextFramer(max_size)

    def receive_data(self, data: bytes | bytearray) -> None:
        self._framer.receive_data(data)

    def next_request(self) -> HandshakeRequest | None:
        """The request, or ``None`` until its separator has arrived.

        Raises:
            HandshakeError: the request is too large or malformed.
        """
        try:
            record = self._framer.next_record()
        except ProtocolError as exc:
            raise HandshakeError(CANCELED, f"handshake request {exc}") from None
        if record is None:
            return None
        try:
            value = loads_record(record)
        except ProtocolError as exc:
            raise HandshakeError(_UNEXPECTED, str(exc)) from None
        if not isinstance(value, dict):
            raise HandshakeError(_UNEXPECTED, "the handshake request must be a JSON object")
        protocol, version = value.get("protocol"), value.get("version")
        if protocol is None:
            raise HandshakeError(_UNEXPECTED, "missing required property 'protocol'")
        if not isinstance(protocol, str):
            raise HandshakeError(_UNEXPECTED, "expected 'protocol' to be a string")
        if version is None:
            raise HandshakeError(_UNEXPECTED, "missing required property 'version'")
        if not isinstance(version, int) or isinstance(version, bool):
            raise HandshakeError(_UNEXPECTED, "expected 'version' to be an integer")
        return HandshakeRequest(protocol, version)

    def take_rest(self) -> bytes:
        """The bytes that came after the request: the first hub messages, if any."""
        return self._framer.take_rest()


def choose_protocol(
    request: HandshakeRequest, protocols: Iterable[HubProtocol], formats: Collection[TransferFormat]
) -> HubProtocol:
    """The protocol to speak, from those offered and what the transport can carry.

    Raises:
        HandshakeError: with ASP.NET's text for an unknown protocol, an
            unsupported version, or a binary protocol on a text-only transport.
    """
    wanted = request.protocol.lower()
    for protocol in protocols:
        if protocol.name == wanted:
            break
    else:
        raise HandshakeError(f"The protocol '{request.protocol}' is not supported.")
    if not 0 <= request.version <= protocol.version:
        raise HandshakeError(
            f"The server does not support version {request.version} of the '{request.protocol}' protocol."
        )
    if protocol.transfer_format not in formats:
        raise HandshakeError(
            f"Cannot use the '{protocol.name}' protocol on the current transport. "
            f"The transport does not support '{protocol.transfer_format.value}' transfer format."
        )
    return protocol


def encode_response(error: str | None = None) -> bytes:
    """The server's answer: ``{}`` for yes, ``{"error": ...}`` for no."""
    return b"{}\x1e" if error is None else dumps_record({"error": error})


def encode_request(protocol: str, version: int = 1) -> bytes:
    """A client's handshake request (used by clients and tests)."""
    return dumps_record({"protocol": protocol, "version": version})


def parse_response(record: bytes) -> str | None:
    """A client's reading of the server's answer: ``None``, or the refusal's text.

    Raises:
        ProtocolError: the answer is not a handshake response.
    """
    value = loads_record(record)
    if not isinstance(value, dict):
        raise ProtocolError("the handshake response must be a JSON object")
    error = value.get("error")
    if error is not None and not isinstance(error, str):
        raise ProtocolError("expected 'error' to be a string")
    return error
