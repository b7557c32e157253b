"""A long message cancelled between its fragments ends the connection: nothing else can follow it."""

from __future__ import annotations

import trio
import trio.testing
from wsproto.events import TextMessage

import trio_ws

from ..helpers import IO_DEADLINE, MemoryListener, open_raw_websocket, start_memory_server


async def test_a_send_cancelled_between_fragments_drops_tcp(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """The client reads the first fragment, then the end of TCP (no other message can follow a message
    cut short), and the handler's next send raises ConnectionClosed (1006) instead of a protocol error."""
    app = trio_ws.App()
    first_fragment_read = trio.Event()
    after: list[object] = []
    handler_done = trio.Event()

    @app.websocket("/ws")
    async def cut_short(ws: trio_ws.WebSocketConnection) -> None:
        with trio.CancelScope() as scope:
            nursery.start_soon(_cancel_when, first_fragment_read, scope)
            await ws.send_message("x" * 1_000_000)
        try:
            await ws.send_message("next")
        except trio_ws.ConnectionClosed as exc:
            after.append(exc.reason.code if exc.reason else None)
        handler_done.set()

    await start_memory_server(nursery, app, memory_listener, keep_alive_interval=None)
    with trio.fail_after(IO_DEADLINE):
        client = await open_raw_websocket(memory_listener, stream_pair=trio.testing.lockstep_stream_pair)
        first = await client.next_event()
        assert isinstance(first, TextMessage) and not first.message_finished
        first_fragment_read.set()
        while (event := await client.next_event()) is not None:
            assert isinstance(event, TextMessage) and not event.message_finished
        await handler_done.wait()
    assert after == [1006]


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
