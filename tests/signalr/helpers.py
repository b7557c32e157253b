"""A hub client for tests, over in-memory streams, built on trio_ws's sans-I/O protocol.

It speaks the hub protocol exactly as the tests tell it to (including wrongly),
so the server's answers can be asserted message by message. The official
clients are the oracle elsewhere; this one is for what they never send.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from trio_ws.signalr import Hub, HubOptions, HubServer, StreamTransport
from trio_ws.signalr._protocol import PROTOCOLS, HubProtocol
from trio_ws.signalr._protocol.framing import TextFramer
from trio_ws.signalr._protocol.handshake import encode_request, parse_response
from trio_ws.signalr._protocol.messages import (
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    StreamInvocation,
)

StreamPair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]


def decode_all(
    protocol: HubProtocol, data: bytes, *, chunk: int | None = None, limit: int = 2**20
) -> list[HubMessage]:
    """Every message in ``data``, fed to a fresh reader ``chunk`` bytes at a time (all at once by default)."""
    reader = protocol.reader(limit)
    out: list[HubMessage] = []
    step = chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        reader.receive_data(data[start : start + step])
        while (message := reader.next_message()) is not None:
            out.append(message)
    return out


class HubTestClient:
    """One client end of a hub connection."""

    def __init__(self, stream: trio.abc.Stream, protocol: HubProtocol) -> None:
        self.wire = stream
        self.protocol = protocol
        self._reader = protocol.reader(2**30)
        self._last_id = 0
        self.handshake_leftover = b""

    async def handshake(self, protocol: str | None = None, version: int = 1) -> str | None:
        """Send the handshake request and return the refusal's text, or ``None`` if accepted."""
        await self.wire.send_all(encode_request(protocol or self.protocol.name, version))
        framer = TextFramer(2**20)
        while (record := framer.next_record()) is None:
            data = await self.wire.receive_some()
            assert data, "the server closed before answering the handshake"
            framer.receive_data(data)
        self._reader.receive_data(framer.take_rest())
        return parse_response(record)

    async def send(self, message: HubMessage) -> None:
        await self.wire.send_all(self.protocol.encode(message))

    async def send_raw(self, data: bytes) -> None:
        await self.wire.send_all(data)

    async def receive(self, *, skip_pings: bool = True) -> HubMessage:
        """The next message from the server (Pings skipped unless asked for)."""
        while True:
            message = self._reader.next_message()
            if message is None:
                data = await self.wire.receive_some()
                if not data:
                    raise EOFError("the server closed the connection")
                self._reader.receive_data(data)
                continue
            if skip_pings and isinstance(message, Ping):
                continue
            return message

    async def receive_close(self) -> Close:
        """Read until the server's Close, which must be followed by the end of the stream."""
        while not isinstance(message := await self.receive(), Close):
            pass
        assert await self.wire.receive_some() == b"", "data after the Close message"
        return message

    async def at_eof(self) -> bool:
        return await self.wire.receive_some() == b""

    def next_id(self) -> str:
        self._last_id += 1
        return str(self._last_id)

    async def invoke(self, target: str, *args: Any, stream_ids: tuple[str, ...] = ()) -> Completion:
        """Call ``target`` and return its Completion (other messages must not come first)."""
        invocation_id = self.next_id()
        await self.send(Invocation(target, args, invocation_id, stream_ids))
        message = await self.receive()
        assert isinstance(message, Completion), message
        assert message.invocation_id == invocation_id
        return message

    async def call(self, target: str, *args: Any) -> Any:
        """Call ``target`` and return its result; fail the test on an error completion."""
        completion = await self.invoke(target, *args)
        assert completion.error is None, completion.error
        return completion.result

    async def stream(self, target: str, *args: Any) -> tuple[list[Any], Completion]:
        """Call a streaming ``target``: its items, and the Completion that ended them."""
        invocation_id = self.next_id()
        await self.send(StreamInvocation(invocation_id, target, args))
        items: list[Any] = []
        while True:
            message = await self.receive()
            if isinstance(message, Completion):
                assert message.invocation_id == invocation_id
                return items, message
            assert getattr(message, "invocation_id", None) == invocation_id, message
            items.append(message.item)  # type: ignore[union-attr]


@asynccontextmanager
async def serve_hub(hub: Hub, options: HubOptions | None = None, **fields: Any) -> AsyncIterator[HubServer]:
    """``hub`` served for the block with ``options`` (or ``HubOptions(**fields)``), then closed."""
    server = HubServer(hub, options=options or HubOptions(**fields))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        yield server
        await server.aclose()


@asynccontextmanager
async def connect(
    server: HubServer,
    protocol: str = "json",
    *,
    handshake: bool = True,
    user_id: str | None = None,
    stream_pair: StreamPair = trio.testing.memory_stream_pair,
) -> AsyncIterator[HubTestClient]:
    """A client connected to ``server`` over an in-memory stream (handshake done unless told not to)."""
    client_stream, server_stream = stream_pair()
    async with trio.open_nursery() as nursery:
        transport = StreamTransport(server_stream, name="Memory")
        nursery.start_soon(partial(server.serve_transport, transport, user_id=user_id))
        client = HubTestClient(client_stream, PROTOCOLS[protocol])
        if handshake:
            assert await client.handshake() is None
        yield client
        await client_stream.aclose()


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """A peer's mistakes are logged, but never with a traceback, and never above INFO."""
    for record in caplog.records:
        assert record.exc_info is None, f"traceback logged: {record.getMessage()}"
        assert record.levelno <= logging.INFO, f"{record.levelname}: {record.getMessage()}"


class WebSocketHubClient:
    """A hub client over a real WebSocket (the ``websockets`` library), speaking as the test says."""

    def __init__(self, ws: Any, protocol: HubProtocol) -> None:
        self.ws = ws
        self.protocol = protocol
        self._reader = protocol.reader(2**30)
        self._last_id = 0

    async def handshake(self, version: int = 1) -> str | None:
        """Send the handshake request; the refusal's text, or ``None`` if accepted."""
        await self.ws.send(encode_request(self.protocol.name, version).decode())
        framer = TextFramer(2**20)
        while (record := framer.next_record()) is None:
            data = await self.ws.recv()
            framer.receive_data(data.encode() if isinstance(data, str) else data)
        self._reader.receive_data(framer.take_rest())
        return parse_response(record)

    async def send(self, message: HubMessage) -> None:
        data = self.protocol.encode(message)
        await self.ws.send(data if self.protocol.name == "messagepack" else data.decode())

    async def receive(self, *, skip_pings: bool = True) -> HubMessage:
        """The next message from the server (Pings skipped unless asked for)."""
        while True:
            message = self._reader.next_message()
            if message is None:
                data = await self.ws.recv()
                self._reader.receive_data(data.encode() if isinstance(data, str) else data)
                continue
            if skip_pings and isinstance(message, Ping):
                continue
            return message

    async def call(self, target: str, *args: Any) -> Any:
        """Call ``target`` and return its result; fail the test on an error completion."""
        self._last_id += 1
        invocation_id = str(self._last_id)
        await self.send(Invocation(target, args, invocation_id))
        while True:
            message = await self.receive()
            if isinstance(message, Completion) and message.invocation_id == invocation_id:
                assert message.error is None, message.error
                return message.result


@asynccontextmanager
async def open_hub_websocket(
    url: str, protocol: str = "json", *, headers: dict[str, str] | None = None, handshake: bool = True
) -> AsyncIterator[WebSocketHubClient]:
    """A hub client on a real WebSocket to ``url`` (``ws://...?id=TOKEN``), its handshake done."""
    from websockets.trio.client import connect as ws_connect

    async with ws_connect(url, additional_headers=headers, compression=None) as ws:
        client = WebSocketHubClient(ws, PROTOCOLS[protocol])
        if handshake:
            assert await client.handshake() is None
        yield client


@contextmanager
def served_in_thread(app: Any, options: Any = None) -> Iterator[str]:
    """``app`` served on 127.0.0.1 by ``trio.run`` in a thread of its own, for clients that are not
    trio (asyncio, threads, browsers); yields its base URL (no trailing slash). Graceful
    shutdown at the end."""
    import trio_ws

    from ..helpers import trio_in_thread

    async def main(ready: Callable[[str], None], stop: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            server: trio_ws.Server = await nursery.start(
                partial(trio_ws.serve, app, "127.0.0.1", 0, options=options)
            )
            ready(server.url.rstrip("/"))
            await stop.wait()
            await server.aclose()

    with trio_in_thread(main) as url:
        yield url
