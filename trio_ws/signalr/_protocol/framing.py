"""Cutting a byte stream into messages: the two framings of HubProtocol.md.

* Text: every JSON message, and the handshake in both protocols, ends with
  the record separator ``0x1E`` ("JSON Encoding").
* Binary: every MessagePack message is prefixed by its length as a VarInt,
  seven bits per byte, least significant first, at most five bytes
  ("Binary encoding").

Rules of this module:

* Framing knows nothing of transports: a message may span chunks, and one
  chunk may hold many messages or end halfway through one.
* Memory is bounded by ``max_message_size``: a message that would be larger
  is refused as soon as that is known (when the length prefix is read, or
  when that many bytes have come without a separator), never after
  buffering it.
* Consumed bytes are dropped from the front lazily, so a chunk of a
  thousand small messages costs linear time, not quadratic.
"""

from __future__ import annotations

from typing import Protocol

from .errors import ProtocolError

__all__ = ["RECORD_SEPARATOR", "BinaryFramer", "Framer", "TextFramer", "encode_varint"]

RECORD_SEPARATOR = 0x1E
_MAX_VARINT_BYTES = 5


class Framer(Protocol):
    """Cuts a stream of bytes into frames (``TextFramer``, ``BinaryFramer``)."""

    def receive_data(self, data: bytes | bytearray) -> None: ...

    def next_record(self) -> bytes | None: ...


class _Buffer:
    """Received bytes, with a read position that moves instead of copying."""

    __slots__ = ("_data", "_start", "max_message_size")  # one per connection: no dict each

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._data = bytearray()
        self._start = 0

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._start and self._start >= len(self._data) // 2:
            del self._data[: self._start]
            self._start = 0
        self._data += data

    def take_rest(self) -> bytes:
        """Everything not yet consumed (for handing over to the next reader)."""
        rest = bytes(self._data[self._start :])
        self._data.clear()
        self._start = 0
        return rest

    @property
    def pending(self) -> int:
        """Bytes received but not yet cut into messages."""
        return len(self._data) - self._start


class TextFramer(_Buffer):
    """Cuts ``0x1E``-terminated records out of a stream of bytes."""

    __slots__ = ("_scanned",)

    def __init__(self, max_message_size: int) -> None:
        super().__init__(max_message_size)
        self._scanned = 0  # bytes after _start already known to hold no separator

    def next_record(self) -> bytes | None:
        """The next whole record, without its separator, or ``None`` until more bytes come.

        Raises:
            ProtocolError: the record would be longer than ``max_message_size``.
        """
        data, start = self._data, self._start
        end = data.find(RECORD_SEPARATOR, start + self._scanned)
        if end < 0:
            self._scanned = len(data) - start
            if self._scanned > self.max_message_size:
                raise ProtocolError(f"message larger than the {self.max_message_size}-byte limit")
            return None
        if end - start > self.max_message_size:
            raise ProtocolError(
                f"message of {end - start} bytes exceeds the {self.max_message_size}-byte limit"
            )
        record = bytes(data[start:end])
        self._start = end + 1
        self._scanned = 0
        return record

    def take_rest(self) -> bytes:
        self._scanned = 0
        return super().take_rest()


class BinaryFramer(_Buffer):
    """Cuts VarInt-length-prefixed messages out of a stream of bytes."""

    __slots__ = ()

    def next_record(self) -> bytes | None:
        """The next whole message body, or ``None`` until more bytes come.

        Raises:
            ProtocolError: a malformed length prefix, or a length over ``max_message_size``.
        """
        data, start = self._data, self._start
        length = shift = 0
        position = start
        while True:
            if position >= len(data):
                return None
            byte = data[position]
            position += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if position - start >= _MAX_VARINT_BYTES:
                raise ProtocolError("message length prefix longer than 5 bytes")
        if length > self.max_message_size:
            raise ProtocolError(f"message of {length} bytes exceeds the {self.max_message_size}-byte limit")
        if len(data) - position < length:
            return None
        self._start = position + length
        return bytes(data[position : position + length])


def encode_varint(length: int) -> bytes:
    """``length`` as the VarInt prefix of a binary message."""
    if not 0 <= length <= 0x7FFFFFFF:
        raise ValueError(f"message length {length} cannot be framed (at most 2 GiB)")
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
