"""``Hub``: the class a server subclasses to offer methods to clients.

::

    class Chat(Hub):
        async def send_message(self, room: str, text: str) -> None:   # clients call "SendMessage"
            await self.clients.group(room).send("Message", self.context.user_id, text)

Rules of this module:

* One ``Hub`` instance serves every connection of its ``HubServer``, so it
  may hold shared state (a database pool, a dict of rooms) and take
  whatever its ``__init__`` needs. Per-connection state lives in
  ``self.context.items``.
* Which connection is calling is carried by a context variable set for
  each call in the task that runs it (and reset when it ends), so ``self.context`` and ``self.clients`` always
  mean the caller of the code that reads them, however many calls run at
  once (and in tasks those calls start).
* ``on_connected`` runs before the connection's first message is read, so
  the client's calls wait until it returns; ``on_disconnected`` runs once
  the connection has ended, with the reason.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Protocol, overload

from .._errors import DisconnectReason
from .call import CallInfo, HubCallerContext, current_call
from .clients import ClientsHost, GroupManager, HubClients, UserManager
from .typed import C, ClientMethod, NoClientProtocol, TypedHubClients, client_methods, client_protocol_of

__all__ = ["ClientsAccessor", "Hub", "HubHost"]


class HubHost(ClientsHost, Protocol):
    """What a ``Hub`` needs of the server that serves it (``HubServer`` is one): its clients'
    backplane and options, and its group and user managers."""

    @property
    def groups(self) -> GroupManager: ...  # pragma: no cover (a signature)

    @property
    def users(self) -> UserManager: ...  # pragma: no cover (a signature)


class ClientsAccessor:
    """``Hub.clients``: ``HubClients`` for an untyped hub, ``TypedHubClients[P]`` for ``Hub[P]``."""

    @overload
    def __get__(self, hub: None, owner: type) -> ClientsAccessor: ...

    @overload
    def __get__(self, hub: Hub[NoClientProtocol], owner: type) -> HubClients: ...

    @overload
    def __get__(self, hub: Hub[C], owner: type) -> TypedHubClients[C]: ...

    def __get__(self, hub: Hub[Any] | None, owner: type) -> Any:
        if hub is None:
            return self
        clients = HubClients(hub._bound_server(), hub._call())
        protocol = type(hub)._client_protocol
        if protocol is None:
            return clients
        return TypedHubClients[Any](clients, protocol, type(hub)._client_methods)


class Hub(Generic[C]):
    """Subclass it; its public ``async def`` methods are what clients can call.

    ``Hub[ClientProtocol]`` (a ``typing.Protocol``) types ``self.clients`` by
    what the clients offer. See ``docs/hubs.md`` for naming, arguments,
    streams, errors and client results, and ``docs/typed-hubs.md``.
    """

    _server: HubHost | None = None
    _client_protocol: ClassVar[type | None] = None
    _client_methods: ClassVar[dict[str, ClientMethod]] = {}

    clients = ClientsAccessor()
    """Every client, some, or the caller (inside a call): ``HubClients``, or ``TypedHubClients``
    for a hub with a client protocol."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        protocol = client_protocol_of(cls)
        if protocol is not None and protocol is not cls._client_protocol:
            cls._client_protocol = protocol
            cls._client_methods = client_methods(protocol)

    async def on_connected(self) -> None:
        """A client has connected (its handshake is done); its calls wait until this returns."""

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        """A connection has ended; its calls are cancelled and it has left its groups."""

    def _call(self) -> CallInfo | None:
        call = current_call.get(None)
        if call is None:
            return None
        server: object = call.connection.server  # a call of this hub's server, not another's
        return call if server is self._server else None

    def _bound_server(self) -> HubHost:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not served yet: pass it to a HubServer first")
        return self._server

    @property
    def context(self) -> HubCallerContext:
        """The calling connection. Only inside a hub method, ``on_connected`` or ``on_disconnected``."""
        call = self._call()
        if call is None:
            raise RuntimeError(
                "Hub.context is only available inside a hub method, on_connected or on_disconnected"
            )
        return call.connection.context

    @property
    def groups(self) -> GroupManager:
        """Add connections to groups, remove them, list and count members."""
        return self._bound_server().groups

    @property
    def users(self) -> UserManager:
        """Which connections a user has open."""
        return self._bound_server().users
