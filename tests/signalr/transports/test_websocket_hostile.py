"""Hostile hub clients over a real WebSocket, against the conformance hub mounted with ``map_hub``.

The same cases as ``tests/signalr/hub/test_hostile.py`` (which runs them over memory streams, message by
message), here through the whole server: the front door, the WebSocket, the transport. Each is
bounded and answered (a Close, an error completion, a WebSocket close code), a bystander
connection keeps answering, and nothing is logged above INFO, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from websockets.exceptions import ConnectionClosed

import trio_ws
from examples.signalr.testhub import OPTIONS, build_app
from trio_ws.signalr._protocol.messages import (
    CancelInvocation,
    Close,
    Completion,
    Invocation,
    StreamItem,
)

from ...helpers import IO_DEADLINE
from ..helpers import WebSocketHubClient, assert_no_tracebacks, open_hub_websocket

HUB = dataclasses.replace(OPTIONS, send_buffer_size=64 * 1024)


@pytest.fixture
async def server(nursery: trio.Nursery) -> trio_ws.Server:
    return await trio_ws.testing.start_server(nursery, build_app(HUB))


@pytest.fixture
async def bystander(server: trio_ws.Server) -> AsyncIterator[WebSocketHubClient]:
    async with open_hub_websocket(server.ws_url("/testhub")) as client:
        yield client


async def _closed_with(client: WebSocketHubClient) -> tuple[Close | None, int | None]:
    """Read to the end: the hub's Close message (if any) and the WebSocket's close code."""
    goodbye: Close | None = None
    try:
        while True:
            message = await client.receive()
            if isinstance(message, Close):
                goodbye = message
    except ConnectionClosed as closed:
        return goodbye, None if closed.rcvd is None else closed.rcvd.code


async def test_huge_messages_are_refused_early(
    server: trio_ws.Server, bystander: WebSocketHubClient, caplog: pytest.LogCaptureFixture
) -> None:
    """An invocation over the hub's 32 KiB limit gets Close with an error; one over the server's
    1 MiB WebSocket limit is closed with 1009 before it is buffered; the bystander carries on."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_websocket(server.ws_url("/testhub")) as client:
            await client.ws.send(
                json.dumps({"type": 1, "target": "Echo", "arguments": ["x" * 100_000]}) + "\x1e"
            )
            goodbye, code = await _closed_with(client)
            assert goodbye is not None and goodbye.error is not None
            assert goodbye.error.startswith("Connection closed with an error.")
            assert code == 1000
        async with open_hub_websocket(server.ws_url("/testhub")) as client:
            await client.ws.send("x" * 2_000_000)
            _, code = await _closed_with(client)
            assert code == 1009
        assert await bystander.call("Echo", "unharmed") == "unharmed"
    assert_no_tracebacks(caplog)


async def test_a_flood_of_calls_is_answered_in_order(
    server: trio_ws.Server, bystander: WebSocketHubClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A thousand calls in one frame are answered, one at a time and in order, while the bystander
    is answered too."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_websocket(server.ws_url("/testhub")) as client:
            flood = "".join(
                json.dumps({"type": 1, "invocationId": str(i), "target": "Echo", "arguments": [str(i)]})
                + "\x1e"
                for i in range(1000)
            )
            await client.ws.send(flood)
            assert await bystander.call("Echo", "meanwhile") == "meanwhile"
            answers = [await client.receive() for _ in range(1000)]
            assert answers == [Completion.with_result(str(i), str(i)) for i in range(1000)]
    assert_no_tracebacks(caplog)


async def test_unknown_ids_and_types_are_ignored(
    server: trio_ws.Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Items, completions and cancels for ids nobody knows, and a message type from the future, are
    ignored; an unknown method gets an error completion; the connection stays open."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_websocket(server.ws_url("/testhub")) as client:
            await client.send(StreamItem("nobody", 1))
            await client.send(Completion.void("nobody"))
            await client.send(CancelInvocation("nobody"))
            await client.ws.send('{"type":99,"whatever":true}\x1e')
            await client.send(Invocation("NoSuchMethod", (), "1"))
            answer = await client.receive()
            assert isinstance(answer, Completion) and answer.error is not None
            assert "NoSuchMethod" in answer.error
            assert await client.call("Echo", "still open") == "still open"
    assert_no_tracebacks(caplog)


async def test_a_stream_that_never_completes_holds_no_call_slot(
    server: trio_ws.Server, caplog: pytest.LogCaptureFixture
) -> None:
    """An upload that never ends keeps its method waiting, but other calls on the connection are
    answered, and leaving ends it."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_websocket(server.ws_url("/testhub")) as client:
            await client.send(Invocation("StreamingConcat", (), "concat", ("s",)))
            await client.send(StreamItem("s", "partial"))
            assert await client.call("Echo", "not blocked") == "not blocked"
    assert_no_tracebacks(caplog)


async def test_malformed_json_closes_with_an_error(
    server: trio_ws.Server, bystander: WebSocketHubClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that are not JSON get Close with the error (detailed errors say why), then the end."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_websocket(server.ws_url("/testhub")) as client:
            await client.ws.send('{"type":1,"target":\x1e')
            goodbye, code = await _closed_with(client)
            assert goodbye is not None and goodbye.error is not None
            assert goodbye.error.startswith("Connection closed with an error. ")
            assert goodbye.allow_reconnect
            assert code == 1000
        assert await bystander.call("Echo", "unharmed") == "unharmed"
    assert_no_tracebacks(caplog)


async def test_a_client_that_never_reads_is_closed_as_too_slow(
    server: trio_ws.Server, bystander: WebSocketHubClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A member that stops reading while broadcasts pile up is closed TOO_SLOW once its send buffer
    is full, without holding up the broadcaster or the others."""
    from websockets.trio.client import connect

    with trio.fail_after(IO_DEADLINE):
        # max_queue=1: the client library stops reading the socket once a message waits unread.
        async with connect(server.ws_url("/testhub"), max_queue=1, compression=None) as silent:
            await silent.send('{"protocol":"json","version":1}\x1e')
            assert await silent.recv() == "{}\x1e"
            chunk = "y" * 30_000
            for _ in range(800):  # 24 MB: past what the kernel buffers and the 64 KiB send buffer
                await bystander.call("Broadcast", chunk)
            # The server cut it off: reading what reached it ends in the close.
            with pytest.raises(ConnectionClosed):
                while True:
                    await silent.recv()
        await trio.testing.wait_all_tasks_blocked()  # the server's side has finished closing
        assert server.statistics().open_websockets == 1  # only the bystander is left
        assert await bystander.call("Echo", "unharmed") == "unharmed"
    assert_no_tracebacks(caplog)
