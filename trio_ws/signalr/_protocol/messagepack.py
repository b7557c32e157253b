"""The MessagePack hub protocol (HubProtocol.md, "MessagePack (MsgPack) encoding").

Rules of this module:

* Each message is one MessagePack array, type first, prefixed by its length
  as a VarInt (``framing.BinaryFramer``). Arrays may be longer than this
  version knows (later versions may add items); they may not be shorter.
* Headers are a map of strings to strings; Ping never has them.
* A Completion says what it carries in its fourth item: 1 an error, 2
  nothing, 3 a result.
* Binary data arrives as ``bytes`` and timestamps as timezone-aware
  ``datetime`` objects; strings must be valid UTF-8.
* An empty invocation id means none, as ASP.NET treats it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgpack

from .codec import FramedReader, HubProtocol, MessageReader
from .errors import ProtocolError
from .framing import BinaryFramer, encode_varint
from .messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    MessageType,
    Ping,
    Sequence_,
    StreamInvocation,
    StreamItem,
    TransferFormat,
)
from .values import packb

__all__ = ["MESSAGEPACK", "MessagePackProtocol"]

_ERROR, _VOID, _RESULT = 1, 2, 3


def _frame(value: Any) -> bytes:
    body = packb(value)
    return encode_varint(len(body)) + body


_PING = _frame([MessageType.PING.value])


def _decode(body: bytes) -> HubMessage | None:
    """One message body as a message (``None``: a message type to skip)."""
    return _from_array(_unpack(body))


class MessagePackProtocol(HubProtocol):
    """``{"protocol": "messagepack"}``: binary frames, every message an array."""

    name: ClassVar[str] = "messagepack"
    version: ClassVar[int] = 2
    transfer_format: ClassVar[TransferFormat] = TransferFormat.BINARY

    def reader(self, max_message_size: int) -> MessageReader:
        return FramedReader(BinaryFramer(max_message_size), _decode)

    def encode(self, message: HubMessage) -> bytes:
        if isinstance(message, Ping):
            return _PING
        return _frame(_to_array(message))


MESSAGEPACK = MessagePackProtocol()


def _unpack(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, timestamp=3)
    except Exception as exc:
        # The C unpacker reports bad data with ValueError and its subclasses (ExtraData,
        # FormatError, StackError), unhashable map keys with TypeError, and out-of-range
        # timestamps with OverflowError; any of them means the peer sent bytes we refuse.
        raise ProtocolError(f"invalid MessagePack: {type(exc).__name__}: {exc}") from None


def _to_array(message: HubMessage) -> list[Any]:
    match message:
        case Invocation():
            return [
                MessageType.INVOCATION.value,
                dict(message.headers),
                message.invocation_id,
                message.target,
                list(message.arguments),
                list(message.stream_ids),
            ]
        case StreamInvocation():
            return [
                MessageType.STREAM_INVOCATION.value,
                dict(message.headers),
                message.invocation_id,
                message.target,
                list(message.arguments),
                list(message.stream_ids),
            ]
        case StreamItem():
            return [MessageType.STREAM_ITEM.value, dict(message.headers), message.invocation_id, message.item]
        case Completion():
            head = [MessageType.COMPLETION.value, dict(message.headers), message.invocation_id]
            if message.error is not None:
                return [*head, _ERROR, message.error]
            if message.has_result:
                return [*head, _RESULT, message.result]
            return [*head, _VOID]
        case CancelInvocation():
            return [MessageType.CANCEL_INVOCATION.value, dict(message.headers), message.invocation_id]
        case Close():
            return [MessageType.CLOSE.value, message.error, message.allow_reconnect]
        case Ack():
            return [MessageType.ACK.value, message.sequence_id]
        case Sequence_():
            return [MessageType.SEQUENCE.value, message.sequence_id]
        case _:  # pragma: no cover - Ping is encoded in advance; the match is exhaustive
            raise TypeError(f"not a hub message: {message!r}")


def _from_array(array: Any) -> HubMessage | None:
    if not isinstance(array, list) or not array:
        raise ProtocolError("a message must be a non-empty array")
    kind = array[0]
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise ProtocolError("the first item of a message must be its type, an integer")
    match kind:
        case MessageType.INVOCATION | MessageType.STREAM_INVOCATION:
            _need(array, 5, "an invocation: type, headers, invocation id, target and arguments")
            invocation_id = _id(array[2], required=kind == MessageType.STREAM_INVOCATION)
            target = _string(array[3], "target")
            arguments = array[4]
            if not isinstance(arguments, list):
                raise ProtocolError("expected the arguments to be an array")
            arguments = tuple(arguments)
            stream_ids = _stream_ids(array[5] if len(array) > 5 else None)
            if kind == MessageType.INVOCATION:
                return Invocation(target, arguments, invocation_id, stream_ids, _headers(array[1]))
            assert invocation_id is not None
            return StreamInvocation(invocation_id, target, arguments, stream_ids, _headers(array[1]))
        case MessageType.STREAM_ITEM:
            _need(array, 4, "a stream item: type, headers, invocation id and item")
            return StreamItem(_required_id(array[2]), array[3], _headers(array[1]))
        case MessageType.COMPLETION:
            return _completion(array)
        case MessageType.CANCEL_INVOCATION:
            _need(array, 3, "a cancel invocation: type, headers and invocation id")
            return CancelInvocation(_required_id(array[2]), _headers(array[1]))
        case MessageType.PING:
            return Ping()
        case MessageType.CLOSE:
            _need(array, 2, "a close: type and error")
            error = array[1]
            if error is not None and not isinstance(error, str):
                raise ProtocolError("expected the close error to be a string or nil")
            allow = array[2] if len(array) > 2 else False
            if not isinstance(allow, bool):
                raise ProtocolError("expected allowReconnect to be a boolean")
            return Close(error, allow)
        case MessageType.ACK | MessageType.SEQUENCE:
            _need(array, 2, "an ack or sequence: type and sequence id")
            sequence_id = array[1]
            if not isinstance(sequence_id, int) or isinstance(sequence_id, bool) or sequence_id < 0:
                raise ProtocolError("expected the sequence id to be a non-negative integer")
            return Ack(sequence_id) if kind == MessageType.ACK else Sequence_(sequence_id)
    return None


def _completion(array: list[Any]) -> Completion:
    _need(array, 4, "a completion: type, headers, invocation id and result kind")
    headers, invocation_id, result_kind = _headers(array[1]), _required_id(array[2]), array[3]
    if result_kind == _VOID and not isinstance(result_kind, bool):
        return Completion(invocation_id, headers=headers)
    if result_kind in (_ERROR, _RESULT) and not isinstance(result_kind, bool):
        _need(array, 5, "a completion with an error or a result")
        if result_kind == _RESULT:
            return Completion(invocation_id, result=array[4], has_result=True, headers=headers)
        return Completion(invocation_id, error=_string(array[4], "error"), headers=headers)
    raise ProtocolError(f"invalid completion result kind {result_kind!r}: expected 1, 2 or 3")


def _need(array: list[Any], count: int, what: str) -> None:
    if len(array) < count:
        raise ProtocolError(f"a message of {len(array)} items is too short for {what}")


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"expected the {name} to be a string")
    return value


def _id(value: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise ProtocolError("expected the invocation id to be a non-empty string")
        return None
    return _string(value, "invocation id")


def _required_id(value: Any) -> str:
    invocation_id = _id(value, required=True)
    assert invocation_id is not None
    return invocation_id


def _stream_ids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
        raise ProtocolError("expected the stream ids to be an array of non-empty strings")
    return tuple(value)


def _headers(value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ProtocolError("expected the headers to be a map of strings to strings")
    return value
