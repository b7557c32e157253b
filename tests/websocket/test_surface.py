"""The server connection is a trio-websocket ``WebSocketConnection`` that inherits nothing it uses."""

from __future__ import annotations

import pytest
import trio
import trio_websocket
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

import trio_ws
from trio_ws._websocket.client import ClientConnection
from trio_ws._websocket.connection import ServerConnection

from ..helpers import IO_DEADLINE, MemoryListener, open_raw_websocket, start_memory_server


def _own_members(connection_class: type) -> set[str]:
    """The names defined by a connection class and its bases up to (not including) trio-websocket's."""
    names: set[str] = set()
    for cls in connection_class.__mro__:
        if cls is trio_websocket.WebSocketConnection:
            return names
        names |= set(vars(cls))
    raise AssertionError(f"{connection_class.__name__} is no longer a trio_websocket.WebSocketConnection")


@pytest.mark.parametrize("connection_class", [ServerConnection, ClientConnection])
def test_every_public_member_of_trio_websockets_class_is_defined_here(connection_class: type) -> None:
    """Each public method, property and attribute of trio_websocket.WebSocketConnection (and of its
    base, trio.abc.AsyncResource: ``async with``) is trio_ws's own; when trio-websocket grows one,
    this test names it, and the connections must define it before it can be used."""
    public = {name for name in dir(trio_websocket.WebSocketConnection) if not name.startswith("_")}
    public |= {"__aenter__", "__aexit__", "__init__", "__str__"}
    missing = public - _own_members(connection_class)
    assert not missing, f"trio-websocket's WebSocketConnection has members trio_ws does not define: {missing}"


async def test_a_whole_connection_runs_none_of_trio_websockets_code(
    nursery: trio.Nursery, memory_listener: MemoryListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every function of trio-websocket's class made to fail, a connection still opens, echoes,
    pings, answers a ping, and closes; and it holds none of trio-websocket's state."""
    base = trio_websocket.WebSocketConnection
    for name, member in list(vars(base).items()):
        if callable(member) or isinstance(member, property):

            def refuse(*_: object, name: str = name) -> None:
                raise AssertionError(f"trio-websocket's WebSocketConnection.{name} ran")

            monkeypatch.setattr(base, name, property(refuse) if isinstance(member, property) else refuse)
    app = trio_ws.App()
    instance_state: list[dict[str, object]] = []

    @app.websocket("/ws")
    async def echo(ws: trio_ws.WebSocketConnection) -> None:
        instance_state.append(dict(getattr(ws, "__dict__", {})))
        await ws.ping(b"from the server")
        async for message in ws:
            await ws.send_message(message)

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    with trio.fail_after(IO_DEADLINE):
        client = await open_raw_websocket(memory_listener)
        assert await client.next_event() == Ping(payload=b"from the server")
        await client.send(Pong(payload=b"from the server"), Ping(payload=b"from the client"))
        assert await client.next_event() == Pong(payload=b"from the client")
        await client.send(TextMessage(data="hello"), CloseConnection(code=1000))
        assert await client.next_event() == TextMessage(data="hello")
        closed = await client.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1000
    assert instance_state == [{}]


def test_handlers_still_see_trio_websockets_types() -> None:
    """isinstance checks on trio-websocket's class still hold, and its exceptions are the ones raised."""
    assert issubclass(trio_ws.ServerWebSocket, trio_websocket.WebSocketConnection)
    assert issubclass(trio_ws.ServerWebSocket, trio_ws.WebSocketConnection)
    assert trio_ws.ConnectionClosed is trio_websocket.ConnectionClosed
