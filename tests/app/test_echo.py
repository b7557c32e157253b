"""The echo endpoint over real sockets, with the independent `websockets` client."""

from __future__ import annotations

import trio
import trio.testing
from websockets.trio.client import connect

import trio_ws

from ..helpers import IO_DEADLINE, task_count


async def test_text_comes_back_as_text(echo_server: trio_ws.Server) -> None:
    """A text message is echoed as the same text."""
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url()) as ws:
            await ws.send("hello, trio")
            assert await ws.recv() == "hello, trio"


async def test_binary_comes_back_as_binary(echo_server: trio_ws.Server) -> None:
    """A binary message is echoed as the same bytes, still binary."""
    payload = bytes(range(256))
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url()) as ws:
            await ws.send(payload)
            echoed = await ws.recv()
            assert isinstance(echoed, bytes)
            assert echoed == payload


async def test_empty_messages(echo_server: trio_ws.Server) -> None:
    """Empty text and empty binary messages are echoed with their type."""
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url()) as ws:
            await ws.send("")
            assert await ws.recv() == ""
            await ws.send(b"")
            assert await ws.recv() == b""


async def test_one_mebibyte_messages(echo_server: trio_ws.Server) -> None:
    """Messages of exactly the default max_message_size (1 MiB) pass both ways."""
    binary = bytes(i % 251 for i in range(1024 * 1024))
    text = "é" * (1024 * 1024 // 2)
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url(), max_size=None, compression=None) as ws:
            await ws.send(binary)
            assert await ws.recv() == binary
            await ws.send(text)
            assert await ws.recv() == text


async def test_many_messages_in_order(echo_server: trio_ws.Server) -> None:
    """500 pipelined messages, text and binary mixed, come back in order and with their type."""
    messages: list[str | bytes] = [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(500)]
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url()) as ws, trio.open_nursery() as nursery:

            async def send_all() -> None:
                for message in messages:
                    await ws.send(message)

            nursery.start_soon(send_all)
            received = [await ws.recv() for _ in messages]
    assert received == messages


async def test_concurrent_clients(echo_server: trio_ws.Server) -> None:
    """Twenty clients at once each get exactly their own messages back."""
    results: dict[int, list[str | bytes]] = {}

    async def client(n: int) -> None:
        async with connect(echo_server.ws_url()) as ws:
            got: list[str | bytes] = []
            for i in range(20):
                await ws.send(f"client {n} message {i}")
                got.append(await ws.recv())
            results[n] = got

    with trio.fail_after(IO_DEADLINE):
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(client, n)
    assert results == {n: [f"client {n} message {i}" for i in range(20)] for n in range(20)}


async def test_connection_leaves_no_task_behind(echo_server: trio_ws.Server) -> None:
    """After a client closes, the server's task tree is back to what it was before it connected."""
    await trio.testing.wait_all_tasks_blocked()
    before = task_count()
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url()) as ws:
            await ws.send("x")
            await ws.recv()
            await trio.testing.wait_all_tasks_blocked()
            assert echo_server.statistics().open_websockets == 1
            assert task_count() > before
    # The server closed TCP before the client saw EOF; what is left runs without I/O.
    await trio.testing.wait_all_tasks_blocked()
    assert echo_server.statistics().open_websockets == 0
    assert task_count() == before
