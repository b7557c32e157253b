"""The JSON hub protocol (HubProtocol.md, "JSON Encoding").

Rules of this module:

* Each message is one JSON object followed by ``0x1E``; property names are
  the spec's (``invocationId``, ``streamIds``, ``allowReconnect``...).
* Strict on what must be there and on its type, as ASP.NET is; properties
  nobody knows are ignored, as ASP.NET ignores them.
* JSON itself is strict too: UTF-8 only, and no ``NaN`` or ``Infinity``,
  which are not JSON and which other clients cannot read.
* An empty ``invocationId`` means none, as ASP.NET treats it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from .codec import FramedReader, HubProtocol, MessageReader
from .errors import ProtocolError
from .framing import TextFramer
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
from .values import json_default

__all__ = ["JSON", "JsonProtocol", "dumps_record", "loads_record"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=json_default)
_PING = b'{"type":6}\x1e'


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every record: ``json.loads(..., parse_constant=...)`` would build a new one per call.
_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def loads_record(record: bytes) -> Any:
    """One record's JSON value.

    Raises:
        ProtocolError: the record is not UTF-8 JSON.
    """
    try:
        text = record.decode("utf-8")
        if text[:1] == "{":  # what clients send: no whitespace around the object, so skip looking for it
            value, end = _decoder.raw_decode(text)
            if end == len(text):
                return value
        return _decoder.decode(text)  # whitespace around the value, or something after it (an error)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers too long to convert.
        raise ProtocolError(f"invalid JSON: {exc}") from None


def dumps_record(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON followed by the record separator."""
    return _encoder.encode(value).encode("utf-8") + b"\x1e"


def _decode(record: bytes) -> HubMessage | None:
    """One record as a message (``None``: a message type to skip)."""
    return _from_object(loads_record(record))


class JsonProtocol(HubProtocol):
    """``{"protocol": "json"}``: text frames, every message a JSON object."""

    name: ClassVar[str] = "json"
    version: ClassVar[int] = 2
    transfer_format: ClassVar[TransferFormat] = TransferFormat.TEXT

    def reader(self, max_message_size: int) -> MessageReader:
        return FramedReader(TextFramer(max_message_size), _decode)

    def encode(self, message: HubMessage) -> bytes:
        if isinstance(message, Ping):
            return _PING
        return dumps_record(_to_object(message))


JSON = JsonProtocol()


def _to_object(message: HubMessage) -> dict[str, Any]:
    obj: dict[str, Any]
    match message:
        case Invocation():
            obj = {"type": MessageType.INVOCATION.value}
            if message.invocation_id is not None:
                obj["invocationId"] = message.invocation_id
            obj["target"] = message.target
            obj["arguments"] = list(message.arguments)
            if message.stream_ids:
                obj["streamIds"] = list(message.stream_ids)
        case StreamInvocation():
            obj = {"type": MessageType.STREAM_INVOCATION.value, "invocationId": message.invocation_id}
            obj["target"] = message.target
            obj["arguments"] = list(message.arguments)
            if message.stream_ids:
                obj["streamIds"] = list(message.stream_ids)
        case StreamItem():
            obj = {"type": MessageType.STREAM_ITEM.value, "invocationId": message.invocation_id}
            obj["item"] = message.item
        case Completion():
            obj = {"type": MessageType.COMPLETION.value, "invocationId": message.invocation_id}
            if message.error is not None:
                obj["error"] = message.error
            elif message.has_result:
                obj["result"] = message.result
        case CancelInvocation():
            obj = {"type": MessageType.CANCEL_INVOCATION.value, "invocationId": message.invocation_id}
        case Close():
            obj = {"type": MessageType.CLOSE.value}
            if message.error is not None:
                obj["error"] = message.error
            if message.allow_reconnect:
                obj["allowReconnect"] = True
            return obj
        case Ack():
            return {"type": MessageType.ACK.value, "sequenceId": message.sequence_id}
        case Sequence_():
            return {"type": MessageType.SEQUENCE.value, "sequenceId": message.sequence_id}
        case _:  # pragma: no cover - Ping is encoded in advance; the match is exhaustive
            raise TypeError(f"not a hub message: {message!r}")
    if message.headers:
        obj["headers"] = dict(message.headers)
    return obj


def _from_object(obj: Any) -> HubMessage | None:
    if not isinstance(obj, dict):
        raise ProtocolError("a message must be a JSON object")
    if "type" not in obj:
        raise ProtocolError("missing required property 'type'")
    kind = obj["type"]
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise ProtocolError("expected 'type' to be an integer")
    match kind:
        case MessageType.INVOCATION:
            return Invocation(
                target=_required_str(obj, "target"),
                arguments=tuple(_arguments(obj)),
                invocation_id=_optional_id(obj),
                stream_ids=_stream_ids(obj),
                headers=_headers(obj),
            )
        case MessageType.STREAM_INVOCATION:
            return StreamInvocation(
                invocation_id=_required_id(obj),
                target=_required_str(obj, "target"),
                arguments=tuple(_arguments(obj)),
                stream_ids=_stream_ids(obj),
                headers=_headers(obj),
            )
        case MessageType.STREAM_ITEM:
            if "item" not in obj:
                raise ProtocolError("missing required property 'item'")
            return StreamItem(_required_id(obj), obj["item"], headers=_headers(obj))
        case MessageType.COMPLETION:
            return _completion(obj)
        case MessageType.CANCEL_INVOCATION:
            return CancelInvocation(_required_id(obj), headers=_headers(obj))
        case MessageType.PING:
            return Ping()
        case MessageType.CLOSE:
            error = obj.get("error")
            if error is not None and not isinstance(error, str):
                raise ProtocolError("expected 'error' to be a string")
            allow = obj.get("allowReconnect", False)
            if not isinstance(allow, bool):
                raise ProtocolError("expected 'allowReconnect' to be a boolean")
            return Close(error, allow)
        case MessageType.ACK:
            return Ack(_sequence_id(obj))
        case MessageType.SEQUENCE:
            return Sequence_(_sequence_id(obj))
    return None


def _completion(obj: dict[str, Any]) -> Completion:
    invocation_id = _required_id(obj)
    headers = _headers(obj)
    error = obj.get("error")
    if error is not None:
        if not isinstance(error, str):
            raise ProtocolError("expected 'error' to be a string")
        if "result" in obj:
            raise ProtocolError("the 'error' and 'result' properties are mutually exclusive")
        return Completion(invocation_id, error=error, headers=headers)
    if "result" in obj:
        return Completion(invocation_id, result=obj["result"], has_result=True, headers=headers)
    return Completion(invocation_id, headers=headers)


def _required_str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise ProtocolError(f"missing required property '{name}'")
    if not isinstance(value, str):
        raise ProtocolError(f"expected '{name}' to be a string")
    return value


def _required_id(obj: dict[str, Any]) -> str:
    value = _required_str(obj, "invocationId")
    if not value:
        raise ProtocolError("expected 'invocationId' to be a non-empty string")
    return value


def _optional_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("invocationId")
    if value is not None and not isinstance(value, str):
        raise ProtocolError("expected 'invocationId' to be a string")
    return value or None


def _arguments(obj: dict[str, Any]) -> list[Any]:
    if "arguments" not in obj:
        raise ProtocolError("missing required property 'arguments'")
    arguments = obj["arguments"]
    if not isinstance(arguments, list):
        raise ProtocolError("expected 'arguments' to be an array")
    return arguments


def _stream_ids(obj: dict[str, Any]) -> tuple[str, ...]:
    ids = obj.get("streamIds")
    if ids is None:
        return ()
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise ProtocolError("expected 'streamIds' to be an array of non-empty strings")
    return tuple(ids)


def _headers(obj: dict[str, Any]) -> Mapping[str, str]:
    headers = obj.get("headers")
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ProtocolError("expected 'headers' to be an object of strings")
    return headers


def _sequence_id(obj: dict[str, Any]) -> int:
    value = obj.get("sequenceId")
    if value is None:
        raise ProtocolError("missing required property 'sequenceId'")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError("expected 'sequenceId' to be a non-negative integer")
    return value
