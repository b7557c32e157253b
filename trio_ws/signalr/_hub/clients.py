"""Reaching clients from hub code: ``self.clients``, ``self.groups``, ``self.users``.

::

    await self.clients.caller.send("Message", text)          # the calling connection
    await self.clients.group(room).send("Message", text)     # every member of a group
    answer = await self.clients.client(id).invoke("Ask", q)  # a client result
    await self.groups.add(self.context.connection_id, room)

Rules of this module:

* Every send and group change goes through the hub server's backplane, so
  it reaches connections on other workers too, once there is a backplane
  that spans workers.
* A send to one connection waits while that client has no room in its send
  buffer; a send to many applies ``HubOptions.slow_client`` instead (see
  ``SlowClientPolicy``). A send returns once the message is queued for every
  connection of this process, not once it has arrived.
* Outside a hub call (a background task, an HTTP handler) there is no
  caller: ``caller``, ``others`` and ``others_in_group`` raise
  ``RuntimeError`` there, and everything else works.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._backplane import Audience, SerializedMessage, frozen
from .._errors import ClientResultError
from .._protocol.messages import Invocation

if TYPE_CHECKING:
    from .._backplane import Backplane
    from .._options import HubOptions
    from .call import CallInfo

__all__ = ["ClientProxy", "ClientsHost", "GroupManager", "HubClients", "SingleClientProxy", "UserManager"]


class ClientsHost(Protocol):
    """What reaching clients needs of the hub server (``HubServer`` is one): the backplane every
    send goes through, and the options (``client_result_timeout``)."""

    @property
    def backplane(self) -> Backplane: ...  # pragma: no cover (a signature)

    @property
    def options(self) -> HubOptions: ...  # pragma: no cover (a signature)


class ClientProxy:
    """Some clients of the hub: send them a call to one of their handlers."""

    def __init__(self, server: ClientsHost, audience: Audience) -> None:
        self._server = server
        self._audience = audience

    async def send(self, method: str, *args: Any) -> None:
        """Call ``method`` on each client (its ``connection.on(method, ...)`` handler) with ``args``.

        Nothing comes back: use ``SingleClientProxy.invoke`` for a result.

        Raises:
            TypeError: an argument cannot be sent (docs/hubs.md, "Results and errors", lists the types).
        """
        message = SerializedMessage(Invocation(method, args))
        await self._server.backplane.send(self._audience, message)


class SingleClientProxy(ClientProxy):
    """One connection: send to it, or invoke a handler and await the client's result."""

    def __init__(self, server: ClientsHost, connection_id: str, call: CallInfo | None) -> None:
        super().__init__(server, Audience(connections=frozenset({connection_id})))
        self.connection_id = connection_id
        self._call = call

    async def invoke(self, method: str, *args: Any) -> Any:
        """Call ``method`` on the client and return what its handler returns.

        Waits at most ``HubOptions.client_result_timeout``; a caller's own
        cancel scope can end the wait sooner. While a hub method waits here
        it does not count against ``max_parallel_invocations`` (as in
        ASP.NET), so the client can go on calling the hub meanwhile.

        Raises:
            ClientResultError: the client has no handler for ``method``
                (``"Client didn't provide a result."``), its handler failed
                (its error text), no result came in time, or the connection ended.
            RuntimeError: called from ``on_connected``, where the caller's
                messages are not read yet, so no result could arrive.
        """
        if self._call is not None:
            if self._call.in_on_connected:
                raise RuntimeError(
                    "client results cannot be awaited in on_connected: the connection reads no "
                    "messages until on_connected returns; start a task or do it in a hub method"
                )
            self._call.release_slot()
        timeout = self._server.options.client_result_timeout
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            return await self._server.backplane.invoke_client(self.connection_id, method, args)
        raise ClientResultError(self.connection_id, method, f"no result within {timeout:g} s")


class HubClients:
    """Who a hub can talk to; ``Hub.clients`` inside a call knows the caller too."""

    def __init__(self, server: ClientsHost, call: CallInfo | None = None) -> None:
        self._server = server
        self._call = call

    def _caller_id(self, what: str) -> str:
        if self._call is None:
            raise RuntimeError(f"clients.{what} needs a caller: use it inside a hub method or on_connected")
        return self._call.connection.connection_id

    def _proxy(self, **audience: Any) -> ClientProxy:
        return ClientProxy(self._server, Audience(**audience))

    @property
    def all(self) -> ClientProxy:
        """Every connection of the hub."""
        return self._proxy(everyone=True)

    @property
    def caller(self) -> SingleClientProxy:
        """The connection that made the current call."""
        return SingleClientProxy(self._server, self._caller_id("caller"), self._call)

    @property
    def others(self) -> ClientProxy:
        """Every connection but the caller."""
        return self._proxy(everyone=True, excluded=frozenset({self._caller_id("others")}))

    def client(self, connection_id: str) -> SingleClientProxy:
        """One connection, by id (``context.connection_id`` on its side)."""
        return SingleClientProxy(self._server, connection_id, self._call)

    def clients(self, connection_ids: Collection[str]) -> ClientProxy:
        """Some connections, by id."""
        return self._proxy(connections=frozen(connection_ids))

    def all_except(self, connection_ids: Collection[str]) -> ClientProxy:
        """Every connection but those listed."""
        return self._proxy(everyone=True, excluded=frozen(connection_ids))

    def group(self, name: str) -> ClientProxy:
        """Every member of a group."""
        return self._proxy(groups=frozenset({name}))

    def groups(self, names: Collection[str]) -> ClientProxy:
        """Every member of any of these groups (once each)."""
        return self._proxy(groups=frozen(names))

    def group_except(self, name: str, connection_ids: Collection[str]) -> ClientProxy:
        """Every member of a group but those listed."""
        return self._proxy(groups=frozenset({name}), excluded=frozen(connection_ids))

    def others_in_group(self, name: str) -> ClientProxy:
        """Every member of a group but the caller."""
        return self.group_except(name, [self._caller_id("others_in_group")])

    def user(self, user_id: str) -> ClientProxy:
        """Every connection of one user (as the transport's authentication named it)."""
        return self._proxy(users=frozenset({user_id}))

    def users(self, user_ids: Collection[str]) -> ClientProxy:
        """Every connection of these users."""
        return self._proxy(users=frozen(user_ids))


class GroupManager:
    """Named groups of connections: membership and presence.

    A connection leaves all its groups when it ends. Groups exist while
    they have members; names are compared exactly.
    """

    def __init__(self, server: ClientsHost) -> None:
        self._server = server

    async def add(self, connection_id: str, group: str) -> None:
        """Put a connection in ``group`` (nothing happens for one that has ended)."""
        await self._server.backplane.add_to_group(connection_id, group)

    async def remove(self, connection_id: str, group: str) -> None:
        """Take a connection out of ``group``."""
        await self._server.backplane.remove_from_group(connection_id, group)

    async def members(self, group: str) -> frozenset[str]:
        """The ids of the connections in ``group`` now."""
        return await self._server.backplane.group_members(group)

    async def count(self, group: str) -> int:
        """How many connections are in ``group`` now."""
        return len(await self._server.backplane.group_members(group))


class UserManager:
    """Who is connected, by user id (presence)."""

    def __init__(self, server: ClientsHost) -> None:
        self._server = server

    async def connections(self, user_id: str) -> frozenset[str]:
        """The ids of ``user_id``'s open connections; empty when the user is offline."""
        return await self._server.backplane.user_connections(user_id)
