"""The inbox and outbox (batching.py): replies batched but never delayed, checkpoints kept, order kept."""

from __future__ import annotations

import gc

import h11
import trio
import trio.testing
from wsproto.events import BytesMessage, CloseConnection, TextMessage

import trio_ws
from trio_ws._websocket.batching import MESSAGES_PER_TURN

from ..helpers import IO_DEADLINE, MemoryListener, RawClient, open_raw_websocket, start_memory_server


async def test_get_and_send_message_are_still_checkpoints(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """get_message() that waits and send_message() of a lone reply are cancel points and schedule
    points."""
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
    # The handshake's wsproto connection (and its h11 one) goes once the 101 is written.
    assert alive == [0]


class CountingStream(trio.abc.Stream):
    """A stream that notes the size of every ``send_all`` and passes everything on."""

    def __init__(self, inner: trio.abc.Stream, writes: list[int]) -> None:
        self.inner = inner
        self.writes = writes

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(len(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _counting_pair(writes: list[int]) -> trio_ws.testing.StreamPairFactory:
    """memory_stream_pair, with the size of each of the server's writes noted in ``writes``."""

    def pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        client, server = trio.testing.memory_stream_pair()
        return client, CountingStream(server, writes)

    return pair


async def test_replies_to_one_read_go_out_in_one_write(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Sixteen messages that arrive in one read are echoed with one write of sixteen frames."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener, keep_alive_interval=None)
    writes: list[int] = []
    client = RawClient(await memory_listener.connect(_counting_pair(writes)))
    await client.handshake()
    await trio.testing.wait_all_tasks_blocked()
    writes.clear()
    messages = [TextMessage(data=f"message {i:02}") for i in range(16)]
    await client.send(*messages)
    assert [await client.next_event() for _ in messages] == messages
    assert writes == [16 * (2 + len("message 00"))]


async def test_replies_held_back_go_out_once_they_reach_64_kib(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Replies held back are written as soon as they reach 64 KiB, whatever else waits; twice in a
    row, so the count starts again after each write."""
    await start_memory_server(nursery, trio_ws.echo_app(), memory_listener, keep_alive_interval=None)
    writes: list[int] = []
    client = RawClient(await memory_listener.connect(_counting_pair(writes)))
    await client.handshake()
    reply = 4 + 20_000  # a 20,000-byte message and its frame header
    for burst in range(2):
        await trio.testing.wait_all_tasks_blocked()
        writes.clear()
        messages = [BytesMessage(data=bytes([burst, n]) * 10_000) for n in range(8)]
        await client.send(*messages)
        for message in messages:
            data = b""
            while True:
                event = await client.next_event()
                assert isinstance(event, BytesMessage)
                data += event.data
                if event.message_finished:
                    break
            assert data == message.data
        # Held back while under 64 KiB: the fourth reply makes 80,016 bytes and goes out with the
        # three before it; so do the next four.
        assert writes == [4 * reply, 4 * reply], f"burst {burst}"


async def test_a_lone_reply_is_never_held_back(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A reply with nothing else received goes out at once, even if the handler then waits an hour."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def reply_then_think(ws: trio_ws.WebSocketConnection) -> None:
        async for message in ws:
            await ws.send_message(message)
            await trio.sleep(3600)

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    client = await open_raw_websocket(memory_listener)
    start = trio.current_time()
    await client.send(TextMessage(data="now"))
    assert await client.next_event() == TextMessage(data="now")
    assert trio.current_time() == start


async def test_a_reply_held_back_goes_out_when_the_handler_waits_for_something_else(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A reply held back for a batch (more messages were queued) still goes out at once when the
    handler then waits on something other than the next message: the reader writes it."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def reply_then_think(ws: trio_ws.WebSocketConnection) -> None:
        async for message in ws:
            await ws.send_message(message)
            await trio.sleep(3600)  # while the second message waits in the inbox

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    client = await open_raw_websocket(memory_listener)
    start = trio.current_time()
    await client.send(TextMessage(data="first"), TextMessage(data="second"))
    assert await client.next_event() == TextMessage(data="first")
    assert trio.current_time() == start
    assert await client.next_event() == TextMessage(data="second")
    assert trio.current_time() == start + 3600


async def test_a_long_first_reply_is_not_held_back_when_the_reader_is_not_waiting(
    nursery: trio.Nursery, memory_listener: MemoryListener, autojump_clock: trio.testing.MockClock
) -> None:
    """A long reply goes in the outbox as two pieces (header and payload) but counts as one reply:
    the first one, with the reader back at the socket (the inbox has room), still goes out at once."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def reply_then_think(ws: trio_ws.WebSocketConnection) -> None:
        async for message in ws:
            await ws.send_message(message)
            await trio.sleep(3600)  # while the second message waits in the inbox

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None, message_queue_size=16)
    client = await open_raw_websocket(memory_listener)
    start = trio.current_time()
    long = BytesMessage(data=b"\x01" * 5000)
    await client.send(long, TextMessage(data="second"))
    assert await client.next_event() == long
    assert trio.current_time() == start
    assert await client.next_event() == TextMessage(data="second")
    assert trio.current_time() == start + 3600


async def test_a_handler_busy_with_a_full_inbox_still_lets_others_run(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """get_message() does not wait while messages are queued, but it takes a schedule point at least
    every MESSAGES_PER_TURN messages, and is a cancel point every time."""
    app = trio_ws.App()
    done = trio.Event()

    @app.websocket("/ws")
    async def count(ws: trio_ws.WebSocketConnection) -> None:
        for _ in range(4 * MESSAGES_PER_TURN):
            await ws.get_message()
        done.set()

    other_task_turns = 0

    async def other_task() -> None:
        nonlocal other_task_turns
        while not done.is_set():
            other_task_turns += 1
            await trio.lowlevel.checkpoint()

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    client = await open_raw_websocket(memory_listener)
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(other_task)
    await client.send(*[TextMessage(data="x") for _ in range(4 * MESSAGES_PER_TURN)])
    await done.wait()
    assert other_task_turns >= 4
