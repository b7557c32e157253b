"""An HTTP/1.1 client on any trio stream (h11), for the hub transports that ride on HTTP requests.

The tests reach a hub served in memory (``trio_ws.testing.open_memory_server``,
so ``autojump_clock`` drives its timeouts) or on a real socket, and speak to
it request by request, as exactly as the test says: negotiate, long polls,
POSTs, an event stream read chunk by chunk.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from trio_ws.signalr._protocol import PROTOCOLS, HubProtocol
from trio_ws.signalr._protocol.handshake import encode_request
from trio_ws.signalr._protocol.messages import HubMessage

Connect = Callable[[], Awaitable[trio.abc.Stream]]


@dataclass
class Answer:
    """A whole response."""

    status: int
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Streaming:
    """A response whose body is read as it comes."""

    status: int
    headers: dict[str, str]
    chunks: AsyncIterator[bytes] = field(repr=False)

    async def read_until(self, marker: bytes, *, seen: bytearray | None = None) -> bytes:
        """Everything read until ``marker`` has arrived (``seen`` keeps what came before)."""
        data = seen if seen is not None else bytearray()
        while marker not in data:
            data += await anext(self.chunks)
        return bytes(data)


def _request(method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes) -> h11.Request:
    return h11.Request(
        method=method,
        target=target,
        headers=[("Host", "hub.test"), ("Content-Length", str(len(body))), *headers],
    )


async def exchange(
    stream: trio.abc.Stream,
    method: str,
    target: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Answer:
    """One request on ``stream`` and its whole answer; the stream is closed after."""
    async with open_request(stream, method, target, headers=headers, body=body) as response:
        data = b"".join([chunk async for chunk in response.chunks])
    return Answer(response.status, response.headers, data)


@asynccontextmanager
async def open_request(
    stream: trio.abc.Stream,
    method: str,
    target: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> AsyncIterator[Streaming]:
    """Send one request; the block gets its status and headers, and reads the body as it comes.
    Leaving the block closes the stream (a client dropping the response)."""
    client = h11.Connection(h11.CLIENT)
    async with stream:
        data = client.send(_request(method, target, headers, body))
        if body:
            data += client.send(h11.Data(data=body))
        await stream.send_all(data + client.send(h11.EndOfMessage()))

        async def next_event() -> h11.Event:
            while (event := client.next_event()) is h11.NEED_DATA:
                client.receive_data(bytes(await stream.receive_some(65536)))
            assert isinstance(event, h11.Event)
            return event

        head = await next_event()
        assert isinstance(head, h11.Response), head

        async def chunks() -> AsyncIterator[bytes]:
            while isinstance(event := await next_event(), h11.Data):
                yield bytes(event.data)

        headers_seen = {k.decode().lower(): v.decode() for k, v in head.headers}
        yield Streaming(head.status_code, headers_seen, chunks())


class HttpHubClient:
    """One hub connection over Server-Sent Events or Long Polling, request by request."""

    def __init__(self, connect: Connect, path: str = "/hub", protocol: str = "json") -> None:
        self._connect = connect
        self.path = path
        self.protocol: HubProtocol = PROTOCOLS[protocol]
        self.token = ""
        self.connection_id = ""
        self._reader = self.protocol.reader(2**30)

    async def request(
        self, method: str, *, query: str = "", headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> Answer:
        """``METHOD {path}?id=TOKEN`` (plus ``query``)."""
        target = f"{self.path}?id={self.token}" + (f"&{query}" if query else "")
        return await exchange(await self._connect(), method, target, headers=headers, body=body)

    async def negotiate(self, query: str = "negotiateVersion=1") -> dict[str, Any]:
        answer = await exchange(await self._connect(), "POST", f"{self.path}/negotiate?{query}")
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.json()
        self.connection_id = body["connectionId"]
        self.token = body.get("connectionToken", self.connection_id)
        return body

    async def post(self, data: bytes) -> Answer:
        return await self.request("POST", body=data)

    async def send(self, message: HubMessage) -> Answer:
        return await self.post(self.protocol.encode(message))

    async def poll(self) -> Answer:
        return await self.request("GET")

    async def handshake_by_polling(self, version: int = 1) -> bytes:
        """The first poll, the handshake request POSTed, and the poll that carries the answer."""
        first = await self.poll()
        assert (first.status, first.body) == (200, b""), first
        assert (await self.post(encode_request(self.protocol.name, version))).status == 200
        answer = await self.poll()
        assert answer.status == 200, answer
        return answer.body

    def decode(self, data: bytes) -> list[HubMessage]:
        """The messages in ``data`` (and in what came before, if a message was cut)."""
        self._reader.receive_data(data)
        messages = []
        while (message := self._reader.next_message()) is not None:
            messages.append(message)
        return messages
