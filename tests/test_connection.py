"""One WebSocket's life: subprotocols, the message size limit, and handler failures."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.lowlevel
import trio.testing
from websockets.exceptions import ConnectionClosedError
from websockets.trio.client import connect

import trio_ws

from .helpers import (
    IO_DEADLINE,
    start_server,
    warnings_logged,
)


@pytest.mark.parametrize(
    ("proposed", "chosen"),
    [
        (["v1.chat", "v2.chat"], "v1.chat"),
        (["v2.chat", "v1.chat"], "v2.chat"),
        (["other", "v2.chat"], "v2.chat"),
        (["other"], None),
        (None, None),
    ],
)
async def test_subprotocol_is_the_first_proposal_the_endpoint_supports(
    nursery: trio.Nursery, proposed: list[str] | None, chosen: str | None
) -> None:
    """The server picks the first of the client's proposals that the route supports, or none."""
    server = await start_server(nursery, trio_ws.echo_app(subprotocols=["v2.chat", "v1.chat"]))
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), subprotocols=proposed) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == chosen
            await ws.send("hi")
            assert await ws.recv() == "hi"


async def test_handler_sees_the_chosen_subprotocol(nursery: trio.Nursery) -> None:
    """ws.subprotocol on the server side is the negotiated one."""
    app = trio_ws.App()

    @app.websocket("/chat", subprotocols=["chat"])
    async def tell(ws: trio_ws.WebSocketConnection) -> None:
        await ws.send_message(f"you speak {ws.subprotocol}")

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url("/chat"), subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            assert await ws.recv() == "you speak chat"


async def test_oversize_message_closes_with_1009(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A message over max_message_size closes that connection with 1009 and a log line; a message at
    the limit passes."""
    caplog.set_level(logging.INFO, logger="trio_ws")
    server = await start_server(nursery, trio_ws.echo_app(), max_message_size=1000)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url(), compression=None) as other:
            async with connect(server.ws_url(), compression=None) as ws:
                await ws.send(b"x" * 1000)
                assert await ws.recv() == b"x" * 1000
                await ws.send(b"x" * 1001)
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert ws.protocol.close_rcvd is not None
                assert ws.protocol.close_rcvd.code == 1009
                assert "1000 bytes" in ws.protocol.close_rcvd.reason
            await other.send("unaffected")
            assert await other.recv() == "unaffected"
    closes = [r.getMessage() for r in caplog.records if "closed with 1009" in r.getMessage()]
    assert len(closes) == 1 and "1000 bytes" in closes[0]
    assert warnings_logged(caplog.records) == []


async def test_handler_exception_closes_only_its_connection_with_1011(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing handler is logged once, with context; its client gets 1011; others carry on."""
    app = trio_ws.App()

    @app.websocket("/boom")
    async def boom(ws: trio_ws.WebSocketConnection) -> None:
        await ws.get_message()
        raise RuntimeError("handler bug")

    app.add_websocket("/ws", trio_ws.echo)
    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url("/ws")) as other:
            async with connect(server.ws_url("/boom")) as ws:
                await ws.send("trigger")
                with pytest.raises(ConnectionClosedError):
                    await ws.recv()
                assert ws.protocol.close_rcvd is not None
                assert ws.protocol.close_rcvd.code == 1011
            await other.send("still fine")
            assert await other.recv() == "still fine"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "/boom" in errors[0].getMessage() and "boom" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)


async def test_peer_leaving_mid_send_is_not_an_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """ConnectionClosed escaping a handler (the peer left) is normal: nothing is logged as an error."""
    app = trio_ws.App()
    done = trio.Event()

    @app.websocket("/ws")
    async def push(ws: trio_ws.WebSocketConnection) -> None:
        try:
            while True:
                await ws.send_message("tick")
                await trio.lowlevel.checkpoint()
        finally:
            done.set()

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url()) as ws:
            assert await ws.recv() == "tick"
        await done.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert warnings_logged(caplog.records) == []
    assert server.statistics().open_websockets == 0


async def test_connection_closed_inside_a_handler_nursery_is_not_an_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler whose own nursery fails only with ConnectionClosed (the peer left) logs no error."""
    app = trio_ws.App()
    finished = trio.Event()

    @app.websocket("/ws")
    async def two_tasks(ws: trio_ws.WebSocketConnection) -> None:
        async def pump() -> None:
            while True:
                await ws.send_message(await ws.get_message())

        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(pump)
                inner.start_soon(pump)
        finally:
            finished.set()

    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with connect(server.ws_url()) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
        await finished.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert warnings_logged(caplog.records) == []
