"""The in-process backplane: connections, groups, users, delivery and client-result routing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio

from trio_ws.signalr import Audience, ClientResultError, InProcessBackplane, SerializedMessage
from trio_ws.signalr._protocol import JSON
from trio_ws.signalr._protocol.messages import Invocation


class FakeConnection:
    """A LocalConnection that records what is delivered to it."""

    def __init__(self, connection_id: str, user_id: str | None = None, *, full: bool = False) -> None:
        self.connection_id = connection_id
        self.user_id = user_id
        self.full = full
        self.direct: list[bytes] = []
        self.offered: list[bytes] = []
        self.waited: list[bytes] = []

    async def send_direct(self, message: SerializedMessage) -> None:
        self.direct.append(message.encode(JSON))

    def offer(self, message: SerializedMessage) -> bool:
        if self.full:
            return False
        self.offered.append(message.encode(JSON))
        return True

    async def deliver(self, message: SerializedMessage) -> None:
        self.waited.append(message.encode(JSON))

    async def invoke(self, target: str, arguments: Sequence[Any]) -> Any:
        return (self.connection_id, target, list(arguments))


async def test_membership_presence_and_cleanup() -> None:
    """Groups and users follow connections; removing a connection takes it out of everything."""
    backplane = InProcessBackplane()
    a, b = FakeConnection("a", "ann"), FakeConnection("b", "ann")
    await backplane.add_connection(a)
    await backplane.add_connection(b)
    await backplane.add_to_group("a", "red")
    await backplane.add_to_group("b", "red")
    await backplane.add_to_group("ghost", "red")  # not connected: ignored
    assert await backplane.group_members("red") == {"a", "b"}
    assert await backplane.user_connections("ann") == {"a", "b"}
    await backplane.remove_from_group("a", "red")
    await backplane.remove_connection(b)
    assert await backplane.group_members("red") == frozenset()
    assert await backplane.user_connections("ann") == {"a"}
    assert backplane._groups == {} and backplane._memberships == {}  # nothing kept for empty groups


async def test_delivery_offers_to_many_and_waits_for_one() -> None:
    """A message to one connection goes the waiting way; to many, it is offered, and the
    connections that refuse the offer (WAIT policy, full) are waited for together."""
    backplane = InProcessBackplane()
    fast, slow, other = FakeConnection("fast"), FakeConnection("slow", full=True), FakeConnection("other")
    for connection in (fast, slow, other):
        await backplane.add_connection(connection)
    message = SerializedMessage(Invocation("Hi", (1,)))
    await backplane.send(Audience(connections=frozenset({"fast"})), message)
    await backplane.send(Audience(everyone=True, excluded=frozenset({"other"})), message)
    encoded = b'{"type":1,"target":"Hi","arguments":[1]}\x1e'
    assert fast.direct == [encoded] and fast.offered == [encoded]
    assert slow.waited == [encoded]
    assert other.direct == other.offered == []


def test_a_message_is_encoded_once_per_protocol() -> None:
    """However many connections get it, a message is encoded once per protocol."""
    message = SerializedMessage(Invocation("Hi", ()))
    assert message.encode(JSON) is message.encode(JSON)


async def test_client_results_are_routed_to_the_connection() -> None:
    """``invoke_client`` reaches the connection by id; an unknown id raises ClientResultError."""
    backplane = InProcessBackplane()
    await backplane.add_connection(FakeConnection("a"))
    assert await backplane.invoke_client("a", "Ask", ["q"]) == ("a", "Ask", ["q"])
    with pytest.raises(ClientResultError, match="no connection has this id"):
        await backplane.invoke_client("b", "Ask", [])


async def test_serve_starts_and_waits_forever() -> None:
    """The in-process backplane has nothing to run: started() at once, then it sleeps."""
    async with trio.open_nursery() as nursery:
        await nursery.start(InProcessBackplane().serve)
        nursery.cancel_scope.cancel()
