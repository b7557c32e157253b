"""The trio client's typed side: call a hub by its class, answer it by its client protocol.

::

    async with open_hub_client(url) as hub:
        chat = hub.server(ChatHub)             # typed as ChatHub: mypy checks every call
        await chat.join("lobby", "ann")        # goes out as "Join"
        remove = hub.handle(ChatHub, Page())   # Page must implement ChatHub's client protocol

Rules of this module:

* The hub class is the contract: its methods' names follow the hub's rule
  (PascalCase or ``@hub_method``), and their annotations convert what comes
  back (a dataclass result arrives as a dataclass), as they convert a
  client's arguments on the hub.
* A method that streams (an async generator) is called as it is declared:
  ``async for item in chat.counter(3)``. Leaving the loop early cancels the
  stream on the hub once the generator is closed (``aclosing``, or the end
  of the block in ``open_hub_client``).
* ``handle`` registers one handler per method of the client protocol and
  converts the hub's arguments by the protocol's annotations; a handler
  object that lacks a method is refused at once, not when the hub calls it.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .._hub.binding import BindingError, Converter, converter_for
from .._hub.hub import Hub
from .._hub.methods import HubMethod, discover_methods
from .engine import Handler, InvocationError

__all__ = ["HubCalls", "register_handlers", "server_proxy"]


class HubCalls(Protocol):
    """What the typed side uses of a ``HubClient``: calls, streams and handlers. Naming only these
    keeps this module below ``_client/client.py``, which imports it."""

    async def invoke(self, method: str, /, *args: Any) -> Any: ...  # pragma: no cover (a signature)

    def stream(
        self, method: str, /, *args: Any
    ) -> AbstractAsyncContextManager[AsyncIterator[Any]]: ...  # pragma: no cover (a signature)

    def on(self, method: str, handler: Handler, /) -> Handler: ...  # pragma: no cover (a signature)

    def off(self, method: str, /) -> None: ...  # pragma: no cover (a signature)


def _identity(value: Any) -> Any:
    return value


def _converter(annotation: Any) -> Converter:
    try:
        return converter_for(annotation)
    except TypeError:
        return _identity  # a result the hub's annotations cannot describe comes as it is


def _stream_item(returns: Any) -> Any:
    arguments = typing.get_args(returns)
    return arguments[0] if arguments else Any


class _ServerProxy:
    """The hub's methods, by their Python names (see ``HubClient.server``)."""

    def __init__(self, client: HubCalls, hub_type: type[Hub[Any]]) -> None:
        self._client = client
        self._hub_type = hub_type
        self._methods: dict[str, HubMethod] = {
            method.function.__name__: method for method in discover_methods(hub_type, Hub).values()
        }

    def __getattr__(self, attribute: str) -> Callable[..., Any]:
        method = self._methods.get(attribute)
        if method is None:
            raise AttributeError(f"{self._hub_type.__name__} has no hub method {attribute!r}")
        call = self._call(method)
        setattr(self, attribute, call)  # built once: __getattr__ only runs for missing attributes
        return call

    def _call(self, method: HubMethod) -> Callable[..., Any]:
        client, name = self._client, method.name
        returns = typing.get_type_hints(method.function).get("return", Any)
        if not method.streams_result:
            convert = _converter(returns)

            async def invoke(*args: Any) -> Any:
                result = await client.invoke(name, *args)
                try:
                    return convert(result)
                except BindingError as exc:
                    raise InvocationError(f"the hub's result for {name!r} does not fit: {exc}") from None

            return invoke
        convert_item = _converter(_stream_item(returns))  # AsyncIterator[T], AsyncGenerator[T, None]...

        async def items(*args: Any) -> AsyncGenerator[Any, None]:
            async with client.stream(name, *args) as received:
                async for item in received:
                    yield convert_item(item)

        if method.is_generator:
            return items

        async def open_stream(*args: Any) -> AsyncIterator[Any]:
            return items(*args)

        return open_stream

    def __repr__(self) -> str:
        return f"<{self._hub_type.__name__} proxy>"


def server_proxy(client: HubCalls, hub_type: type[Hub[Any]]) -> Any:
    """A ``_ServerProxy`` (typed by ``HubClient.server`` as the hub class)."""
    if not (isinstance(hub_type, type) and issubclass(hub_type, Hub)):
        raise TypeError(f"server() takes a Hub subclass (the hub's class), got {hub_type!r}")
    return _ServerProxy(client, hub_type)


def _handler(function: Callable[..., Any], converters: list[Converter], name: str) -> Callable[..., Any]:
    def handle(*args: Any) -> Any:
        if len(args) > len(converters):
            raise TypeError(f"{name} takes {len(converters)} argument(s), the hub sent {len(args)}")
        return function(*(convert(arg) for convert, arg in zip(converters, args, strict=False)))

    return handle


def register_handlers(client: HubCalls, hub_type: type[Hub[Any]], handlers: object) -> Callable[[], None]:
    """Register every method of ``hub_type``'s client protocol from ``handlers``; return the remover.

    Raises:
        TypeError: the hub has no client protocol, or ``handlers`` lacks one of its methods.
        ValueError: one of the methods already has a handler on ``client``.
    """
    protocol = getattr(hub_type, "_client_protocol", None)
    if protocol is None:
        raise TypeError(
            f"{getattr(hub_type, '__name__', hub_type)} declares no client protocol: "
            "subclass Hub[YourProtocol], or register handlers one by one with on()"
        )
    methods = hub_type._client_methods
    missing = [name for name in methods if not callable(getattr(handlers, name, None))]
    if missing:
        raise TypeError(f"{type(handlers).__name__} lacks {protocol.__name__}'s {', '.join(missing)}")
    registered: list[str] = []
    try:
        for attribute, method in methods.items():
            hints = typing.get_type_hints(method.function)
            parameters = list(inspect.signature(method.function).parameters)[1:]
            converters = [_converter(hints.get(parameter, Any)) for parameter in parameters]
            client.on(method.name, _handler(getattr(handlers, attribute), converters, method.name))
            registered.append(method.name)
    except BaseException:
        for name in registered:
            client.off(name)
        raise

    def remove() -> None:
        for name in registered:
            client.off(name)

    return remove
