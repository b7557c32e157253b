"""Keep-alive: pings at the interval, and a silent peer closed after the timeout.

These run over memory streams with the autojump clock, so a 20-second
interval takes no real time, and the peer is a raw wsproto client that can
really go silent.
"""

from __future__ import annotations

import trio
import trio.testing
from wsproto.events import CloseConnection, Ping, TextMessage

import trio_ws

from ..helpers import MemoryListener, start_memory_server, task_count
from ..raw import open_raw_websocket


async def test_pings_arrive_at_the_interval(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A ping every keep_alive_interval seconds, for as long as the peer answers with pongs."""
    await start_memory_server(
        nursery, trio_ws.echo_app(), memory_listener, keep_alive_interval=5, keep_alive_timeout=2
    )
    client = await open_raw_websocket(memory_listener)
    start = trio.current_time()
    ping_times: list[float] = []
    while len(ping_times) < 4:
        event = await client.next_event()
        assert isinstance(event, Ping)
        ping_times.append(trio.current_time() - start)
        await client.send(event.response())
    assert ping_times == [5, 10, 15, 20]


async def test_silent_peer_is_closed_after_the_timeout(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """No pong within keep_alive_timeout: close 1011, TCP closed, handler told, tasks freed."""
    handler_saw: list[int] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def wait_for_messages(ws: trio_ws.WebSocketConnection) -> None:
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            assert exc.reason is not None
            handler_saw.append(exc.reason.code)

    server = await start_memory_server(
        nursery, app, memory_listener, keep_alive_interval=5, keep_alive_timeout=3
    )
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    client = await open_raw_websocket(memory_listener)
    start = trio.current_time()

    ping = await client.next_event()  # and never answer it
    assert isinstance(ping, Ping)
    assert trio.current_time() - start == 5
    close = await client.next_event()
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (1011, "keep-alive timeout")
    assert trio.current_time() - start == 5 + 3
    assert await client.next_event() is None  # TCP closed without waiting for our answer

    await trio.testing.wait_all_tasks_blocked()
    assert handler_saw == [1011]
    assert server.statistics().open_websockets == 0
    assert task_count() == tasks_before


async def test_a_busy_connection_still_gets_pings(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """Pings go out on schedule while messages flow, and the echo is not disturbed."""
    await start_memory_server(
        nursery, trio_ws.echo_app(), memory_listener, keep_alive_interval=1, keep_alive_timeout=1
    )
    client = await open_raw_websocket(memory_listener)
    pings = echoes = 0
    for i in range(30):
        await client.send(TextMessage(data=str(i)))
        await trio.sleep(0.25)
        while echoes <= i:
            event = await client.next_event()
            if isinstance(event, Ping):
                pings += 1
                await client.send(event.response())
            else:
                assert isinstance(event, TextMessage) and event.data == str(echoes)
                echoes += 1
    assert pings >= 6


async def test_keep_alive_can_be_turned_off(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """With keep_alive_interval=None no ping is ever sent and an idle peer stays connected."""
    server = await start_memory_server(nursery, trio_ws.echo_app(), memory_listener, keep_alive_interval=None)
    client = await open_raw_websocket(memory_listener)
    with trio.move_on_after(3600):
        event = await client.next_event()
        raise AssertionError(f"expected silence, got {event}")
    assert server.statistics().open_websockets == 1


async def test_keep_alive_stays_while_a_close_is_stuck(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """While a Close waits behind a reply stuck in send, the keep-alive task does not quietly return:
    it stays until close_timeout has dropped the connection, then ends with it."""
    await start_memory_server(
        nursery,
        trio_ws.echo_app(),
        memory_listener,
        keep_alive_interval=1,
        keep_alive_timeout=1,
        close_timeout=10,
    )
    await trio.testing.wait_all_tasks_blocked()
    tasks_before = task_count()
    client = await open_raw_websocket(memory_listener, stream_pair=trio.testing.lockstep_stream_pair)
    await client.send(TextMessage(data="stuck"), CloseConnection(code=1000))
    await trio.sleep(5)  # pings would be due now, but the connection is closing
    assert task_count() == tasks_before + 3  # connection task, reader, keep-alive
    await trio.sleep(5.1)
    await trio.testing.wait_all_tasks_blocked()
    assert task_count() == tasks_before


async def test_a_route_can_keep_its_connections_alive_itself(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A route with ``keep_alive=False`` gets no pings, so a peer that never answers one (as
    signalrcore's WebSocket client) is not closed as dead; other routes are pinged as before."""
    app = trio_ws.App()

    @app.websocket("/quiet", keep_alive=False)
    async def quiet(ws: trio_ws.WebSocketConnection) -> None:
        async for message in ws:
            await ws.send_message(message)

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=5, keep_alive_timeout=2)
    client = await open_raw_websocket(memory_listener, "/quiet")
    with trio.move_on_after(60) as waited:
        await client.next_event()
    assert waited.cancelled_caught  # a minute of silence: no ping, no close
    await client.send(TextMessage("still open"))
    assert await client.next_event() == TextMessage("still open")
