"""The hub protocol's messages, as frozen dataclasses (HubProtocol.md, "Overview").

Rules of this module:

* One class per message type, named as the spec names it, with the fields
  the spec gives it, in snake_case. Nothing here knows an encoding: JSON and
  MessagePack (``json.py``, ``messagepack.py``) turn these into bytes and back.
* Every message but Ping, Close, Ack and Sequence may carry ``headers``
  (string keys, string values); they are kept and passed on, never interpreted.
* A Completion says three different things: done with nothing (``void``),
  done with a value (``has_result``, even when the value is ``None``), or
  failed (``error``). The constructors make the three hard to mix up.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "Ack",
    "CancelInvocation",
    "Close",
    "Completion",
    "HubMessage",
    "Invocation",
    "MessageType",
    "Ping",
    "Sequence_",
    "StreamInvocation",
    "StreamItem",
    "TransferFormat",
    "is_trackable",
]


class MessageType(enum.IntEnum):
    """The ``type`` number every message starts with."""

    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7
    ACK = 8
    SEQUENCE = 9


class TransferFormat(enum.Enum):
    """What a transport can carry (TransportProtocols.md, "Transfer Formats")."""

    TEXT = "Text"
    BINARY = "Binary"


@dataclass(frozen=True, slots=True)
class Invocation:
    """Call ``target`` on the peer. Without an ``invocation_id`` no answer is expected."""

    target: str
    arguments: Sequence[Any] = ()
    invocation_id: str | None = None
    stream_ids: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamInvocation:
    """Call a streaming ``target``: the answer is StreamItems, then a Completion."""

    invocation_id: str
    target: str
    arguments: Sequence[Any] = ()
    stream_ids: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One item of a stream: server-to-client for a StreamInvocation, or an upload's item."""

    invocation_id: str
    item: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of an invocation or of a stream; build it with ``void``, ``with_result`` or ``with_error``."""

    invocation_id: str
    result: Any = None
    error: str | None = None
    has_result: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.error is not None and self.has_result:
            raise ValueError("a Completion carries a result or an error, not both")

    @classmethod
    def void(cls, invocation_id: str) -> Completion:
        """Done, with no value: a void method, or the end of a stream."""
        return cls(invocation_id)

    @classmethod
    def with_result(cls, invocation_id: str, result: Any) -> Completion:
        """Done, with ``result`` (which may be ``None``)."""
        return cls(invocation_id, result=result, has_result=True)

    @classmethod
    def with_error(cls, invocation_id: str, error: str) -> Completion:
        """Failed, with the text the peer shows its caller."""
        return cls(invocation_id, error=error)


@dataclass(frozen=True, slots=True)
class CancelInvocation:
    """Stop a stream; the callee still answers with a Completion."""

    invocation_id: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ping:
    """Keep-alive: "I am still here". It carries nothing, not even headers."""


@dataclass(frozen=True, slots=True)
class Close:
    """The connection ends. ``allow_reconnect`` lets a client's automatic reconnect start."""

    error: str | None = None
    allow_reconnect: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """Stateful reconnect: every trackable message up to ``sequence_id`` arrived."""

    sequence_id: int


@dataclass(frozen=True, slots=True)
class Sequence_:
    """Stateful reconnect: the next trackable message the sender sends has ``sequence_id``.

    Named with a trailing underscore so as not to shadow ``collections.abc.Sequence``.
    """

    sequence_id: int


HubMessage: TypeAlias = (
    Invocation
    | StreamInvocation
    | StreamItem
    | Completion
    | CancelInvocation
    | Ping
    | Close
    | Ack
    | Sequence_
)

_TRACKABLE = (Invocation, StreamInvocation, StreamItem, Completion, CancelInvocation)


def is_trackable(message: HubMessage) -> bool:
    """Whether stateful reconnect numbers, buffers and replays ``message`` (types 1 to 5)."""
    return isinstance(message, _TRACKABLE)
