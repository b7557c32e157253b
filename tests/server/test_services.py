"""Server-lifetime services, and the shutdown signal that handlers and services watch (the
cross-cutting design's items 1 and 6)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection, TextMessage

import trio_ws

from ..helpers import MemoryListener, start_memory_server, task_count
from ..raw import open_raw_websocket


async def test_services_start_before_accepting_and_end_after_the_last_connection(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A service is running (started) before the first connection is accepted, learns of the shutdown
    from wait_closing(), and is cancelled only after every connection has ended."""
    events: list[str] = []
    app = trio_ws.App()

    @app.service
    async def ticker(
        server: trio_ws.Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        events.append("service ready")
        task_status.started()
        try:
            await server.wait_closing()
            events.append("service told of shutdown")
            await trio.sleep_forever()
        finally:
            events.append("service cancelled")

    @app.websocket("/ws")
    async def slow_to_leave(ws: trio_ws.ServerWebSocket) -> None:
        events.append("handler running")
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed:
            await trio.sleep(1)  # a handler that takes its time to leave, within the grace period
            events.append("handler done")

    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    server = await start_memory_server(nursery, app, memory_listener)
    assert events == ["service ready"]
    client = await open_raw_websocket(memory_listener)
    await trio.testing.wait_all_tasks_blocked()
    async with trio.open_nursery() as inner:
        inner.start_soon(server.aclose)
        close = await client.next_event()
        assert isinstance(close, CloseConnection) and close.code == 1001
        await client.send(close.response())
    assert events == [
        "service ready",
        "handler running",
        "service told of shutdown",
        "handler done",
        "service cancelled",
    ]
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before


async def test_a_service_that_fails_to_start_stops_serve(nursery: trio.Nursery) -> None:
    """An exception from a service before it is ready comes out of nursery.start(serve, ...)."""
    app = trio_ws.App()

    @app.service
    async def broken(
        server: trio_ws.Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        raise RuntimeError("no database")

    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="no database")):
        await start_memory_server(nursery, app, MemoryListener())


async def test_a_websocket_handler_says_its_own_goodbye_before_the_1001(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """At shutdown a handler waiting in ws.request.wait_closing() sends its last message before any
    Close; a handler that does not watch gets 1001 at once; one that watches but never returns gets
    its 1001 after half of shutdown_timeout."""
    app = trio_ws.App()

    @app.websocket("/polite")
    async def polite(ws: trio_ws.ServerWebSocket) -> None:
        await ws.request.wait_closing()
        await ws.send_message('{"type":7,"allowReconnect":true}')

    @app.websocket("/stubborn")
    async def stubborn(ws: trio_ws.ServerWebSocket) -> None:
        await ws.request.wait_closing()
        await trio.sleep_forever()

    app.add_websocket("/echo", trio_ws.echo)
    server = await start_memory_server(nursery, app, memory_listener, shutdown_timeout=6)
    clients = {
        path: await open_raw_websocket(memory_listener, f"/{path}") for path in ("polite", "stubborn", "echo")
    }
    await trio.testing.wait_all_tasks_blocked()
    start = trio.current_time()
    seen: dict[str, list[tuple[object, float]]] = {path: [] for path in clients}

    async def listen(path: str) -> None:
        client = clients[path]
        while (event := await client.next_event()) is not None:
            seen[path].append((event, trio.current_time() - start))
            if isinstance(event, CloseConnection):
                await client.send(event.response())

    async with trio.open_nursery() as inner:
        inner.start_soon(server.aclose)
        for path in clients:
            inner.start_soon(listen, path)
    [(goodbye, at), (close, _)] = seen["polite"]
    assert (goodbye, at) == (TextMessage(data='{"type":7,"allowReconnect":true}'), 0)
    assert isinstance(close, CloseConnection) and close.code == 1000  # the handler returned
    [(close, at)] = seen["echo"]
    assert isinstance(close, CloseConnection) and (close.code, at) == (1001, 0)
    [(close, at)] = seen["stubborn"]
    assert isinstance(close, CloseConnection) and (close.code, at) == (1001, 3)
