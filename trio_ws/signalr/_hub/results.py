"""Client results: the server calls a method on one client and waits for its answer.

One ``ClientResults`` per hub connection, kept by its ``Dispatcher``. Rules:

* Our invocation ids count up per connection; the client answers with a
  Completion carrying the same id. A Completion for an id nobody awaits is
  not ours to judge (it may be an upload's end): ``complete`` says whether
  it was ours.
* A client result never outlives its connection: when the connection ends,
  every result still awaited fails with ``ClientResultError`` ("the
  connection closed"), and so does a call made while it is closing.
* This module knows the connection only as ``ResultsChannel``: its id,
  whether it closes, and how to send it one message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import trio

from .._errors import ClientResultError
from .._protocol.messages import Completion, HubMessage, Invocation

__all__ = ["ClientResults", "ResultsChannel"]


class ResultsChannel(Protocol):
    """What client results need of their connection (``HubConnection`` has it)."""

    @property
    def connection_id(self) -> str: ...  # pragma: no cover (a signature)

    @property
    def closing(self) -> bool: ...  # pragma: no cover (a signature)

    async def send_message(self, message: HubMessage, /) -> None: ...  # pragma: no cover (a signature)


class _PendingResult:
    """A client result being awaited: the Completion, or why none will come."""

    __slots__ = ("arrived", "completion", "failure")

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.completion: Completion | None = None
        self.failure = "the connection closed"


class ClientResults:
    """The client results one connection awaits, by our invocation id."""

    __slots__ = ("_connection", "_last_id", "_pending")

    def __init__(self, connection: ResultsChannel) -> None:
        self._connection = connection
        self._pending: dict[str, _PendingResult] = {}
        self._last_id = 0

    def __contains__(self, invocation_id: str) -> bool:
        return invocation_id in self._pending

    async def invoke(self, target: str, arguments: Sequence[Any]) -> Any:
        """Call ``target`` on the client and wait for its Completion."""
        connection = self._connection
        if connection.closing:
            await trio.lowlevel.checkpoint()
            raise ClientResultError(connection.connection_id, target, "the connection closed")
        self._last_id += 1
        invocation_id = str(self._last_id)
        pending = self._pending[invocation_id] = _PendingResult()
        try:
            await connection.send_message(Invocation(target, arguments, invocation_id))
            await pending.arrived.wait()
        finally:
            self._pending.pop(invocation_id, None)
        completion = pending.completion
        if completion is None:
            raise ClientResultError(connection.connection_id, target, pending.failure)
        if completion.error is not None:
            raise ClientResultError(connection.connection_id, target, completion.error)
        return completion.result

    def complete(self, message: Completion) -> bool:
        """Hand ``message`` to the result awaiting it; ``False`` if none awaits its id."""
        pending = self._pending.pop(message.invocation_id, None)
        if pending is None:
            return False
        pending.completion = message
        pending.arrived.set()
        return True

    def fail_all(self) -> None:
        """The connection ended: every client result still awaited fails."""
        for pending in self._pending.values():
            pending.arrived.set()
        self._pending.clear()
