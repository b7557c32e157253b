"""Turning the arguments a client sends into what a hub method's annotations ask for.

A client sends JSON or MessagePack values: None, bools, numbers, strings,
bytes (MessagePack only), lists and maps. A hub method says what it wants
with ordinary annotations, and this module checks and converts:

=====================  ===================================================
annotation             accepts
=====================  ===================================================
none, ``Any``, object  anything, as it arrived
``str``, ``bool``      exactly that type
``int``                an integer (not a bool, not 2.0)
``float``              any number, as a float
``bytes``              binary data, or base64 text (how JSON carries bytes)
``datetime``           a timestamp, or ISO 8601 text
``uuid.UUID``          its text form
an ``Enum`` subclass   one of its values
a dataclass            a map of its fields (names match ignoring case and
                       underscores, so ``{"UserName": ...}`` fills ``user_name``)
a ``TypedDict``        a map, the values of its keys converted
``list[T]``, ...       an array, each item converted to ``T``
``dict[str, T]``       a map with string keys
``X | None``, unions   the first alternative that accepts the value
``Literal[...]``       one of the literal values
=====================  ===================================================

Rules of this module:

* Converters are built once, when a hub is set up, so an annotation this
  module cannot honour is a ``TypeError`` at start-up, not at the first call.
* A value that does not fit raises ``BindingError`` naming what was
  expected and what came; the dispatcher turns it into an error completion.
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import dataclasses
import datetime
import enum
import inspect
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["BindingError", "Converter", "converter_for", "describe_value"]

Converter: TypeAlias = Callable[[Any], Any]


class BindingError(Exception):
    """A value from the client does not fit the parameter's annotation.

    ``expected`` names what would have fitted, so that a union can list its
    alternatives in one sentence.
    """

    def __init__(self, message: str, expected: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected


def _mismatch(expected: str, value: Any) -> BindingError:
    return BindingError(f"expected {expected}, got {describe_value(value)}", expected)


def describe_value(value: Any) -> str:
    """A value's type as the client would call it."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return _NAMES.get(type(value), type(value).__name__)


_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", bytes: "binary data"}


def _identity(value: Any) -> Any:
    return value


def _exact(kind: type, name: str) -> Converter:
    def convert(value: Any) -> Any:
        if type(value) is not kind and not (isinstance(value, kind) and not isinstance(value, bool)):
            raise _mismatch(f"{name}", value)
        return value

    return convert


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch("a number", value)
    return float(value)


def _none(value: Any) -> None:
    if value is not None:
        raise _mismatch("null", value)
    return None


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BindingError("expected base64 text") from None
    raise _mismatch("binary data or base64 text", value)


def _datetime(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            raise BindingError(f"expected an ISO 8601 date and time, got {value!r}") from None
    raise _mismatch("a date and time", value)


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise _mismatch("a UUID", value)


_SIMPLE: dict[Any, Converter] = {
    str: _exact(str, "a string"),
    bool: _exact(bool, "a boolean"),
    int: _exact(int, "an integer"),
    float: _float,
    bytes: _bytes,
    datetime.datetime: _datetime,
    uuid.UUID: _uuid,
    None: _none,
    type(None): _none,
    list: _exact(list, "an array"),
    dict: _exact(dict, "an object"),
}

_SEQUENCES = (list, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)
_MAPPINGS = (dict, collections.abc.Mapping)


def converter_for(annotation: Any) -> Converter:
    """A converter for values meant for ``annotation``.

    Raises:
        TypeError: ``annotation`` is not one this module can check.
    """
    if annotation in (Any, object, inspect.Parameter.empty):
        return _identity
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        others = [converter_for(arg) for arg in args if arg is not type(None)]
        if len(others) == 1 and len(args) == 2:
            return _optional(others[0])  # X | None: X's own error is the clearest
        return _union([converter_for(arg) for arg in args])
    if origin is typing.Literal:
        return _literal(args)
    if origin is typing.Annotated:
        return converter_for(args[0])
    if origin in _SEQUENCES:
        return _list(converter_for(args[0]) if args else _identity)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = converter_for(args[0])
            return lambda value: tuple(_list(item)(value))
        return _fixed_tuple([converter_for(arg) for arg in args])
    if origin in _MAPPINGS:
        return _mapping(converter_for(args[1]) if args else _identity)
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _enum(annotation)
        if dataclasses.is_dataclass(annotation):
            return _dataclass(annotation)
        if typing.is_typeddict(annotation):
            return _typeddict(annotation)
    raise TypeError(
        f"trio_ws cannot convert arguments to {annotation!r}; use str, int, float, bool, bytes, datetime, "
        "UUID, an Enum, a dataclass, list, dict or a union of these, or Any to take the value as it comes"
    )


def _union(alternatives: list[Converter]) -> Converter:
    def convert(value: Any) -> Any:
        problems = []
        for alternative in alternatives:
            try:
                return alternative(value)
            except BindingError as exc:
                problems.append(exc.expected or str(exc))
        raise _mismatch(" or ".join(dict.fromkeys(problems)), value)

    return convert


def _optional(convert: Converter) -> Converter:
    return lambda value: None if value is None else convert(value)


def _literal(values: tuple[Any, ...]) -> Converter:
    def convert(value: Any) -> Any:
        for allowed in values:
            if value == allowed and type(value) is type(allowed):
                return value
        raise BindingError(f"expected one of {', '.join(map(repr, values))}, got {value!r}")

    return convert


def _list(item: Converter) -> Converter:
    def convert(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise _mismatch("an array", value)
        return [_at(item, element, f"item {index}") for index, element in enumerate(value)]

    return convert


def _fixed_tuple(items: list[Converter]) -> Converter:
    def convert(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise _mismatch(f"an array of {len(items)} items", value)
        return tuple(
            _at(item, element, f"item {i}")
            for i, (item, element) in enumerate(zip(items, value, strict=True))
        )

    return convert


def _mapping(item: Converter) -> Converter:
    def convert(value: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise _mismatch("an object", value)
        return {key: _at(item, element, f"property {key!r}") for key, element in value.items()}

    return convert


def _enum(kind: type[enum.Enum]) -> Converter:
    def convert(value: Any) -> enum.Enum:
        try:
            return kind(value)
        except (ValueError, TypeError):
            allowed = ", ".join(repr(member.value) for member in kind)
            raise BindingError(f"expected one of {allowed}, got {value!r}") from None

    return convert


def _squash(name: str) -> str:
    return name.replace("_", "").lower()


def _dataclass(kind: type[Any]) -> Converter:
    # Built on first use, because dataclasses may refer to each other (or to themselves).
    fields: list[tuple[str, Converter, bool]] | None = None

    def convert(value: Any) -> Any:
        nonlocal fields
        if fields is None:
            hints = typing.get_type_hints(kind, include_extras=True)
            fields = [
                (
                    field.name,
                    converter_for(hints.get(field.name, Any)),
                    field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
                )
                for field in dataclasses.fields(kind)
                if field.init
            ]
        if not isinstance(value, dict):
            raise _mismatch("an object", value)
        given = {_squash(key): element for key, element in value.items() if isinstance(key, str)}
        kwargs = {}
        for name, converter, required in fields:
            key = _squash(name)
            if key in given:
                kwargs[name] = _at(converter, given[key], f"property {name!r}")
            elif required:
                raise BindingError(f"missing property {name!r}")
        return kind(**kwargs)

    return convert


def _typeddict(kind: type[Any]) -> Converter:
    # Built on first use, as for dataclasses. The keys present are converted; the class's
    # required keys are not enforced (they cannot be read reliably from string annotations).
    fields: dict[str, Converter] | None = None

    def convert(value: Any) -> Any:
        nonlocal fields
        if fields is None:
            hints = typing.get_type_hints(kind)
            fields = {name: converter_for(hint) for name, hint in hints.items()}
        if not isinstance(value, dict):
            raise _mismatch("an object", value)
        return {
            key: _at(fields[key], element, f"property {key!r}") if key in fields else element
            for key, element in value.items()
        }

    return convert


def _at(converter: Converter, value: Any, where: str) -> Any:
    try:
        return converter(value)
    except BindingError as exc:
        raise BindingError(f"{where}: {exc}") from None
