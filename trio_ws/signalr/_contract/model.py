"""What a hub offers and expects, read from its type hints alone: the model the contracts render.

``describe_hub(Shapes)`` walks the hub's methods (as ``_methods`` finds them)
and its client protocol (as ``_typed`` reads it), and turns every annotation
into a small tree of ``TypeRef`` values, with the dataclasses, ``TypedDict``
classes and enums they use collected as named types.

Rules of this module:

* Nothing is guessed: an unannotated parameter, ``Any``, ``object``, a bare
  ``list``, or a class that is not a dataclass, ``TypedDict`` or ``Enum``
  is a ``ContractError`` naming the method and the parameter, never an
  "anything" type in the output.
* Wire names are the hub's: PascalCase or ``@hub_method``'s name.
* Two named types with one ``__name__`` (from two modules) are refused, as
  the outputs name types by it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import inspect
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ..._errors import TrioWsError
from .._hub.hub import Hub
from .._hub.methods import discover_methods
from .._hub.streams import HubStream
from .._hub.typed import client_methods, client_protocol_of

__all__ = [
    "ArrayOf",
    "ContractError",
    "EnumType",
    "HubContract",
    "LiteralOf",
    "MapOf",
    "Named",
    "ObjectType",
    "Operation",
    "Parameter",
    "Primitive",
    "TupleOf",
    "TypeRef",
    "UnionOf",
    "describe_hub",
]


class ContractError(TrioWsError, TypeError):
    """A hub's type hints cannot be written as a contract; the text says where and what to change.

    Raised by ``typescript_contract`` and ``asyncapi_contract`` (and so by
    ``python -m trio_ws.signalr.contract``) for an unannotated parameter,
    ``Any``, or a class that is neither a dataclass nor a ``TypedDict``; the
    text names the method and the parameter.
    """


@dataclass(frozen=True)
class Primitive:
    """``string``, ``integer``, ``number``, ``boolean``, ``null``, ``bytes``, ``datetime`` or ``uuid``."""

    kind: str


@dataclass(frozen=True)
class ArrayOf:
    item: TypeRef


@dataclass(frozen=True)
class TupleOf:
    items: tuple[TypeRef, ...]


@dataclass(frozen=True)
class MapOf:
    """An object with string keys and values of one type."""

    value: TypeRef


@dataclass(frozen=True)
class UnionOf:
    options: tuple[TypeRef, ...]


@dataclass(frozen=True)
class LiteralOf:
    values: tuple[str | int | bool | None, ...]


@dataclass(frozen=True)
class Named:
    """A dataclass, ``TypedDict`` or enum, by name (see ``HubContract.types``)."""

    name: str


TypeRef: TypeAlias = Primitive | ArrayOf | TupleOf | MapOf | UnionOf | LiteralOf | Named


@dataclass(frozen=True)
class Field:
    name: str
    type: TypeRef
    required: bool


@dataclass(frozen=True)
class ObjectType:
    """A dataclass or ``TypedDict``: an object with these fields."""

    name: str
    doc: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class EnumType:
    """An ``Enum``, carried as its members' values."""

    name: str
    doc: str
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class Parameter:
    name: str
    type: TypeRef
    optional: bool  # has a default, so a caller may leave it (and those after it) out
    stream: bool  # a HubStream[T] the client uploads (type is T)


@dataclass(frozen=True)
class Operation:
    """A hub method, or a method of the client protocol."""

    attribute: str  # the Python name
    name: str  # the wire name
    doc: str
    parameters: tuple[Parameter, ...]
    result: TypeRef  # the stream's item type when ``streams``; null for None
    streams: bool = False


@dataclass
class HubContract:
    """A hub's methods, its client protocol's methods, and the named types they use, in order."""

    name: str
    doc: str
    server: list[Operation]
    client: list[Operation]
    types: dict[str, ObjectType | EnumType] = field(default_factory=dict)


NULL = Primitive("null")
_PRIMITIVES: dict[Any, Primitive] = {
    str: Primitive("string"),
    int: Primitive("integer"),
    float: Primitive("number"),
    bool: Primitive("boolean"),
    None: NULL,
    type(None): NULL,
    bytes: Primitive("bytes"),
    datetime.datetime: Primitive("datetime"),
    uuid.UUID: Primitive("uuid"),
}
_SEQUENCES = (list, set, frozenset, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Set)
_MAPPINGS = (dict, collections.abc.Mapping)
_STREAMS = (collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator)


def _doc(thing: Any) -> str:
    return inspect.cleandoc(thing.__doc__) if getattr(thing, "__doc__", None) else ""


class _Reader:
    """Turns annotations into ``TypeRef`` values, collecting named types on the way."""

    def __init__(self) -> None:
        self.types: dict[str, ObjectType | EnumType] = {}
        self._sources: dict[str, type] = {}

    def read(self, annotation: Any) -> TypeRef:
        if annotation in (Any, object, inspect.Parameter.empty):
            what = "no annotation" if annotation is inspect.Parameter.empty else repr(annotation)
            raise ContractError(
                f"{what} cannot be written as a contract type; annotate it with a precise type"
            )
        if annotation in _PRIMITIVES:
            return _PRIMITIVES[annotation]
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is typing.Annotated:
            return self.read(args[0])
        if origin in (typing.Union, types.UnionType):
            options: list[TypeRef] = []
            for arg in args:
                option = self.read(arg)
                if option not in options:
                    options.append(option)
            return options[0] if len(options) == 1 else UnionOf(tuple(options))
        if origin is typing.Literal:
            for value in args:
                if not isinstance(value, str | int | bool | None) or isinstance(value, enum.Enum):
                    raise ContractError(f"Literal value {value!r} is not a string, number, boolean or None")
            return LiteralOf(tuple(args))
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return ArrayOf(self.read(args[0]))
            if not args:
                raise ContractError(
                    "a bare tuple says nothing of its items; write tuple[int, str] or tuple[int, ...]"
                )
            return TupleOf(tuple(self.read(arg) for arg in args))
        if origin in _SEQUENCES or annotation in _SEQUENCES:
            if not args:
                raise ContractError(f"{annotation!r} says nothing of its items; write list[int], for example")
            return ArrayOf(self.read(args[0]))
        if origin in _MAPPINGS or annotation in _MAPPINGS:
            if len(args) != 2:
                raise ContractError(
                    f"{annotation!r} says nothing of its values; write dict[str, int], for example"
                )
            if args[0] is not str:
                raise ContractError(f"{annotation!r}: JSON objects have string keys; use dict[str, ...]")
            return MapOf(self.read(args[1]))
        if isinstance(annotation, type):
            if issubclass(annotation, enum.Enum):
                return self._enum(annotation)
            if dataclasses.is_dataclass(annotation) or typing.is_typeddict(annotation):
                return self._object(annotation)
        raise ContractError(
            f"{annotation!r} cannot be written as a contract type; use str, int, float, bool, None, bytes, "
            "datetime, UUID, an Enum, a dataclass, a TypedDict, list, tuple, dict[str, ...], Literal or a "
            "union of these"
        )

    def _claim(self, kind: type) -> bool:
        """Reserve ``kind``'s name; ``False`` if it is already described."""
        known = self._sources.get(kind.__name__)
        if known is kind:
            return False
        if known is not None:
            raise ContractError(
                f"two types are named {kind.__name__!r} ({known.__module__} and {kind.__module__}); "
                "rename one, as the contract names types by their class name"
            )
        self._sources[kind.__name__] = kind
        return True

    def _enum(self, kind: type[enum.Enum]) -> Named:
        if self._claim(kind):
            values = tuple(member.value for member in kind)
            for value in values:
                if not isinstance(value, str | int) or isinstance(value, bool):
                    raise ContractError(
                        f"{kind.__name__}'s values must be strings or integers, not {value!r}"
                    )
            self.types[kind.__name__] = EnumType(
                kind.__name__, _doc(kind) if kind.__doc__ != "An enumeration." else "", values
            )
        return Named(kind.__name__)

    def _object(self, kind: type) -> Named:
        if not self._claim(kind):
            return Named(kind.__name__)
        self.types[kind.__name__] = ObjectType(kind.__name__, "", ())  # a placeholder while recursing
        hints = typing.get_type_hints(kind)
        fields: list[Field] = []
        if dataclasses.is_dataclass(kind):
            for item in dataclasses.fields(kind):
                required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
                fields.append(Field(item.name, self._field(kind, item.name, hints), required))
        else:
            # Read Required/NotRequired from the hints: __required_keys__ misses them when the
            # annotations are strings (from __future__ import annotations) before Python 3.14.
            extras = typing.get_type_hints(kind, include_extras=True)
            total = getattr(kind, "__total__", True)
            for name in hints:
                origin = typing.get_origin(extras[name])
                required = (
                    True if origin is typing.Required else False if origin is typing.NotRequired else total
                )
                fields.append(Field(name, self._field(kind, name, hints), required))
        doc = _doc(kind)
        if dataclasses.is_dataclass(kind) and doc.startswith(f"{kind.__name__}("):
            doc = ""  # the signature dataclasses writes when a class has no docstring
        self.types[kind.__name__] = ObjectType(kind.__name__, doc, tuple(fields))
        return Named(kind.__name__)

    def _field(self, kind: type, name: str, hints: dict[str, Any]) -> TypeRef:
        try:
            return self.read(hints.get(name, inspect.Parameter.empty))
        except ContractError as exc:
            raise ContractError(f"field {kind.__name__}.{name}: {exc}") from None


def _parameters(reader: _Reader, where: str, function: Callable[..., Any]) -> tuple[Parameter, ...]:
    hints = typing.get_type_hints(function)
    parameters: list[Parameter] = []
    for position, parameter in enumerate(inspect.signature(function).parameters.values()):
        if position == 0 or parameter.kind is parameter.KEYWORD_ONLY:
            continue  # self; keyword-only arguments cannot come from a client
        annotation = hints.get(parameter.name, inspect.Parameter.empty)
        stream = annotation is HubStream or typing.get_origin(annotation) is HubStream
        try:
            if stream:
                item = typing.get_args(annotation)
                kind = reader.read(item[0] if item else inspect.Parameter.empty)
            else:
                kind = reader.read(annotation)
        except ContractError as exc:
            raise ContractError(f"{where}, parameter {parameter.name!r}: {exc}") from None
        parameters.append(Parameter(parameter.name, kind, parameter.default is not parameter.empty, stream))
    return tuple(parameters)


def _result(reader: _Reader, where: str, function: Callable[..., Any], streams: bool) -> TypeRef:
    hints = typing.get_type_hints(function)
    if "return" not in hints:
        raise ContractError(f"{where}, its result: no annotation; annotate the return type (-> None if none)")
    returns = hints["return"]
    if streams:
        item = typing.get_args(returns)
        returns = item[0] if item else inspect.Parameter.empty
    try:
        return reader.read(returns)
    except ContractError as exc:
        raise ContractError(f"{where}, its {'stream items' if streams else 'result'}: {exc}") from None


def describe_hub(hub_type: type) -> HubContract:
    """The contract of ``hub_type``: its methods, its client protocol's, and their types.

    Raises:
        ContractError: a type the contract cannot express, naming the method and parameter.
        TypeError: ``hub_type`` is not a ``Hub`` subclass, or not a valid hub.
    """
    if not (isinstance(hub_type, type) and issubclass(hub_type, Hub)):
        raise TypeError(f"a contract describes a Hub subclass, not {hub_type!r}")
    reader = _Reader()
    server: list[Operation] = []
    for method in discover_methods(hub_type, Hub).values():
        attribute = method.function.__name__
        where = f"{hub_type.__name__}.{attribute}"
        parameters = _parameters(reader, where, method.function)
        result = _result(reader, where, method.function, method.streams_result)
        server.append(
            Operation(
                attribute, method.name, _doc(method.function), parameters, result, method.streams_result
            )
        )
    client: list[Operation] = []
    protocol = client_protocol_of(hub_type)
    if protocol is not None:
        for attribute, described in client_methods(protocol).items():
            where = f"{protocol.__name__}.{attribute}"
            function = described.function
            parameters = _parameters(reader, where, function)
            if any(parameter.stream for parameter in parameters):
                raise ContractError(f"{where}: the hub cannot upload streams to its clients")
            result = _result(reader, where, function, False)
            client.append(Operation(attribute, described.name, _doc(function), parameters, result))
    return HubContract(hub_type.__name__, _doc(hub_type), server, client, reader.types)
