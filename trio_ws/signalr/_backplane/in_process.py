"""The backplane for a hub served by one process: tables in memory.

Rules of this module:

* Everything is plain dictionaries touched only from trio tasks of one
  thread, so no locks; each method still checkpoints, as trio's async
  functions should.
* A connection's groups are remembered with it, so that leaving is one step
  when it ends. Empty groups and users are forgotten, so memory follows
  what is connected now, not what ever was.
* Group and user names are compared exactly (ASP.NET compares them ordinally).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from .._errors import ClientResultError
from .base import Audience, Backplane, LocalConnection, SerializedMessage, deliver_locally

__all__ = ["InProcessBackplane"]


class InProcessBackplane(Backplane):
    """Connections, groups and users of one process, in memory."""

    def __init__(self) -> None:
        self._connections: dict[str, LocalConnection] = {}
        self._groups: dict[str, set[str]] = {}
        self._memberships: dict[str, set[str]] = {}
        self._users: dict[str, set[str]] = {}

    async def add_connection(self, connection: LocalConnection) -> None:
        await trio.lowlevel.checkpoint()
        self._connections[connection.connection_id] = connection
        if connection.user_id is not None:
            self._users.setdefault(connection.user_id, set()).add(connection.connection_id)

    async def remove_connection(self, connection: LocalConnection) -> None:
        await trio.lowlevel.checkpoint()
        connection_id = connection.connection_id
        if self._connections.get(connection_id) is not connection:
            return
        del self._connections[connection_id]
        for group in self._memberships.pop(connection_id, ()):
            _discard(self._groups, group, connection_id)
        if connection.user_id is not None:
            _discard(self._users, connection.user_id, connection_id)

    async def add_to_group(self, connection_id: str, group: str) -> None:
        await trio.lowlevel.checkpoint()
        if connection_id in self._connections:
            self._groups.setdefault(group, set()).add(connection_id)
            self._memberships.setdefault(connection_id, set()).add(group)

    async def remove_from_group(self, connection_id: str, group: str) -> None:
        await trio.lowlevel.checkpoint()
        _discard(self._groups, group, connection_id)
        _discard(self._memberships, connection_id, group)

    async def group_members(self, group: str) -> frozenset[str]:
        await trio.lowlevel.checkpoint()
        return frozenset(self._groups.get(group, ()))

    async def user_connections(self, user_id: str) -> frozenset[str]:
        await trio.lowlevel.checkpoint()
        return frozenset(self._users.get(user_id, ()))

    async def send(self, audience: Audience, message: SerializedMessage) -> None:
        await deliver_locally(self._local_targets(audience), message, single=audience.single)

    def _local_targets(self, audience: Audience) -> list[LocalConnection]:
        """The connections of this process in ``audience`` (a networked backplane delivers to
        these what other processes send, too)."""
        if audience.everyone:
            if not audience.excluded:
                return list(self._connections.values())  # a broadcast: no id to look at
            ids: set[str] | dict[str, LocalConnection] = self._connections
        else:
            ids = set(audience.connections)
            for group in audience.groups:
                ids.update(self._groups.get(group, ()))
            for user in audience.users:
                ids.update(self._users.get(user, ()))
        return [
            connection
            for connection_id in ids
            if connection_id not in audience.excluded
            and (connection := self._connections.get(connection_id)) is not None
        ]

    async def invoke_client(self, connection_id: str, target: str, arguments: Sequence[Any]) -> Any:
        connection = self._connections.get(connection_id)
        if connection is None:
            await trio.lowlevel.checkpoint()
            raise ClientResultError(connection_id, target, "no connection has this id")
        return await connection.invoke(target, arguments)


def _discard(table: dict[str, set[str]], key: str, value: str) -> None:
    members = table.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del table[key]
