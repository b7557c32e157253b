"""trio_ws.testing: in-memory WebSockets to an App, and a real server on port 0."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event
from wsproto.events import Request as WSRequest

import trio_ws
import trio_ws.testing
from trio_ws._websocket.client import client_connection
from trio_ws.testing import open_memory_server, open_memory_websocket, start_server

from .helpers import IO_DEADLINE, close_of, task_count


def _app() -> trio_ws.App:
    app = trio_ws.echo_app()

    @app.websocket("/bye")
    async def bye(ws: trio_ws.WebSocketConnection) -> None:
        await ws.send_message(f"bye from {ws.path}")
        await ws.aclose(4000, "see you")

    @app.websocket("/later")
    async def later(ws: trio_ws.WebSocketConnection) -> None:
        await trio.sleep(3600)
        await ws.send_message("an hour later")

    @app.websocket("/proto", subprotocols=["b.v1", "a.v1"])
    async def proto(ws: trio_ws.WebSocketConnection) -> None:
        await ws.send_message(str(ws.subprotocol))

    return app


async def test_memory_websocket_echoes_text_and_binary() -> None:
    """The client is trio-websocket's: send_message and get_message work as they do over TCP."""
    async with open_memory_websocket(_app(), "/ws") as ws:
        assert isinstance(ws, trio_websocket.WebSocketConnection)
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        await ws.send_message(b"\x00\xff")
        assert await ws.get_message() == b"\x00\xff"
    assert ws.closed is not None and ws.closed.code == 1000


async def test_server_close_reaches_the_client_with_code_reason_and_query() -> None:
    """A handler's close shows up as ConnectionClosed with its code and reason; the query reaches ws.path."""
    async with open_memory_websocket(_app(), "/bye?name=ann") as ws:
        assert await ws.get_message() == "bye from /bye?name=ann"
        with pytest.raises(trio_ws.ConnectionClosed) as closed:
            await ws.get_message()
    assert close_of(closed.value) == (4000, "see you")


async def test_refused_handshake_raises_connection_rejected_alone() -> None:
    """An unknown path, or a forbidden origin, raises ConnectionRejected itself, not inside a group."""
    async with open_memory_server(_app()) as served:
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with served.connect("/nowhere"):
                pass  # pragma: no cover
        assert rejected.value.status_code == 404
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with served.connect("/ws", headers=[("Origin", "https://evil.example")]):
                pass  # pragma: no cover
        assert rejected.value.status_code == 403
        # The server is unharmed: the next client gets through.
        async with served.connect("/ws") as ws:
            await ws.send_message("still here")
            assert await ws.get_message() == "still here"


async def test_subprotocols_are_proposed() -> None:
    """connect(subprotocols=...) proposes them; the route picks the first of the client's it speaks."""
    async with open_memory_websocket(_app(), "/proto", subprotocols=["a.v1", "b.v1"]) as ws:
        assert ws.subprotocol == "a.v1"
        assert await ws.get_message() == "a.v1"


async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    """An exception raised inside the block is not wrapped in an ExceptionGroup."""
    with pytest.raises(KeyError, match="from the test"):
        async with open_memory_websocket(_app(), "/ws"):
            raise KeyError("from the test")
    with pytest.raises(KeyError, match="outer"):
        async with open_memory_server(_app()) as served, served.connect("/ws"):
            raise KeyError("outer")


async def test_two_clients_and_no_task_left_behind() -> None:
    """Two clients share one server; when the blocks end, every task they started has ended."""
    before = task_count()
    async with open_memory_server(_app()) as served:
        async with served.connect("/ws") as a, served.connect("/ws") as b:
            await a.send_message("a")
            await b.send_message("b")
            assert (await a.get_message(), await b.get_message()) == ("a", "b")
            assert served.server.statistics().open_websockets == 2
        assert task_count() > before
    assert task_count() == before


async def test_memory_connections_follow_the_autojump_clock(autojump_clock: trio.testing.MockClock) -> None:
    """With no sockets, an hour-long handler takes no real time; the client answers keep-alive pings."""
    start = trio.current_time()
    async with open_memory_websocket(_app(), "/later") as ws:
        assert await ws.get_message() == "an hour later"
    assert trio.current_time() - start >= 3600


async def test_leaving_the_server_block_says_goodbye_with_1001() -> None:
    """A WebSocket still open when the server's block ends gets close 1001, as on Ctrl-C."""
    async with trio.open_nursery() as nursery:
        async with open_memory_server(_app()) as served:
            stream = cast(trio.SocketStream, await served.listener.connect())
            ws = await trio_websocket.wrap_client_stream(nursery, stream, "localhost", "/ws")
        with pytest.raises(trio_ws.ConnectionClosed) as closed:
            await ws.get_message()
        assert close_of(closed.value) == (1001, "server shutting down")


async def test_start_server_serves_on_a_free_port(nursery: trio.Nursery) -> None:
    """start_server binds 127.0.0.1 port 0 and hands back a Server whose ws_url a real client can use."""
    server = await start_server(nursery, _app())
    assert server.port != 0
    assert server.ws_url("/ws") == f"ws://127.0.0.1:{server.port}/ws"
    with trio.fail_after(IO_DEADLINE):
        async with trio_websocket.open_websocket_url(server.ws_url("/ws")) as ws:
            await ws.send_message("over TCP")
            assert await ws.get_message() == "over TCP"
        await server.aclose()


async def test_a_ping_crossing_the_clients_close_is_ignored() -> None:
    """A server ping that arrives after the client's Close (a keep-alive race) neither crashes nor answers."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_close_with_a_ping_first, server_stream)
        ws = await client_connection(
            nursery,
            client_stream,
            "/ws",
            subprotocols=[],
            extra_headers=[],
            message_queue_size=1,
            max_message_size=99,
        )
        await ws.aclose()
    assert ws.closed is not None and ws.closed.code == 1000


async def _close_with_a_ping_first(stream: trio.abc.Stream) -> None:
    """A server made of wsproto: accept, read the client's Close, send a Ping, then answer the Close."""
    server = WSConnection(ConnectionType.SERVER)
    events: list[Event] = []
    while not any(isinstance(e, CloseConnection) for e in events):
        server.receive_data(bytes(await stream.receive_some(65536)))
        for event in server.events():
            events.append(event)
            if isinstance(event, WSRequest):
                await stream.send_all(server.send(AcceptConnection()))
    close = events[-1]
    assert isinstance(close, CloseConnection)
    ping = b"\x89\x04late"  # built by hand: wsproto won't send a Ping once the peer is closing
    await stream.send_all(ping + server.send(close.response()))
    assert await stream.receive_some(65536) == b""  # no Pong: the client only closes TCP
    await stream.aclose()


def test_every_public_name_is_real_and_documented() -> None:
    """trio_ws.testing's __all__ names real, public things, and the testing guide covers the helpers."""
    readme = (Path(__file__).parent.parent / "docs" / "guides" / "testing.md").read_text()
    for name in trio_ws.testing.__all__:
        assert hasattr(trio_ws.testing, name) and not name.startswith("_"), name
    for name in ("open_memory_server", "open_memory_websocket", "start_server", "MemoryListener"):
        assert f"| `{name}" in readme, name
