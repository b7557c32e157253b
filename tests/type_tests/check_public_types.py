"""Checked by mypy in CI, never run: the public API's types as a user's code sees them."""

from __future__ import annotations

from collections.abc import Coroutine
from functools import partial
from typing import Any, assert_type

import trio
import trio.testing
import trio_websocket

import trio_ws
import trio_ws.testing


async def starting_a_server(nursery: trio.Nursery) -> None:
    # trio types nursery.start() as returning Any, so annotate what started() hands back.
    options = trio_ws.Options(max_message_size=2**20, allowed_origins=["https://app.example"])
    server: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve, trio_ws.echo_app(), "127.0.0.1", 0, options=options)
    )
    assert_type(server.ws_url("/ws"), str)
    assert_type(server.statistics().open_websockets, int)
    assert_type(options.keep_alive_interval, float | None)


def decorators_keep_the_handler_type(ws: trio_ws.WebSocketConnection, request: trio_ws.Request) -> None:
    app = trio_ws.App()

    @app.websocket("/ws")
    async def handler(ws: trio_ws.WebSocketConnection) -> None:
        await ws.send_message("hi")
        async for message in ws:
            assert_type(message, str | bytes)

    # A handler written against trio-websocket's own class is accepted too.
    @app.websocket("/plain")
    async def plain(ws: trio_websocket.WebSocketConnection) -> None:
        await ws.send_message("hi")

    @app.route("/page")
    async def page(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, request.path)

    # The decorators hand back the function itself, with its own type (not Any).
    assert_type(handler(ws), Coroutine[Any, Any, None])  # type: ignore[unused-coroutine]
    assert_type(page(request), Coroutine[Any, Any, trio_ws.Response])  # type: ignore[unused-coroutine]


async def testing_helpers(nursery: trio.Nursery) -> None:
    app = trio_ws.echo_app()
    assert_type(await trio_ws.testing.start_server(nursery, app), trio_ws.Server)
    async with trio_ws.testing.open_memory_server(app) as served:
        assert_type(served, trio_ws.testing.MemoryServer)
        assert_type(served.server, trio_ws.Server)
        async with served.connect("/ws", stream_pair=trio.testing.lockstep_stream_pair) as ws:
            assert_type(ws, trio_ws.WebSocketConnection)
    async with trio_ws.testing.open_memory_websocket(app) as ws:
        assert_type(await ws.get_message(), str | bytes)
