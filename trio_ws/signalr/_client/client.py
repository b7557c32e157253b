"""A hub client for trio programs: connect, call, stream both ways, answer, reconnect.

::

    async with open_hub_client("http://127.0.0.1:5000/chat", reconnect=True) as hub:
        hub.on("Message", show)          # the server calls it; what it returns is a client result
        print(await hub.invoke("Echo", "hi"))
        async with hub.stream("Counter", 3) as items:
            async for item in items:
                ...

The nursery tree, inside ``open_hub_client``::

    client nursery
    └─ ClientEngine.run                   connect, serve, reconnect: one connection at a time
       └─ connection nursery              one per connection (an automatic reconnect opens a new one)
          ├─ the transport's task         WebSockets: its own nursery with trio-websocket's reader
          │                               (a new one after each stateful reconnect); Long Polling:
          │                               the poll loop; Server-Sent Events: none (read in _read)
          ├─ keep-alive task              a Ping after keep_alive_interval with nothing sent
          │                               (not on Long Polling, which keeps itself alive)
          ├─ ack task                     stateful reconnect only: an Ack a second after new messages
          ├─ handler task                 the handlers given to on(), one call at a time, in order
          └─ one task per upload          an async iterable argument, sent as a stream

``HubClient`` is the API a program calls (``invoke``, ``send``, ``stream``,
``on``/``handle``, ``server``, the state); the engine under it
(``_client/engine.py``) runs the connections: the reader, reconnects, the
calls waiting for answers, Acks. Rules of both:

* It speaks SignalR as the official clients do, to any server (ASP.NET Core
  too): negotiate (version 1, redirects, access tokens), then the first
  transport the hub offers that the client may use (``transport=``;
  WebSockets, Server-Sent Events, Long Polling, in the hub's order, with a
  new negotiate before each next try, MessagePack never over Server-Sent
  Events), the JSON or MessagePack handshake, Pings, and a server timeout
  (none on Long Polling). ``skip_negotiation=True`` opens the WebSocket
  directly.
* A call made while the client is not connected fails at once
  (``HubClientError``), as the official client's does; calls in flight when
  the connection is lost fail with the loss.
* Stateful reconnect is opt-in (``stateful_reconnect=True``) and needs the
  hub's consent and a WebSocket: every call, stream item, completion and
  cancellation is numbered and kept (``Replay``, at most
  ``stateful_reconnect_buffer_size`` bytes: past it, sending waits) until
  the hub acknowledges it. When the WebSocket drops without a Close, the
  client opens one new WebSocket to the same connection token at once,
  sends Sequence and every unacknowledged message, and drops the hub's
  duplicates: nothing is lost or repeated, calls in flight carry on, and the
  connection id stays. If the hub no longer has the connection (it was away
  longer than the hub's disconnect timeout: 404), the connection ends as a
  lost one.
* Automatic reconnect is opt-in (``reconnect=True``: after 0, 2, 10 and 30
  s, then give up, as the official client's ``withAutomaticReconnect``). A
  new connection is a new negotiate and a new connection id. A server's
  Close without ``allowReconnect`` ends the client for good.
* Handlers run in one task of the connection's nursery, one call at a time
  and in the order the hub made them (as the official clients call them),
  while the reading goes on; up to 16 calls wait their turn, then the
  reading waits too (so a handler that waits for the hub's answer to its own
  ``invoke`` should not be kept waiting behind more than that). A
  handler's exception is answered to the server as a client-result error
  (when one is awaited) and logged, never raised here.
* Exceptions raised inside ``async with open_hub_client(...)`` come out as
  themselves, not in an ``ExceptionGroup``.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, overload

import trio

from .._protocol import PROTOCOLS
from .._protocol.messages import CancelInvocation, Completion, Invocation, StreamInvocation, StreamItem
from .._transports.negotiate import HttpTransportType
from .._transports.replay import DEFAULT_BUFFER_SIZE
from .connect import ClientConnection, ClientSettings, allowed_transports
from .engine import ClientEngine, ClientState, Handler, InvocationError, Pending, StreamEnd
from .negotiate import HubClientError

if TYPE_CHECKING:
    from .._hub.hub import Hub
    from .._hub.typed import C

__all__ = ["ClientState", "HubClient", "HubClientError", "InvocationError", "open_hub_client"]

DEFAULT_RECONNECT_DELAYS = (0.0, 2.0, 10.0, 30.0)
_STREAM_BUFFER = 16

_H = TypeVar("_H", bound=Handler)
_HubType = TypeVar("_HubType", bound="Hub[Any]")


class HubClient:
    """A connection to a hub that survives reconnects; made by :func:`open_hub_client`."""

    def __init__(
        self,
        url: str,
        *,
        protocol: str,
        access_token: str | Callable[[], Awaitable[str]] | None,
        headers: Iterable[tuple[str, str]],
        skip_negotiation: bool,
        reconnect: bool | Sequence[float],
        keep_alive_interval: float,
        server_timeout: float,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None,
        transport: HttpTransportType | Iterable[HttpTransportType] | None = None,
        stateful_reconnect: bool = False,
        stateful_reconnect_buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'json' or 'messagepack', got {protocol!r}")
        self.url = url
        transports = allowed_transports(transport)
        if skip_negotiation and HttpTransportType.WEBSOCKETS not in transports:
            raise ValueError("skip_negotiation=True needs transport=HttpTransportType.WEBSOCKETS")
        settings = ClientSettings(
            url=url,
            protocol=PROTOCOLS[protocol],
            access_token=access_token,
            headers=tuple(headers),
            skip_negotiation=skip_negotiation,
            transports=transports,
            keep_alive_interval=keep_alive_interval,
            server_timeout=server_timeout,
            max_message_size=max_message_size,
            ssl_context=ssl_context,
            stateful_reconnect=stateful_reconnect,
            buffer_size=stateful_reconnect_buffer_size,
        )
        delays = DEFAULT_RECONNECT_DELAYS if reconnect is True else () if reconnect is False else reconnect
        self._engine = ClientEngine(settings, delays)

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._engine.state

    @property
    def error(self) -> BaseException | None:
        """Why the client is disconnected (``None`` after a clean close)."""
        return self._engine.error

    @property
    def connection_id(self) -> str | None:
        """The server's id for the current connection (``None`` without negotiate, or while away)."""
        return None if self._engine.connection is None else self._engine.connection.connection_id

    @property
    def transport_name(self) -> str | None:
        """The transport of the current connection (``"WebSockets"``...), ``None`` while away."""
        return None if self._engine.connection is None else self._engine.connection.transport.name

    @property
    def stateful_reconnect(self) -> bool:
        """Whether the current connection survives a dropped WebSocket (the hub granted it)."""
        return self._engine.connection is not None and self._engine.connection.replay is not None

    async def wait_connected(self) -> None:
        """Wait until the client is connected (again, after a reconnect).

        Raises:
            HubClientError: the client is disconnected for good.
        """
        await self._engine.wait_connected()

    async def wait_disconnected(self) -> None:
        """Wait until the client is disconnected for good (its reconnects, if any, gave up)."""
        await self._engine.wait_disconnected()

    # -- handlers ------------------------------------------------------------------------------

    @overload
    def on(self, method: str) -> Callable[[_H], _H]: ...

    @overload
    def on(self, method: str, handler: _H) -> _H: ...

    def on(self, method: str, handler: _H | None = None) -> _H | Callable[[_H], _H]:
        """Answer the server's calls to ``method`` (matched in any case) with ``handler``.

        Usable as ``hub.on("Message", show)`` or as a decorator, ``@hub.on("Message")``.
        What the handler returns (awaited, if it is async) is the result of a
        client-result call. One handler per method.

        Raises:
            ValueError: ``method`` already has a handler (``off`` it first).
        """

        def register(function: _H) -> _H:
            key = method.lower()
            if key in self._engine.handlers:
                raise ValueError(f"{method!r} already has a handler; remove it with off() first")
            self._engine.handlers[key] = function
            return function

        return register if handler is None else register(handler)

    def off(self, method: str) -> None:
        """Stop answering ``method``."""
        self._engine.handlers.pop(method.lower(), None)

    def handle(self, hub_type: type[Hub[C]], handlers: C) -> Callable[[], None]:
        """Answer every method of ``hub_type``'s client protocol with ``handlers``' methods.

        ``hub_type`` is a ``Hub[Protocol]`` subclass; mypy checks that
        ``handlers`` implements the protocol. The hub's arguments are
        converted by the protocol's annotations. Returns a function that
        removes the handlers again.

        Raises:
            TypeError: the hub has no client protocol, or ``handlers`` lacks one of its methods.
            ValueError: one of the methods already has a handler.
        """
        from .typed import register_handlers

        return register_handlers(self, hub_type, handlers)

    def server(self, hub_type: type[_HubType]) -> _HubType:
        """The hub's methods by their Python names, typed as the hub class ``hub_type``.

        ``await hub.server(Chat).send_message("hi")`` calls ``SendMessage``
        and converts the result by the method's annotation; a streaming
        method gives an async iterator of its items.
        """
        from .typed import server_proxy

        proxy: _HubType = server_proxy(self, hub_type)
        return proxy

    # -- calls ---------------------------------------------------------------------------------

    async def invoke(self, method: str, *args: Any) -> Any:
        """Call ``method`` on the hub and return its result.

        An argument that is an async iterable is streamed to the server
        (``HubStream`` on a trio_ws hub, a ``ChannelReader`` on ASP.NET).

        Raises:
            InvocationError: the hub answered with an error (its text).
            HubClientError: the client is not connected, or lost its connection.
        """
        connection = self._engine.connected()
        invocation_id = self._engine.next_id()
        pending = self._engine.pending[invocation_id] = Pending()
        try:
            arguments, uploads = self._split_uploads(args)
            await connection.send(Invocation(method, arguments, invocation_id, tuple(uploads)))
            self._start_uploads(connection, uploads)
            await pending.done.wait()
        finally:
            self._engine.pending.pop(invocation_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def send(self, method: str, *args: Any) -> None:
        """Call ``method`` without waiting for (or getting) a result, as ``send`` in other clients.

        Raises:
            HubClientError: the client is not connected.
        """
        connection = self._engine.connected()
        arguments, uploads = self._split_uploads(args)
        await connection.send(Invocation(method, arguments, None, tuple(uploads)))
        self._start_uploads(connection, uploads)

    @asynccontextmanager
    async def stream(self, method: str, *args: Any) -> AsyncIterator[AsyncIterator[Any]]:
        """Call a streaming ``method``: ``async with hub.stream(...) as items: async for item in items``.

        Leaving the block before the stream ends cancels it on the server
        (CancelInvocation). Iterating raises ``InvocationError`` if the
        stream ends with an error, ``HubClientError`` if the connection is lost.
        """
        connection = self._engine.connected()
        invocation_id = self._engine.next_id()
        send, receive = trio.open_memory_channel[Any](_STREAM_BUFFER)
        self._engine.streams[invocation_id] = send
        finished = False
        try:
            arguments, uploads = self._split_uploads(args)
            await connection.send(StreamInvocation(invocation_id, method, arguments, tuple(uploads)))
            self._start_uploads(connection, uploads)

            async def items() -> AsyncGenerator[Any, None]:
                nonlocal finished
                async with receive:
                    async for item in receive:
                        if isinstance(item, StreamEnd):
                            finished = True
                            if item.error is not None:
                                raise item.error
                            return
                        yield item

            iterator = items()
            try:
                yield iterator
            finally:
                await iterator.aclose()
        finally:
            if self._engine.streams.pop(invocation_id, None) is not None and not finished:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    if self._engine.connection is connection and self._engine.state is ClientState.CONNECTED:
                        await connection.send(CancelInvocation(invocation_id))

    def _split_uploads(self, args: Sequence[Any]) -> tuple[list[Any], dict[str, AsyncIterable[Any]]]:
        arguments: list[Any] = []
        uploads: dict[str, AsyncIterable[Any]] = {}
        for arg in args:
            if isinstance(arg, AsyncIterable):
                uploads[self._engine.next_id()] = arg
            else:
                arguments.append(arg)
        return arguments, uploads

    def _start_uploads(self, connection: ClientConnection, uploads: dict[str, AsyncIterable[Any]]) -> None:
        for stream_id, items in uploads.items():
            connection.nursery.start_soon(self._upload, connection, stream_id, items)

    async def _upload(self, connection: ClientConnection, stream_id: str, items: AsyncIterable[Any]) -> None:
        error: str | None = None
        try:
            async for item in items:
                await connection.send(StreamItem(stream_id, item))
        except Exception as exc:  # the stream's own failure is told to the hub, as the official client does
            error = f"{type(exc).__name__}: {exc}"
        await connection.send(Completion(stream_id, error=error))

    # -- the connection's life -------------------------------------------------------------------


@asynccontextmanager
async def open_hub_client(
    url: str,
    *,
    protocol: str = "json",
    access_token: str | Callable[[], Awaitable[str]] | None = None,
    headers: Iterable[tuple[str, str]] = (),
    skip_negotiation: bool = False,
    reconnect: bool | Sequence[float] = False,
    keep_alive_interval: float = 15.0,
    server_timeout: float = 30.0,
    max_message_size: int = 1024 * 1024,
    ssl_context: ssl.SSLContext | None = None,
    transport: HttpTransportType | Iterable[HttpTransportType] | None = None,
    stateful_reconnect: bool = False,
    stateful_reconnect_buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> AsyncIterator[HubClient]:
    """Connect to the hub at ``url`` (``http://host:port/chat``) for the block; say goodbye after it.

    Args:
        url: The hub's URL, as a browser would negotiate with it (``https://`` for TLS).
        protocol: ``"json"`` or ``"messagepack"``.
        access_token: A bearer token, or an async function that returns a
            fresh one for each connection (sent as ``Authorization: Bearer``).
        headers: More request headers for negotiate and the WebSocket.
        skip_negotiation: Open the WebSocket at ``url`` directly.
        reconnect: ``True`` to reconnect after 0, 2, 10 and 30 s, or the
            delays to use; ``False`` to stay disconnected once lost.
        keep_alive_interval: Send a Ping after this long with nothing sent
            (ASP.NET's default is 15 s: keep it below the server's timeout).
        server_timeout: Drop the connection (and reconnect, if allowed) when
            nothing comes from the hub for this long (30 s by default).
        max_message_size: The largest message accepted from the hub.
        ssl_context: For ``https://`` hubs with their own certificates.
        transport: The transport to use, or several to choose from (all
            three by default); the client tries those the hub offers in the
            hub's order (WebSockets, Server-Sent Events, Long Polling), and
            falls back to the next when one cannot start.
        stateful_reconnect: Ask the hub for stateful reconnect: on a
            WebSocket that drops, the client opens a new one to the same
            connection and both sides send again what the other has not
            acknowledged (nothing lost, nothing twice, the same connection id).
        stateful_reconnect_buffer_size: Bytes of sent messages kept until the
            hub acknowledges them; past it, sending waits.

    Raises:
        HubClientError: the first connection could not be made (the text
            says why; ``status`` holds a refusal's HTTP status, such as 401).
    """
    if not 0 < keep_alive_interval < math.inf or not 0 < server_timeout < math.inf:
        raise ValueError("keep_alive_interval and server_timeout must be positive numbers of seconds")
    if stateful_reconnect_buffer_size < 1:
        raise ValueError("stateful_reconnect_buffer_size must be a positive number of bytes")
    client = HubClient(
        url,
        protocol=protocol,
        access_token=access_token,
        headers=headers,
        skip_negotiation=skip_negotiation,
        reconnect=reconnect,
        keep_alive_interval=keep_alive_interval,
        server_timeout=server_timeout,
        max_message_size=max_message_size,
        ssl_context=ssl_context,
        transport=transport,
        stateful_reconnect=stateful_reconnect,
        stateful_reconnect_buffer_size=stateful_reconnect_buffer_size,
    )
    failure: BaseException | None = None
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            failure = await nursery.start(client._engine.run)
            if failure is None:
                try:
                    yield client
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await client._engine.stop()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = group.exceptions
        if body_error is not None and len(leaves) == 1 and leaves[0] is body_error:
            raise body_error from None
        raise
    if failure is not None:
        raise failure
