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

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic

import trio

from .._errors import DisconnectReason
from .clients import GroupManager, UserManager
from .typed import C, ClientMethod, ClientsAccessor, client_methods, client_protocol_of

if TYPE_CHECKING:
    from ..._app.request import Identity, Request
    from .._endpoints.server import HubServer
    from .connection import HubConnection

__all__ = ["CallInfo", "Hub", "HubCallerContext", "current_call"]


@dataclass(eq=False)
class CallInfo:
    """The call a task is running: set by the dispatcher, read through ``Hub``."""

    connection: HubConnection
    in_on_connected: bool = False
    slot: trio.Semaphore | None = field(default=None)
    method: str | None = None  # the hub method's wire name, for logs
    # Set for a call run in the connection's invoker task: the dispatcher's, to let the calls
    # behind this one go on in another task while it waits (``_hub/dispatch.py``).
    on_early_release: Callable[[], None] | None = None

    def release_slot(self) -> None:
        """Give back the parallel-invocation slot early (once): the call is waiting for a client."""
        if self.slot is not None:
            slot, self.slot = self.slot, None
            slot.release()
            if self.on_early_release is not None:
                self.on_early_release()

    def end(self) -> None:
        """The call is over: its slot goes back, if it still holds it."""
        self.on_early_release = None
        self.release_slot()


current_call: contextvars.ContextVar[CallInfo] = contextvars.ContextVar("trio_ws.signalr.call")


class HubCallerContext:
    """What hub code knows about the connection it is serving."""

    def __init__(self, connection: HubConnection) -> None:
        self._connection = connection
        self.items: dict[Any, Any] = {}
        """Per-connection state for the hub's own use; gone when the connection ends."""
        self._limits: dict[object, Any] = {}  # rate_limit's buckets for this connection

    @property
    def connection_id(self) -> str:
        """The connection's public id: other clients and ``clients.client(id)`` use it."""
        return self._connection.connection_id

    @property
    def user_id(self) -> str | None:
        """Who the transport authenticated, or ``None``; ``clients.user(id)`` reaches them."""
        return self._connection.user_id

    @property
    def identity(self) -> Identity | None:
        """Who the auth hook said the client is (``user_id``, ``roles``, ``claims``), or ``None``."""
        request = self._connection.request
        return None if request is None else request.identity

    @property
    def request(self) -> Request | None:
        """The HTTP request that opened the connection's transport (the WebSocket's upgrade), or
        ``None`` for a transport without one; its headers, cookies, query and identity."""
        return self._connection.request

    @property
    def transport(self) -> str | None:
        """The attached transport's name: ``"WebSockets"``, ``"LongPolling"``..."""
        return self._connection.transport_name

    @property
    def protocol(self) -> str | None:
        """The hub protocol the client chose: ``"json"`` or ``"messagepack"``."""
        protocol = self._connection.protocol
        return None if protocol is None else protocol.name

    def abort(self) -> None:
        """Close the connection now; the client is told not to reconnect.

        Running calls and streams are cancelled, ``on_disconnected`` gets
        ``DisconnectReason.ABORTED``.
        """
        self._connection.close(DisconnectReason.ABORTED)

    def __repr__(self) -> str:
        return f"<HubCallerContext {self.connection_id}>"


class Hub(Generic[C]):
    """Subclass it; its public ``async def`` methods are what clients can call.

    ``Hub[ClientProtocol]`` (a ``typing.Protocol``) types ``self.clients`` by
    what the clients offer. See ``docs/hubs.md`` for naming, arguments,
    streams, errors and client results, and ``docs/typed-hubs.md``.
    """

    _server: HubServer | None = None
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
        if call is not None and call.connection.server is self._server:
            return call
        return None

    def _bound_server(self) -> HubServer:
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
