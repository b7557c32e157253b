"""Fewer scheduler trips and bytes per connection, and nothing else changed: checkpoints, locking, order."""

from __future__ import annotations

import gc

import h11
import trio
import trio.testing
from wsproto.events import BytesMessage, CloseConnection, TextMessage

import trio_ws

from .helpers import IO_DEADLINE, MemoryListener, open_raw_websocket, start_memory_server


async def test_get_and_send_message_are_still_checkpoints(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """get_message() and send_message() stay cancel points and schedule points."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def checked_echo(ws: trio_ws.WebSocketConnection) -> None:
        with trio.testing.assert_checkpoints():
            message = await ws.get_message()
        with trio.testing.assert_checkpoints():
            await ws.send_message(message)

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    with trio.fail_after(IO_DEADLINE):
        client = await open_raw_websocket(memory_listener)
        await client.send(TextMessage(data="checked"))
        assert await client.next_event() == TextMessage(data="checked")
        closed = await client.next_event()
        assert isinstance(closed, CloseConnection) and closed.code == 1000


async def test_concurrent_senders_take_turns(nursery: trio.Nursery, memory_listener: MemoryListener) -> None:
    """Tasks sending at once on one connection wait for the stream lock: every message arrives whole."""
    app = trio_ws.App()
    payloads = [bytes([n]) * 100_000 for n in range(3)]

    @app.websocket("/ws")
    async def three_senders(ws: trio_ws.WebSocketConnection) -> None:
        async def send_all(payload: bytes) -> None:
            for _ in range(5):
                await ws.send_message(payload)

        async with trio.open_nursery() as senders:
            for payload in payloads:
                senders.start_soon(send_all, payload)

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    received: list[bytes] = []
    with trio.fail_after(IO_DEADLINE):
        client = await open_raw_websocket(memory_listener)
        part = b""
        while len(received) < 15:
            event = await client.next_event()
            assert isinstance(event, BytesMessage), event
            part += event.data
            if event.message_finished:
                received.append(part)
                part = b""
    assert sorted(received) == sorted(payloads * 5)


async def test_a_burst_queues_in_order_behind_a_slow_handler(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Messages arriving faster than the handler reads wait in the bounded queue and keep their order."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def slow_echo(ws: trio_ws.WebSocketConnection) -> None:
        while True:
            message = await ws.get_message()
            await trio.testing.wait_all_tasks_blocked()  # the reader fills the queue meanwhile
            await ws.send_message(message)

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    with trio.fail_after(IO_DEADLINE):
        client = await open_raw_websocket(memory_listener)
        messages = [TextMessage(data=f"m{i}") for i in range(50)]
        await client.send(*messages)
        assert [await client.next_event() for _ in messages] == messages


async def test_open_websockets_hold_no_http_state(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """After the upgrade, a connection keeps no h11 server connection alive (memory per idle socket)."""
    app = trio_ws.App()
    opened = 0
    counted = trio.Event()
    alive: list[int] = []

    @app.websocket("/ws")
    async def count_http_state(ws: trio_ws.WebSocketConnection) -> None:
        nonlocal opened
        opened += 1
        if opened == 3:
            gc.collect()
            alive.append(
                sum(isinstance(o, h11.Connection) and o.our_role is h11.SERVER for o in gc.get_objects())
            )
            counted.set()
        await ws.get_message()

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    with trio.fail_after(IO_DEADLINE):
        for _ in range(3):
            await open_raw_websocket(memory_listener)
        await counted.wait()
    # One, shared by every open connection as its finished handshake's.
    assert alive == [1]
