"""Typed hubs: ``Hub[ChatClient]`` calls its clients through a ``typing.Protocol``.

::

    class ChatClient(Protocol):
        async def message(self, name: str, text: str) -> None: ...
        async def ask(self, question: str) -> int: ...          # a client result

    class Chat(Hub[ChatClient]):
        async def send(self, text: str) -> None:
            await self.clients.all.message("me", text)           # goes out as "Message"
            answer = await self.clients.caller.ask("sure?")      # an int, checked

Rules of this module:

* A hub that names a protocol gets ``TypedHubClients`` from ``self.clients``:
  ``all``, ``caller``, ``group(...)``... are typed as the protocol, so
  ``mypy --strict`` rejects a wrong name or argument. A hub without one
  (``class Chat(Hub)``) keeps ``HubClients`` and its ``send("Name", ...)``.
* A protocol method's wire name follows the hub methods' rule: PascalCase,
  or the name given with ``@hub_method("Name")``.
* A protocol method that returns something other than ``None`` is a client
  result: on one connection (``caller``, ``client(id)``) it is awaited and
  the client's answer converted to the annotation, as hub arguments are; on
  many it is refused, since many clients cannot give one answer.
* The protocol is read and checked when the hub class is defined, so a
  mistake in it fails at import, not at the first send.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

from .._errors import ClientResultError
from .binding import BindingError, Converter, converter_for
from .clients import ClientProxy, HubClients, SingleClientProxy
from .methods import type_hints, wire_name

if TYPE_CHECKING:
    # A type variable's default (PEP 696) is only read by the type checker, and Python 3.11's
    # typing.TypeVar does not take one, so only the checker sees typing_extensions' version.
    from typing_extensions import TypeVar


__all__ = [
    "ClientMethod",
    "NoClientProtocol",
    "TypedHubClients",
    "client_methods",
    "client_protocol_of",
]


class NoClientProtocol:
    """What ``Hub`` means without a protocol (``class Chat(Hub)``): ``self.clients`` is untyped."""


if TYPE_CHECKING:
    C = TypeVar("C", default=NoClientProtocol)
else:
    C = typing.TypeVar("C")


@dataclass(frozen=True)
class ClientMethod:
    """One method of a client protocol: its Python name, wire name and result."""

    attribute: str
    name: str
    function: Callable[..., Any]
    returns_result: bool
    convert_result: Converter


def client_protocol_of(hub_type: type) -> type | None:
    """The protocol ``hub_type`` declared with ``Hub[Protocol]``, or ``None``."""
    for klass in hub_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and hasattr(origin, "_client_methods"):  # Hub[...]
                arguments = typing.get_args(base)
                if arguments and arguments[0] is not NoClientProtocol and isinstance(arguments[0], type):
                    return arguments[0]
    return None


def client_methods(protocol: type) -> dict[str, ClientMethod]:
    """The methods of a client protocol by Python name, checked.

    Raises:
        TypeError: a member the hub cannot call, with what to change.
    """
    found: dict[str, ClientMethod] = {}
    wire_names: dict[str, str] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or klass is typing.Protocol or klass is typing.Generic:
            continue
        for attribute, value in vars(klass).items():
            if attribute.startswith("_"):
                continue
            where = f"{protocol.__name__}.{attribute}"
            if not inspect.iscoroutinefunction(value):
                raise TypeError(
                    f"{where} must be an 'async def' method: a client protocol lists what the hub can "
                    "call on its clients, and every call is awaited"
                )
            hints = type_hints(value, where)
            returns = hints.get("return", None)
            name = wire_name(attribute, value)
            key = name.lower()
            if key in wire_names and wire_names[key] != attribute:
                raise TypeError(
                    f"{protocol.__name__} has two methods named {name!r} on the wire "
                    f"(names match case-insensitively): {wire_names[key]} and {attribute}"
                )
            wire_names[key] = attribute
            try:
                convert = converter_for(returns)
            except TypeError as exc:
                raise TypeError(f"{where}, its result: {exc}") from None
            found[attribute] = ClientMethod(
                attribute, name, value, returns not in (None, type(None)), convert
            )
    return found


class _TypedProxy:
    """Some clients, called by the protocol's Python names (see ``TypedHubClients``)."""

    def __init__(self, proxy: ClientProxy, methods: dict[str, ClientMethod], protocol: type) -> None:
        self._proxy = proxy
        self._methods = methods
        self._protocol = protocol

    def __getattr__(self, attribute: str) -> Callable[..., Any]:
        method = self._methods.get(attribute)
        if method is None:
            raise AttributeError(
                f"{self._protocol.__name__} has no method {attribute!r}; add it to the protocol, "
                f"or send by wire name with self.clients.untyped"
            )
        proxy = self._proxy
        if not method.returns_result:

            async def send(*args: Any) -> None:
                await proxy.send(method.name, *args)

            return send
        if not isinstance(proxy, SingleClientProxy):
            raise TypeError(
                f"{self._protocol.__name__}.{attribute} returns a client result, which only one "
                "connection can give: call it on clients.caller or clients.client(id)"
            )
        single = proxy

        async def invoke(*args: Any) -> Any:
            answer = await single.invoke(method.name, *args)
            try:
                return method.convert_result(answer)
            except BindingError as exc:
                raise ClientResultError(single.connection_id, method.name, f"its result: {exc}") from None

        return invoke

    def __repr__(self) -> str:
        return f"<{self._protocol.__name__} proxy {self._proxy._audience}>"


class TypedHubClients(Generic[C]):
    """``HubClients`` for a hub with a client protocol: every audience is typed as the protocol.

    The same audiences as ``HubClients``; ``untyped`` is the untyped view,
    for a method the protocol does not list.
    """

    def __init__(self, clients: HubClients, protocol: type, methods: dict[str, ClientMethod]) -> None:
        self._clients = clients
        self._protocol = protocol
        self._methods = methods

    def _typed(self, proxy: ClientProxy) -> C:
        return typing.cast("C", _TypedProxy(proxy, self._methods, self._protocol))

    @property
    def untyped(self) -> HubClients:
        """The same clients without the protocol: ``send("Name", ...)`` and ``invoke``."""
        return self._clients

    @property
    def all(self) -> C:
        """Every connection of the hub."""
        return self._typed(self._clients.all)

    @property
    def caller(self) -> C:
        """The connection that made the current call."""
        return self._typed(self._clients.caller)

    @property
    def others(self) -> C:
        """Every connection but the caller."""
        return self._typed(self._clients.others)

    def client(self, connection_id: str) -> C:
        """One connection, by id."""
        return self._typed(self._clients.client(connection_id))

    def clients(self, connection_ids: Collection[str]) -> C:
        """Some connections, by id."""
        return self._typed(self._clients.clients(connection_ids))

    def all_except(self, connection_ids: Collection[str]) -> C:
        """Every connection but those listed."""
        return self._typed(self._clients.all_except(connection_ids))

    def group(self, name: str) -> C:
        """Every member of a group."""
        return self._typed(self._clients.group(name))

    def groups(self, names: Collection[str]) -> C:
        """Every member of any of these groups (once each)."""
        return self._typed(self._clients.groups(names))

    def group_except(self, name: str, connection_ids: Collection[str]) -> C:
        """Every member of a group but those listed."""
        return self._typed(self._clients.group_except(name, connection_ids))

    def others_in_group(self, name: str) -> C:
        """Every member of a group but the caller."""
        return self._typed(self._clients.others_in_group(name))

    def user(self, user_id: str) -> C:
        """Every connection of one user."""
        return self._typed(self._clients.user(user_id))

    def users(self, user_ids: Collection[str]) -> C:
        """Every connection of these users."""
        return self._typed(self._clients.users(user_ids))
