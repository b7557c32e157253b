"""Finding a hub's methods and calling them with a client's arguments.

A client calls ``"SendMessage"``; the hub defines ``async def
send_message(...)``. The rules that connect the two:

* Every public ``async def`` (or async generator) defined on a ``Hub``
  subclass is a hub method, except the ``on_connected`` and
  ``on_disconnected`` hooks. Names starting with ``_`` are not, and a public
  plain ``def`` is a mistake the hub refuses at start-up (it would block the
  whole server).
* A method's wire name is its Python name in PascalCase (``send_message`` ->
  ``SendMessage``), or the name given with ``@hub_method("Name")``. Clients'
  targets match it case-insensitively, as ASP.NET matches them; two methods
  whose names differ only in case are refused.
* An async generator, or an ``async def`` annotated to return an
  ``AsyncIterator``/``AsyncIterable``, streams its items to the client; the
  client must call it with a StreamInvocation, and the other methods with
  an Invocation. ``open_stream`` starts one and hands back its iterator;
  a streaming method that returns no async iterator is a bug in the hub.
* A parameter annotated ``HubStream[T]`` receives a stream the client
  uploads; the others take the invocation's arguments in order. Parameters
  with defaults may be left out by the client.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .binding import BindingError, Converter, converter_for
from .streams import HubStream

__all__ = [
    "HubMethod",
    "as_stream",
    "discover_methods",
    "hub_method",
    "open_stream",
    "pascal_case",
    "type_hints",
    "wire_name",
]

F = TypeVar("F", bound=Callable[..., Any])

_NAME_ATTRIBUTE = "__signalr_name__"
_HOOKS = frozenset({"on_connected", "on_disconnected"})  # overridden, never called by clients
_STREAM_RESULTS = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


def hub_method(name: str) -> Callable[[F], F]:
    """Give a hub method the name clients call it by, instead of its PascalCase name.

    Example::

        @hub_method("getHTML")
        async def get_html(self) -> str: ...
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a hub method's name must be a non-empty string, got {name!r}")

    def mark(function: F) -> F:
        setattr(function, _NAME_ATTRIBUTE, name)
        return function

    return mark


def pascal_case(name: str) -> str:
    """``send_message`` -> ``SendMessage``: how .NET names what Python spells in snake_case."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def wire_name(attribute: str, function: Callable[..., Any]) -> str:
    """The name a method goes by on the wire: ``@hub_method``'s, or its PascalCase name."""
    return getattr(function, _NAME_ATTRIBUTE, None) or pascal_case(attribute)


@dataclass(frozen=True, slots=True)
class _Argument:
    name: str
    convert: Converter
    default: Any  # inspect.Parameter.empty when required


@dataclass(frozen=True, slots=True)
class _Stream:
    name: str
    convert: Converter


@dataclass(frozen=True)
class HubMethod:
    """One method clients may call, with what it takes and whether it streams."""

    name: str
    function: Callable[..., Any]
    is_generator: bool
    streams_result: bool
    parameters: tuple[_Argument | _Stream, ...]

    @property
    def stream_parameters(self) -> tuple[_Stream, ...]:
        """The parameters that receive uploaded streams, in order."""
        return tuple(p for p in self.parameters if isinstance(p, _Stream))

    def bind(self, arguments: Sequence[Any]) -> list[Any]:
        """The positional arguments for ``function`` (after ``self``), with ``None``
        where the uploaded streams go (see ``stream_positions``).

        Raises:
            BindingError: the wrong number of arguments, or one of the wrong type.
        """
        plain = [p for p in self.parameters if isinstance(p, _Argument)]
        required = sum(1 for p in plain if p.default is inspect.Parameter.empty)
        if not required <= len(arguments) <= len(plain):
            expected = str(len(plain)) if required == len(plain) else f"{required} to {len(plain)}"
            raise BindingError(
                f"Invocation provides {len(arguments)} argument(s) but target expects {expected}."
            )
        given = iter(arguments)
        bound: list[Any] = []
        for index, parameter in enumerate(self.parameters):
            if isinstance(parameter, _Stream):
                bound.append(None)
                continue
            try:
                value = next(given)
            except StopIteration:
                bound.append(parameter.default)  # the count check above makes sure it has one
                continue
            try:
                bound.append(parameter.convert(value))
            except BindingError as exc:
                raise BindingError(f"argument {index + 1} ('{parameter.name}'): {exc}") from None
        return bound

    @property
    def stream_positions(self) -> list[int]:
        """Where in ``bind()``'s list the uploaded streams go."""
        return [i for i, p in enumerate(self.parameters) if isinstance(p, _Stream)]


def type_hints(function: Callable[..., Any], where: str) -> dict[str, Any]:
    """``function``'s type hints, resolved (``Annotated`` kept).

    Raises:
        TypeError: they cannot be resolved (a name that does not exist, say); ``where`` says whose.
    """
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception as exc:
        raise TypeError(f"cannot read the annotations of {where}: {exc}") from exc


def discover_methods(hub_type: type, base: type) -> dict[str, HubMethod]:
    """The hub methods of ``hub_type`` (a subclass of ``base``), by lower-cased wire name.

    Raises:
        TypeError: a method the hub cannot offer, with what to change.
    """
    found: dict[str, HubMethod] = {}
    seen: set[str] = set()
    for klass in hub_type.__mro__:
        if klass is base or not issubclass(klass, base):
            continue
        for attribute, value in vars(klass).items():
            if attribute in seen:
                continue  # a subclass's attribute of that name hides this one
            seen.add(attribute)
            if attribute.startswith("_") or not inspect.isfunction(value):
                continue
            if attribute in _HOOKS:
                continue
            if hasattr(base, attribute):
                raise TypeError(f"{hub_type.__name__}.{attribute} would hide Hub.{attribute}; rename it")
            method = _describe(hub_type, attribute, value)
            key = method.name.lower()
            if key in found:
                raise TypeError(
                    f"{hub_type.__name__} has two hub methods named {method.name!r} "
                    f"(names match case-insensitively): {found[key].function.__name__} and {attribute}"
                )
            found[key] = method
    return found


def _describe(hub_type: type, attribute: str, function: Callable[..., Any]) -> HubMethod:
    where = f"{hub_type.__name__}.{attribute}"
    is_generator = inspect.isasyncgenfunction(function)
    if not is_generator and not inspect.iscoroutinefunction(function):
        raise TypeError(
            f"{where} must be 'async def': hub methods run as trio tasks (start its name with '_' "
            "if it is a helper, not a hub method)"
        )
    hints = type_hints(function, where)
    returns = hints.get("return")
    streams_result = (
        is_generator or typing.get_origin(returns) in _STREAM_RESULTS or returns in _STREAM_RESULTS
    )
    parameters: list[_Argument | _Stream] = []
    signature = inspect.signature(function)
    for position, parameter in enumerate(signature.parameters.values()):
        if position == 0:
            continue  # self
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{where} takes *{parameter.name}: hub methods take a fixed list of arguments")
        if parameter.kind is parameter.KEYWORD_ONLY:
            if parameter.default is parameter.empty:
                raise TypeError(f"{where}: clients cannot pass the keyword-only argument {parameter.name!r}")
            continue
        annotation = hints.get(parameter.name, inspect.Parameter.empty)
        try:
            if annotation is HubStream or typing.get_origin(annotation) is HubStream:
                item = typing.get_args(annotation)
                parameters.append(_Stream(parameter.name, converter_for(item[0] if item else Any)))
            else:
                parameters.append(_Argument(parameter.name, converter_for(annotation), parameter.default))
        except TypeError as exc:
            raise TypeError(f"{where}, argument {parameter.name!r}: {exc}") from None
    return HubMethod(
        wire_name(attribute, function), function, is_generator, streams_result, tuple(parameters)
    )


async def open_stream(method: HubMethod, hub: Any, bound: list[Any]) -> AsyncIterator[Any]:
    """Start a streaming method: call an async generator, or await a coroutine for its iterator."""
    if method.is_generator:
        generator: AsyncIterator[Any] = method.function(hub, *bound)
        return generator
    return as_stream(method, await method.function(hub, *bound))


def as_stream(method: HubMethod, returned: Any) -> AsyncIterator[Any]:
    """What a streaming method (or its filters) returned, as the iterator to send items from."""
    if not hasattr(returned, "__aiter__"):
        raise TypeError(
            f"the streaming method '{method.name}' returned {type(returned).__name__}, not an async iterator"
        )
    iterator: AsyncIterator[Any] = returned.__aiter__()
    return iterator
