"""A hub's contract as an AsyncAPI 3.0 document (JSON), for documentation and tools.

The document describes the application that serves the hub, over the JSON
hub protocol:

* one channel, the hub (``address`` is its path when one is given), holding
  every message either side sends;
* a ``receive`` operation per hub method: its Invocation (or StreamInvocation)
  message, with a reply of its Completion (and StreamItems, for a stream);
* a ``send`` operation per method of the client protocol, with a reply of the
  client's Completion for a client result;
* the dataclasses, ``TypedDict`` classes and enums as schemas under
  ``components.schemas``, in JSON Schema as AsyncAPI's schema format reads it.

Rules of this module: payloads are the hub protocol's own messages (``type``,
``target``, ``arguments``...), as they travel; ``bytes`` are base64 text and
datetimes ISO 8601 text, as the JSON protocol carries them.
"""

from __future__ import annotations

from typing import Any

from .model import (
    ArrayOf,
    EnumType,
    HubContract,
    LiteralOf,
    MapOf,
    Named,
    Operation,
    Primitive,
    TupleOf,
    TypeRef,
)

__all__ = ["render_asyncapi"]

_PRIMITIVES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "bytes": {"type": "string", "contentEncoding": "base64", "description": "bytes, as base64 text"},
    "datetime": {"type": "string", "format": "date-time"},
    "uuid": {"type": "string", "format": "uuid"},
}
_INVOCATION, _STREAM_ITEM, _COMPLETION, _STREAM_INVOCATION = 1, 2, 3, 4


def schema(ref: TypeRef) -> dict[str, Any]:
    """The JSON Schema of one type."""
    if isinstance(ref, Primitive):
        return dict(_PRIMITIVES[ref.kind])
    if isinstance(ref, Named):
        return {"$ref": f"#/components/schemas/{ref.name}"}
    if isinstance(ref, ArrayOf):
        return {"type": "array", "items": schema(ref.item)}
    if isinstance(ref, TupleOf):
        count = len(ref.items)
        return {
            "type": "array",
            "items": [schema(item) for item in ref.items],
            "minItems": count,
            "maxItems": count,
        }
    if isinstance(ref, MapOf):
        return {"type": "object", "additionalProperties": schema(ref.value)}
    if isinstance(ref, LiteralOf):
        return {"enum": list(ref.values)}
    return {"anyOf": [schema(option) for option in ref.options]}


def _arguments(operation: Operation) -> dict[str, Any]:
    plain = [parameter for parameter in operation.parameters if not parameter.stream]
    required = sum(1 for parameter in plain if not parameter.optional)
    if not plain:
        return {"type": "array", "maxItems": 0}
    return {
        "type": "array",
        "items": [schema(parameter.type) | {"title": parameter.name} for parameter in plain],
        "minItems": required,
        "maxItems": len(plain),
    }


def _invocation(operation: Operation, *, summary: str) -> dict[str, Any]:
    streams = [parameter.name for parameter in operation.parameters if parameter.stream]
    properties: dict[str, Any] = {
        "type": {"const": _STREAM_INVOCATION if operation.streams else _INVOCATION},
        "invocationId": {"type": "string"},
        "target": {"const": operation.name},
        "arguments": _arguments(operation),
    }
    if streams:
        properties["streamIds"] = {
            "type": "array",
            "items": {"type": "string"},
            "minItems": len(streams),
            "maxItems": len(streams),
            "description": f"the ids of the uploaded streams: {', '.join(streams)}",
        }
    message: dict[str, Any] = {
        "name": operation.name,
        "title": f"{operation.name} ({'StreamInvocation' if operation.streams else 'Invocation'})",
        "summary": summary,
        "payload": {"type": "object", "required": ["type", "target", "arguments"], "properties": properties},
    }
    if operation.doc:
        message["description"] = operation.doc
    return message


def _completion(operation: Operation, *, what: str) -> dict[str, Any]:
    result = {
        "type": "object",
        "required": ["type", "invocationId", "result"],
        "properties": {
            "type": {"const": _COMPLETION},
            "invocationId": {"type": "string"},
            "result": schema(operation.result),
        },
    }
    failure = {
        "type": "object",
        "required": ["type", "invocationId", "error"],
        "properties": {
            "type": {"const": _COMPLETION},
            "invocationId": {"type": "string"},
            "error": {"type": "string"},
        },
    }
    if operation.streams or operation.result == Primitive("null"):
        result["required"] = ["type", "invocationId"]
        del result["properties"]["result"]  # type: ignore[attr-defined]
    return {
        "name": f"{operation.name}Completion",
        "title": f"{operation.name} (Completion)",
        "summary": what,
        "payload": {"oneOf": [result, failure]},
    }


def _stream_item(operation: Operation) -> dict[str, Any]:
    return {
        "name": f"{operation.name}Item",
        "title": f"{operation.name} (StreamItem)",
        "summary": f"One item of {operation.name}'s stream.",
        "payload": {
            "type": "object",
            "required": ["type", "invocationId", "item"],
            "properties": {
                "type": {"const": _STREAM_ITEM},
                "invocationId": {"type": "string"},
                "item": schema(operation.result),
            },
        },
    }


def _type_schema(kind: Any) -> dict[str, Any]:
    if isinstance(kind, EnumType):
        described: dict[str, Any] = {"enum": list(kind.values)}
    else:
        described = {
            "type": "object",
            "properties": {item.name: schema(item.type) for item in kind.fields},
            "required": [item.name for item in kind.fields if item.required],
        }
        if not described["required"]:
            del described["required"]
    if kind.doc:
        described["description"] = kind.doc
    return {"title": kind.name} | described


def render_asyncapi(
    contract: HubContract, *, address: str | None = None, version: str = "1.0.0"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for ``contract``, as JSON-ready data."""
    channel = contract.name
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def ref(key: str, message: dict[str, Any]) -> dict[str, str]:
        messages[key] = message
        return {"$ref": f"#/channels/{channel}/messages/{key}"}

    for operation in contract.server:
        name = operation.name
        call = ref(name, _invocation(operation, summary=f"A client calls the hub's {name}."))
        replies = [ref(f"{name}Completion", _completion(operation, what=f"The hub's answer to {name}."))]
        if operation.streams:
            replies.insert(0, ref(f"{name}Item", _stream_item(operation)))
        operations[operation.name] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"Clients call {operation.name}" + (" (a stream)." if operation.streams else "."),
            "messages": [call],
            "reply": {"channel": {"$ref": f"#/channels/{channel}"}, "messages": replies},
        }
    for operation in contract.client:
        name = f"Client{operation.name[:1].upper()}{operation.name[1:]}"
        call = ref(name, _invocation(operation, summary=f"The hub calls its clients' {operation.name}."))
        described: dict[str, Any] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"The hub calls {operation.name} on its clients.",
            "messages": [call],
        }
        if operation.result != Primitive("null"):
            answer = ref(
                f"{name}Completion", _completion(operation, what=f"The client's result for {operation.name}.")
            )
            described["reply"] = {"channel": {"$ref": f"#/channels/{channel}"}, "messages": [answer]}
        operations[name] = described
    info: dict[str, Any] = {"title": contract.name, "version": version}
    if contract.doc:
        info["description"] = contract.doc
    return {
        "asyncapi": "3.0.0",
        "info": info,
        "defaultContentType": "application/json",
        "channels": {
            channel: {
                "address": address,
                "title": f"The {contract.name} hub",
                "description": "A SignalR hub over the JSON hub protocol (records end with 0x1E).",
                "messages": messages,
            }
        },
        "operations": operations,
        "components": {"schemas": {name: _type_schema(kind) for name, kind in contract.types.items()}},
    }
