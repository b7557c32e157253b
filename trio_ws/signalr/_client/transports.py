"""The trio client's transports: WebSockets, Server-Sent Events and Long Polling (TransportProtocols.md).

A transport carries the hub protocol's bytes between the client and one
connection on the hub (``?id=TOKEN``). Each offers the same three verbs to
the client above it: ``send(data)``, ``receive()`` (the next chunk, in any
framing: the client's reader puts records back together) and ``aclose()``.

Rules of this module:

* **WebSockets**: one WebSocket (trio-websocket); JSON goes in Text
  frames, MessagePack in Binary frames. Its reader task runs in the
  connection's nursery.
* **Server-Sent Events**: one ``GET`` with ``Accept: text/event-stream``
  whose body never ends; each event's ``data:`` lines, joined by ``\\n``,
  are one chunk; comments (``:``) are dropped. Text only (no MessagePack).
  The client ends it by dropping the connection.
* **Long Polling**: the first poll must answer at once (200), which is how
  the client knows the connection is open; then a poll task in the
  connection's nursery polls again and again: 200 with a body is data, 200
  empty is "nothing yet", 204 is "closed". Polls are bounded (100 s, as the
  official client's) and their bodies too. ``aclose()`` sends ``DELETE``
  unless the hub already ended the connection. It keeps connections alive
  itself: no hub Pings, no server timeout (``inherent_keep_alive``).
* The HTTP transports send with ``POST`` (200 expected), one at a time.
* ``receive()`` raises ``TransportEnded`` once the transport is over; what
  that means (a clean end, a loss, a cue for stateful reconnect) is the
  client's business, which knows whether a Close came first.
"""

from __future__ import annotations

import abc
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, suppress
from functools import partial
from urllib.parse import SplitResult, urlsplit

import trio
import trio_websocket

from .http import HttpChannel, HubClientError, open_tcp_or_tls
from .negotiate import transport_url, websocket_url

__all__ = [
    "ClientTransport",
    "LongPollingClientTransport",
    "ServerSentEventsClientTransport",
    "TransportEnded",
    "WebSocketClientTransport",
    "open_websocket",
]

_POLL_TIMEOUT = 100.0  # the official client's: longer than ASP.NET's 90 s hold
_POLLS_QUEUED = 4
_DELETE_TIMEOUT = 5.0


class TransportEnded(HubClientError):
    """The transport is over (the text says how)."""


class ClientTransport(abc.ABC):
    """A pair of byte streams between the client and one hub connection."""

    name: str
    inherent_keep_alive = False
    """Whether the transport keeps the connection alive itself (Long Polling): no Pings, no timeout."""

    @abc.abstractmethod
    async def send(self, data: bytes) -> None:
        """Send bytes of the hub protocol.

        Raises:
            HubClientError: the transport is lost (or the hub refused the bytes).
        """

    @abc.abstractmethod
    async def receive(self) -> bytes:
        """The next bytes from the hub.

        Raises:
            TransportEnded: the transport is over.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """End the transport from this side (at once: no goodbye beyond its own)."""


class WebSocketClientTransport(ClientTransport):
    """The hub connection over one WebSocket."""

    name = "WebSockets"

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        stream: trio.abc.Stream,
        binary: bool,
        scope: trio.CancelScope,
    ) -> None:
        self._ws = ws
        self._stream = stream
        self._binary = binary
        self._scope = scope  # the WebSocket's own task, and its reader's

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send_message(data if self._binary else data.decode("utf-8"))
        except trio_websocket.ConnectionClosed:
            raise HubClientError("the connection was lost while sending") from None

    async def receive(self) -> bytes:
        try:
            data = await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise TransportEnded(f"the WebSocket closed: {exc.reason}") from None
        return data.encode() if isinstance(data, str) else data

    async def aclose(self) -> None:
        # A dropped transport (or one whose hub is gone): nothing to say, the TCP connection goes.
        self._scope.cancel()
        await trio.aclose_forcefully(self._stream)


async def open_websocket(
    nursery: trio.Nursery,
    url: str,
    token: str | None,
    headers: Iterable[tuple[str, str]],
    *,
    binary: bool,
    max_message_size: int,
    ssl_context: ssl.SSLContext | None,
) -> WebSocketClientTransport:
    """Open the WebSocket to the hub at ``url`` (``?id=TOKEN``); its task runs in ``nursery``.

    Raises:
        HubClientError: the host could not be reached, or the upgrade was
            refused (``status`` holds the refusal's: 404 for a connection
            the hub no longer has).
    """
    target = urlsplit(websocket_url(url, token))
    if target.scheme not in ("ws", "wss") or target.hostname is None:
        raise HubClientError(f"a hub URL starts with http://, https://, ws:// or wss://, not {url!r}")
    opening = partial(
        _websocket_task,
        target,
        [(name.encode(), value.encode()) for name, value in headers],
        binary=binary,
        max_message_size=max_message_size,
        ssl_context=ssl_context,
    )
    transport: WebSocketClientTransport = await nursery.start(opening)
    return transport


async def _websocket_task(
    target: SplitResult,
    headers: list[tuple[bytes, bytes]],
    *,
    binary: bool,
    max_message_size: int,
    ssl_context: ssl.SSLContext | None,
    task_status: trio.TaskStatus[WebSocketClientTransport] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One WebSocket's life: its own nursery holds trio-websocket's reader until ``aclose()``.

    A refused upgrade fails the reader task as well as the opening; the
    nursery of its own keeps that inside, so a failed stateful reconnect
    never takes the hub connection's nursery down with it.
    """
    stream = await open_tcp_or_tls(target, ssl_context)
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,  # type: ignore[arg-type]  # any trio Stream works; trio-websocket names two
                target.netloc,
                target.path + (f"?{target.query}" if target.query else ""),
                extra_headers=headers,
                max_message_size=max_message_size,
                message_queue_size=16,
            )
            task_status.started(WebSocketClientTransport(ws, stream, binary, nursery.cancel_scope))
            await trio.sleep_forever()
    except BaseExceptionGroup as group:
        failures, rest = group.split(_WEBSOCKET_FAILURES)
        if rest is not None or failures is None:
            raise
        first = failures.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        if isinstance(first, trio_websocket.ConnectionRejected):
            raise HubClientError(
                f"the hub refused the WebSocket: {first.status_code}", status=first.status_code
            ) from None
        raise HubClientError(f"the WebSocket failed: {first}") from None
    finally:
        await trio.aclose_forcefully(stream)


_WEBSOCKET_FAILURES = (
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    OSError,
)


class _HttpSender:
    """The sending half of the HTTP transports: one POST at a time to ``?id=TOKEN``."""

    def __init__(
        self,
        url: str,
        token: str,
        headers: list[tuple[str, str]],
        binary: bool,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        parts = urlsplit(transport_url(url, token))
        self.target = f"{parts.path}?{parts.query}"
        self.headers = [("X-Requested-With", "XMLHttpRequest"), *headers]
        content_type = "application/octet-stream" if binary else "text/plain;charset=UTF-8"
        self._post_headers = [*self.headers, ("Content-Type", content_type)]
        self._channel = HttpChannel(url, ssl_context)
        self._lock = trio.Lock()

    async def send(self, data: bytes) -> None:
        async with self._lock:
            status, _ = await self._channel.request("POST", self.target, self._post_headers, data)
        if status != 200:
            raise HubClientError(f"the hub refused a POST: {status}", status=status)

    async def delete(self) -> None:
        async with self._lock:
            await self._channel.request("DELETE", self.target, self.headers)

    async def aclose(self) -> None:
        await self._channel.aclose()


class ServerSentEventsClientTransport(ClientTransport):
    """The hub connection over an event stream (receiving) and POSTs (sending)."""

    name = "ServerSentEvents"

    def __init__(self, sender: _HttpSender, chunks: AsyncIterator[bytes], exits: AsyncExitStack, limit: int):
        self._sender = sender
        self._chunks = chunks
        self._exits = exits
        self._limit = limit
        self._buffer = bytearray()
        self._data: list[bytes] = []

    @classmethod
    async def open(
        cls,
        url: str,
        token: str,
        headers: list[tuple[str, str]],
        *,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None,
    ) -> ServerSentEventsClientTransport:
        """Open the event stream (the hub writes ``:`` first, so the answer comes at once).

        Raises:
            HubClientError: the hub refused the stream, or could not be reached.
        """
        sender = _HttpSender(url, token, headers, False, ssl_context)
        exits = AsyncExitStack()
        try:
            channel = HttpChannel(url, ssl_context)
            exits.push_async_callback(channel.aclose)
            exits.push_async_callback(sender.aclose)
            status, chunks = await exits.enter_async_context(
                channel.stream(
                    "GET",
                    sender.target,
                    [*sender.headers, ("Accept", "text/event-stream"), ("Cache-Control", "no-cache")],
                )
            )
            if status != 200:
                raise HubClientError(f"the hub refused the event stream: {status}", status=status)
        except BaseException:
            with trio.CancelScope(shield=True):
                await exits.aclose()
            raise
        return cls(sender, chunks, exits, max_message_size)

    async def send(self, data: bytes) -> None:
        await self._sender.send(data)

    async def receive(self) -> bytes:
        while True:
            end = _line_end(self._buffer)
            if end is None:
                if len(self._buffer) > self._limit:
                    raise HubClientError(f"an event stream line is over {self._limit} bytes")
                try:
                    self._buffer += await anext(self._chunks)
                except (StopAsyncIteration, HubClientError) as exc:
                    raise TransportEnded(f"the event stream ended{f': {exc}' if str(exc) else ''}") from None
                continue
            line, cut = end
            raw = bytes(self._buffer[:line])
            del self._buffer[:cut]
            if not raw:  # a blank line ends the event
                if self._data:
                    event, self._data = b"\n".join(self._data), []
                    return event
            elif raw.startswith(b"data:"):
                value = raw[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
                if sum(map(len, self._data)) > self._limit:
                    raise HubClientError(f"an event of over {self._limit} bytes")
            # Other fields (and ':' comments) carry nothing for the hub protocol.

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._exits.aclose()


def _line_end(buffer: bytearray) -> tuple[int, int] | None:
    """Where the first line of ``buffer`` ends, and where the next begins (``\r\n``, ``\n`` or ``\r``)."""
    newline, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if cr == -1 or (newline != -1 and newline < cr):
        return None if newline == -1 else (newline, newline + 1)
    if cr + 1 == len(buffer):
        return None  # a '\n' may follow
    return cr, cr + (2 if buffer[cr + 1] == 0x0A else 1)


class LongPollingClientTransport(ClientTransport):
    """The hub connection over held GETs (receiving) and POSTs (sending)."""

    name = "LongPolling"
    inherent_keep_alive = True

    def __init__(
        self, sender: _HttpSender, url: str, ssl_context: ssl.SSLContext | None, max_body: int
    ) -> None:
        self._sender = sender
        self._poller = HttpChannel(url, ssl_context)
        self._max_body = max_body
        self._send_data, self._received = trio.open_memory_channel[bytes | HubClientError](_POLLS_QUEUED)
        self._polling = trio.CancelScope()
        self._ended_by_hub = False

    @classmethod
    async def open(
        cls,
        nursery: trio.Nursery,
        url: str,
        token: str,
        headers: list[tuple[str, str]],
        *,
        binary: bool,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None,
    ) -> LongPollingClientTransport:
        """Make the first poll (answered at once), then start polling in ``nursery``.

        Raises:
            HubClientError: the first poll was refused, or the hub could not be reached.
        """
        transport = cls(
            _HttpSender(url, token, headers, binary, ssl_context), url, ssl_context, 16 * max_message_size
        )
        try:
            status, _ = await transport._poll()
            if status != 200:
                raise HubClientError(f"the hub refused the first poll: {status}", status=status)
        except BaseException:
            with trio.CancelScope(shield=True):
                await transport._poller.aclose()
                await transport._sender.aclose()
            raise
        nursery.start_soon(transport._poll_loop)
        return transport

    async def _poll(self) -> tuple[int, bytes]:
        target = f"{self._sender.target}&_={int(time.time() * 1000)}"
        return await self._poller.request("GET", target, self._sender.headers, max_body=self._max_body)

    async def _poll_loop(self) -> None:
        # Closing the channel on the way out tells receive() the polls are over, even when cancelled.
        async with self._send_data:
            with self._polling:
                await self._send_data.send(await self._poll_until_the_end())

    async def _poll_until_the_end(self) -> TransportEnded:
        try:
            while True:
                with trio.move_on_after(_POLL_TIMEOUT):  # a poll held too long is made again
                    status, body = await self._poll()
                    if status == 204:
                        self._ended_by_hub = True
                        return TransportEnded("the hub ended the long polling connection")
                    if status != 200:
                        return TransportEnded(f"a poll was refused: {status}")
                    if body:
                        await self._send_data.send(body)
        except HubClientError as exc:
            return TransportEnded(f"a poll failed: {exc}")

    async def send(self, data: bytes) -> None:
        await self._sender.send(data)

    async def receive(self) -> bytes:
        try:
            item = await self._received.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise TransportEnded("the long polling connection has ended") from None
        if isinstance(item, HubClientError):
            self._received.close()
            raise item
        return item

    async def aclose(self) -> None:
        self._polling.cancel()
        with trio.CancelScope(shield=True):
            await self._poller.aclose()
            if not self._ended_by_hub:
                with trio.move_on_after(_DELETE_TIMEOUT):
                    with suppress(HubClientError):  # the hub is gone already: nothing to end
                        await self._sender.delete()
            await self._sender.aclose()
            self._received.close()
