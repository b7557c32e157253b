"""What every hub protocol (JSON, MessagePack) offers the layer above.

Rules of this module:

* A protocol is a stateless object: ``encode()`` turns one message into its
  framed bytes, ``reader()`` makes a fresh incremental reader for one
  connection. All connection state lives in the reader.
* A reader is fed bytes as they come (``receive_data``) and hands back one
  message at a time (``next_message``), so the caller decides how fast to
  take them: a flood of messages waits in the (bounded) buffer, not as a
  list of parsed objects.
* Message types the protocol does not know are skipped, as ASP.NET and the
  official clients do ("future protocol changes can add message types").
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

from .framing import Framer
from .messages import HubMessage, TransferFormat

__all__ = ["FramedReader", "HubProtocol", "MessageReader"]


class MessageReader(abc.ABC):
    """One connection's incremental parser."""

    __slots__ = ()

    @abc.abstractmethod
    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes received from the peer; any chunking is fine."""

    @abc.abstractmethod
    def next_message(self) -> HubMessage | None:
        """The next complete message, or ``None`` until more bytes arrive.

        Raises:
            ProtocolError: the bytes are not a valid message, or one is over the size limit.
        """


class FramedReader(MessageReader):
    """A reader made of a framing and a decoder: each frame becomes a message (or is skipped)."""

    __slots__ = ("_decode", "_framer")  # one per connection: no dict each

    def __init__(self, framer: Framer, decode: Callable[[bytes], HubMessage | None]) -> None:
        self._framer = framer
        self._decode = decode

    def receive_data(self, data: bytes | bytearray) -> None:
        self._framer.receive_data(data)

    def next_message(self) -> HubMessage | None:
        while (record := self._framer.next_record()) is not None:
            message = self._decode(record)
            if message is not None:
                return message
        return None


class HubProtocol(abc.ABC):
    """An encoding of the hub protocol's messages."""

    name: ClassVar[str]
    """What the handshake's ``protocol`` field says, e.g. ``"json"``."""
    version: ClassVar[int]
    """The highest protocol version spoken; every version from 0 up is accepted."""
    transfer_format: ClassVar[TransferFormat]
    """What a transport must carry for this protocol."""

    @abc.abstractmethod
    def reader(self, max_message_size: int) -> MessageReader:
        """A fresh reader that refuses messages over ``max_message_size`` bytes."""

    @abc.abstractmethod
    def encode(self, message: HubMessage) -> bytes:
        """``message`` as framed bytes, ready to send.

        Raises:
            TypeError, ValueError: a value in the message cannot be encoded.
        """
