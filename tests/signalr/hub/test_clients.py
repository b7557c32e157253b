"""Reaching clients: every kind of audience, groups and presence, and client results (a value,
an error, no handler, a timeout, a client that leaves), over in-memory transports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws.signalr import ClientProxy, ClientResultError, Hub, HubServer
from trio_ws.signalr._protocol.messages import Completion, Invocation

from ..helpers import HubTestClient, connect, serve_hub


class Rooms(Hub):
    def __init__(self) -> None:
        self.on_connected_error: BaseException | None = None

    async def join(self, room: str) -> None:
        await self.groups.add(self.context.connection_id, room)

    async def leave(self, room: str) -> None:
        await self.groups.remove(self.context.connection_id, room)

    async def who(self, room: str) -> list[str]:
        return sorted(await self.groups.members(room))

    async def count(self, room: str) -> int:
        return await self.groups.count(room)

    async def online(self, user: str) -> list[str]:
        return sorted(await self.users.connections(user))

    async def me(self) -> str:
        return self.context.connection_id

    async def tell(self, how: str, target: Any, text: str) -> None:
        clients = self.clients
        proxies: dict[str, Callable[[], ClientProxy]] = {
            "all": lambda: clients.all,
            "caller": lambda: clients.caller,
            "others": lambda: clients.others,
            "client": lambda: clients.client(target),
            "clients": lambda: clients.clients(target),
            "all_except": lambda: clients.all_except(target),
            "group": lambda: clients.group(target),
            "groups": lambda: clients.groups(target),
            "group_except": lambda: clients.group_except(target[0], target[1]),
            "others_in_group": lambda: clients.others_in_group(target),
            "user": lambda: clients.user(target),
            "users": lambda: clients.users(target),
        }
        await proxies[how]().send("Told", text, how)

    async def ask(self, connection_id: str, question: str) -> Any:
        return await self.clients.client(connection_id).invoke("Answer", question)

    async def ask_caller(self, question: str) -> Any:
        return await self.clients.caller.invoke("Answer", question)


async def told(client: HubTestClient) -> list[str]:
    """The "Told" messages waiting for ``client``: everything before the answer to a fresh call."""
    invocation_id = client.next_id()
    await client.send(Invocation("Me", (), invocation_id))
    texts: list[Any] = []
    while True:
        message = await client.receive()
        if isinstance(message, Completion) and message.invocation_id == invocation_id:
            return texts
        assert isinstance(message, Invocation) and message.target == "Told", message
        texts.append(message.arguments[0])


# Who each audience reaches: A1 and A2 are ann's (A1 calls), B is bob's, C is cat's; A1 and B are
# in "red", B and C in "blue". The Redis backplane's tests check the same across workers.
AUDIENCES = [
    ("all", None, {"A1", "A2", "B", "C"}),
    ("caller", None, {"A1"}),
    ("others", None, {"A2", "B", "C"}),
    ("client", "B", {"B"}),
    ("clients", ["B", "C"], {"B", "C"}),
    ("all_except", ["B", "C"], {"A1", "A2"}),
    ("group", "red", {"A1", "B"}),
    ("groups", ["red", "blue"], {"A1", "B", "C"}),
    ("group_except", ["red", ["B"]], {"A1"}),
    ("others_in_group", "red", {"B"}),
    ("user", "ann", {"A1", "A2"}),
    ("users", ["ann", "cat"], {"A1", "A2", "C"}),
]


@pytest.mark.parametrize(("how", "target", "receivers"), AUDIENCES)
async def test_every_audience_reaches_exactly_its_clients(how: str, target: Any, receivers: set[str]) -> None:
    """Each ``clients.*`` audience delivers to its connections (once each), and to no one else."""
    async with (
        serve_hub(Rooms()) as server,
        connect(server, user_id="ann") as ann1,
        connect(server, user_id="ann") as ann2,
        connect(server, "messagepack", user_id="bob") as bob,
        connect(server, user_id="cat") as cat,
    ):
        everyone = {"A1": ann1, "A2": ann2, "B": bob, "C": cat}
        ids = {name: await client.call("Me") for name, client in everyone.items()}
        for name in ("A1", "B"):
            await everyone[name].call("Join", "red")
        for name in ("B", "C"):
            await everyone[name].call("Join", "blue")

        def by_id(value: Any) -> Any:
            if isinstance(value, str) and value in ids:
                return ids[value]
            if isinstance(value, list):
                return [by_id(v) for v in value]
            return value

        # Sent without an id: the caller may be among the receivers. Its next call waits for
        # this one (one call at a time), so ann1's told() below comes after the delivery.
        await ann1.send(Invocation("Tell", (how, by_id(target), "hello")))
        for name, client in everyone.items():
            assert await told(client) == (["hello"] if name in receivers else []), name


async def test_groups_membership_and_presence() -> None:
    """Join, leave, list and count members; a user's connections; all of it forgotten on disconnect."""
    async with serve_hub(Rooms()) as server, connect(server, user_id="ann") as ann:
        ann_id = await ann.call("Me")
        async with connect(server, user_id="bob") as bob:
            bob_id = await bob.call("Me")
            await ann.call("Join", "red")
            await bob.call("Join", "red")
            await bob.call("Join", "red")  # joining twice is joining once
            assert await ann.call("Who", "red") == sorted([ann_id, bob_id])
            assert await ann.call("Count", "red") == 2
            assert await ann.call("Online", "bob") == [bob_id]
            await ann.call("Leave", "red")
            await ann.call("Leave", "never-joined")
            assert await ann.call("Who", "red") == [bob_id]
        await trio.testing.wait_all_tasks_blocked()
        assert await ann.call("Count", "red") == 0
        assert await ann.call("Online", "bob") == []
        assert await server.groups.count("red") == 0


async def test_sending_from_outside_a_call() -> None:
    """A background task reaches clients through the hub server; there is no caller there."""
    async with serve_hub(Rooms()) as server, connect(server) as client:
        await client.call("Join", "red")
        await server.clients.group("red").send("Told", "from outside", "group")
        await server.hub.clients.all.send("Told", "via the hub", "all")
        assert await told(client) == ["from outside", "via the hub"]
        with pytest.raises(RuntimeError, match=r"clients\.others needs a caller"):
            _ = server.clients.others


async def test_a_send_with_an_unsendable_argument_raises_in_the_sender() -> None:
    """The sender learns at once that a value has no wire form; the other clients are not affected."""
    async with serve_hub(Rooms()) as server, connect(server) as client:
        with pytest.raises(TypeError, match="'object' values cannot be sent"):
            await server.clients.all.send("Told", object())
        with pytest.raises(TypeError, match="expected a list of ids"):
            server.clients.clients("abc")
        assert await told(client) == []


async def answer_next(client: HubTestClient, reply: Any) -> Invocation:
    """Wait for the server's client-result call and answer it with ``reply(invocation_id)``."""
    message = await client.receive()
    assert isinstance(message, Invocation) and message.target == "Answer", message
    assert message.invocation_id is not None
    await client.send(reply(message.invocation_id))
    return message


async def test_a_client_result_returns_the_clients_value() -> None:
    """``invoke`` sends an Invocation with an id, and returns what the client's Completion carries."""
    async with serve_hub(Rooms()) as server, connect(server) as client:
        await client.send(Invocation("AskCaller", ("meaning?",), "1"))
        asked = await answer_next(client, lambda i: Completion.with_result(i, 42))
        assert asked.arguments == ("meaning?",)
        assert await client.receive() == Completion.with_result("1", 42)


@pytest.mark.parametrize(
    "reply",
    ["Error: from callback", "Client didn't provide a result."],
)
async def test_a_client_result_error_raises_client_result_error(reply: str) -> None:
    """The client's error text (its handler threw, or it has no handler) becomes the reason."""
    async with serve_hub(Rooms()) as server, connect(server) as client:
        connection_id = await client.call("Me")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_next, client, lambda i: Completion.with_error(i, reply))
            with pytest.raises(ClientResultError) as caught:
                await server.clients.client(connection_id).invoke("Answer", "q")
        assert caught.value.reason == reply
        assert caught.value.connection_id == connection_id
        assert str(caught.value) == f"client result of 'Answer' from connection {connection_id}: {reply}"


async def test_a_client_result_error_reaches_the_caller_of_the_hub_method() -> None:
    """Unhandled in a hub method, the ClientResultError is the caller's error text (it is a HubError)."""
    async with serve_hub(Rooms()) as server, connect(server) as client:
        connection_id = await client.call("Me")
        await client.send(Invocation("AskCaller", ("q",), "1"))
        await answer_next(client, lambda i: Completion.with_error(i, "Error: nope"))
        assert await client.receive() == Completion.with_error(
            "1",
            "An unexpected error occurred invoking 'AskCaller' on the server. "
            f"ClientResultError: client result of 'Answer' from connection {connection_id}: Error: nope",
        )


async def test_a_client_result_times_out(autojump_clock: trio.testing.MockClock) -> None:
    """A client that never answers (signalrcore) fails the call after client_result_timeout."""
    async with serve_hub(Rooms(), client_result_timeout=5) as server, connect(server) as client:
        connection_id = await client.call("Me")
        start = trio.current_time()
        with pytest.raises(ClientResultError, match="no result within 5 s"):
            await server.clients.client(connection_id).invoke("Answer", "q")
        assert trio.current_time() - start == pytest.approx(5)
        late = await client.receive()
        assert isinstance(late, Invocation) and late.invocation_id is not None
        await client.send(Completion.with_result(late.invocation_id, "too late"))  # ignored
        assert await client.call("Me") == connection_id


async def test_a_client_result_fails_when_the_client_leaves() -> None:
    """Pending client results fail with "the connection closed" when the connection ends;
    a connection that does not exist fails at once."""
    async with serve_hub(Rooms()) as server:
        errors: list[str] = []

        async def ask(connection_id: str) -> None:
            try:
                await server.clients.client(connection_id).invoke("Answer", "q")
            except ClientResultError as exc:
                errors.append(exc.reason)

        async with trio.open_nursery() as nursery, connect(server) as client:
            connection_id = await client.call("Me")
            nursery.start_soon(ask, connection_id)
            await client.receive()  # the Answer call; the client leaves without answering
        assert errors == ["the connection closed"]
        with pytest.raises(ClientResultError, match="no connection has this id"):
            await server.clients.client(connection_id).invoke("Answer", "q")


async def test_a_call_awaiting_a_client_result_frees_its_slot() -> None:
    """With one call at a time, the client can still call while the hub waits for its answer
    (as in ASP.NET): no deadlock."""
    async with serve_hub(Rooms()) as server, connect(server) as client:
        await client.send(Invocation("AskCaller", ("q",), "1"))
        asked = await client.receive()
        assert isinstance(asked, Invocation) and asked.invocation_id is not None
        assert await client.call("Count", "red") == 0
        await client.send(Completion.with_result(asked.invocation_id, "a"))
        assert await client.receive() == Completion.with_result("1", "a")


async def test_no_client_results_in_on_connected() -> None:
    """Awaiting a client result in on_connected would deadlock, so it raises RuntimeError saying so."""

    class Eager(Rooms):
        async def on_connected(self) -> None:
            try:
                await self.clients.caller.invoke("Answer", "too soon")
            except RuntimeError as exc:
                self.on_connected_error = exc

    hub = Eager()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.call("Me")
    assert "cannot be awaited in on_connected" in str(hub.on_connected_error)


async def test_hub_server_refuses_a_hub_it_cannot_serve() -> None:
    """A hub with a method that cannot be offered fails when the HubServer is built."""

    class Bad(Hub):
        def echo(self, text: str) -> str:
            return text

    with pytest.raises(TypeError, match=r"Bad\.echo must be 'async def'"):
        HubServer(Bad())
