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
    └─ HubClient._run                     connect, serve, reconnect: one connection at a time
       └─ connection nursery              one per connection (a reconnect opens a new one)
          ├─ trio-websocket's reader
          ├─ keep-alive task              a Ping after keep_alive_interval with nothing sent
          ├─ one task per server call     the handlers given to on(), answering client results
          └─ one task per upload          an async iterable argument, sent as a stream

Rules of this module:

* It speaks SignalR as the official clients do, to any server (ASP.NET Core
  too): negotiate (version 1, redirects, access tokens), then the WebSocket
  at ``?id=TOKEN``, the JSON or MessagePack handshake, Pings, and a server
  timeout. ``skip_negotiation=True`` opens the WebSocket directly.
* A call made while the client is not connected fails at once
  (``HubClientError``), as the official client's does; calls in flight when
  the connection is lost fail with the loss.
* Reconnecting is opt-in (``reconnect=True``: after 0, 2, 10 and 30 s, then
  give up, as the official client's ``withAutomaticReconnect``). A new
  connection is a new negotiate and a new connection id. A server's Close
  without ``allowReconnect`` ends the client for good.
* Handlers run in tasks of the connection's nursery, so a slow handler never
  stops the reading; a handler's exception is answered to the server as a
  client-result error (when one is awaited) and logged, never raised here.
* Exceptions raised inside ``async with open_hub_client(...)`` come out as
  themselves, not in an ``ExceptionGroup``.
"""

from __future__ import annotations

import enum
import inspect
import logging
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
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

import trio
import trio_websocket

from ._client_negotiate import USER_AGENT, HubClientError, negotiate, websocket_url
from ._protocol import PROTOCOLS, HubProtocol, ProtocolError
from ._protocol.framing import TextFramer
from ._protocol.handshake import encode_request, parse_response
from ._protocol.messages import (
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    StreamInvocation,
    StreamItem,
    TransferFormat,
)

__all__ = ["ClientState", "HubClient", "HubClientError", "InvocationError", "open_hub_client"]

logger = logging.getLogger("trio_ws.signalr.client")

DEFAULT_RECONNECT_DELAYS = (0.0, 2.0, 10.0, 30.0)
_MAX_REDIRECTS = 100
_STREAM_BUFFER = 16
_CLOSE_TIMEOUT = 5.0
_NO_RESULT = "Client didn't provide a result."
_CONNECTION_ERRORS = (
    HubClientError,
    OSError,
    trio.BrokenResourceError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    ProtocolError,
)

Handler = Callable[..., Any]
"""A client method: sync or async, called with the server's arguments; what it returns is the
result of a client-result call."""

_H = TypeVar("_H", bound=Handler)


class InvocationError(Exception):
    """The server answered a call with an error; the text is the server's."""


class ClientState(enum.Enum):
    """Where a ``HubClient`` is in its life."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


class _Pending:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Connection:
    """One connection: its WebSocket, protocol, nursery and when it last sent."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, protocol: HubProtocol, nursery: trio.Nursery):
        self.ws = ws
        self.protocol = protocol
        self.nursery = nursery
        self.binary = protocol.transfer_format is TransferFormat.BINARY
        self.last_sent = trio.current_time()
        self.connection_id: str | None = None
        self.rest = b""  # what came after the handshake's answer: the first messages


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
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'json' or 'messagepack', got {protocol!r}")
        self.url = url
        self._protocol = PROTOCOLS[protocol]
        self._access_token = access_token
        self._headers = list(headers)
        self._skip_negotiation = skip_negotiation
        self._delays: tuple[float, ...] = (
            DEFAULT_RECONNECT_DELAYS if reconnect is True else () if reconnect is False else tuple(reconnect)
        )
        self._keep_alive_interval = keep_alive_interval
        self._server_timeout = server_timeout
        self._max_message_size = max_message_size
        self._ssl_context = ssl_context
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, _Pending] = {}
        self._streams: dict[str, trio.MemorySendChannel[Any]] = {}
        self._last_id = 0
        self._connection: _Connection | None = None
        self._state = ClientState.CONNECTING
        self._state_changed = trio.Event()
        self._stopping = False
        self.error: BaseException | None = None
        """Why the client is disconnected (``None`` after a clean close)."""

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def connection_id(self) -> str | None:
        """The server's id for the current connection (``None`` without negotiate, or while away)."""
        return None if self._connection is None else self._connection.connection_id

    def _set_state(self, state: ClientState) -> None:
        self._state = state
        self._state_changed.set()
        self._state_changed = trio.Event()

    async def wait_connected(self) -> None:
        """Wait until the client is connected (again, after a reconnect).

        Raises:
            HubClientError: the client is disconnected for good.
        """
        while self._state is not ClientState.CONNECTED:
            if self._state is ClientState.DISCONNECTED:
                raise HubClientError(f"the client is disconnected: {self.error or 'closed'}")
            await self._state_changed.wait()
        await trio.lowlevel.checkpoint()

    async def wait_disconnected(self) -> None:
        """Wait until the client is disconnected for good (its reconnects, if any, gave up)."""
        while self._state is not ClientState.DISCONNECTED:
            await self._state_changed.wait()
        await trio.lowlevel.checkpoint()

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
            if key in self._handlers:
                raise ValueError(f"{method!r} already has a handler; remove it with off() first")
            self._handlers[key] = function
            return function

        return register if handler is None else register(handler)

    def off(self, method: str) -> None:
        """Stop answering ``method``."""
        self._handlers.pop(method.lower(), None)

    # -- calls ---------------------------------------------------------------------------------

    def _connected(self) -> _Connection:
        connection = self._connection
        if connection is None or self._state is not ClientState.CONNECTED:
            raise HubClientError(f"cannot call the hub while the client is {self._state.value}")
        return connection

    def _next_id(self) -> str:
        self._last_id += 1
        return str(self._last_id)

    async def invoke(self, method: str, *args: Any) -> Any:
        """Call ``method`` on the hub and return its result.

        An argument that is an async iterable is streamed to the server
        (``HubStream`` on a trio_ws hub, a ``ChannelReader`` on ASP.NET).

        Raises:
            InvocationError: the hub answered with an error (its text).
            HubClientError: the client is not connected, or lost its connection.
        """
        connection = self._connected()
        invocation_id = self._next_id()
        pending = self._pending[invocation_id] = _Pending()
        try:
            arguments, uploads = self._split_uploads(args)
            await self._send(connection, Invocation(method, arguments, invocation_id, tuple(uploads)))
            self._start_uploads(connection, uploads)
            await pending.done.wait()
        finally:
            self._pending.pop(invocation_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    async def send(self, method: str, *args: Any) -> None:
        """Call ``method`` without waiting for (or getting) a result, as ``send`` in other clients.

        Raises:
            HubClientError: the client is not connected.
        """
        connection = self._connected()
        arguments, uploads = self._split_uploads(args)
        await self._send(connection, Invocation(method, arguments, None, tuple(uploads)))
        self._start_uploads(connection, uploads)

    @asynccontextmanager
    async def stream(self, method: str, *args: Any) -> AsyncIterator[AsyncIterator[Any]]:
        """Call a streaming ``method``: ``async with hub.stream(...) as items: async for item in items``.

        Leaving the block before the stream ends cancels it on the server
        (CancelInvocation). Iterating raises ``InvocationError`` if the
        stream ends with an error, ``HubClientError`` if the connection is lost.
        """
        connection = self._connected()
        invocation_id = self._next_id()
        send, receive = trio.open_memory_channel[Any](_STREAM_BUFFER)
        self._streams[invocation_id] = send
        finished = False
        try:
            arguments, uploads = self._split_uploads(args)
            await self._send(connection, StreamInvocation(invocation_id, method, arguments, tuple(uploads)))
            self._start_uploads(connection, uploads)

            async def items() -> AsyncGenerator[Any, None]:
                nonlocal finished
                async with receive:
                    async for item in receive:
                        if isinstance(item, _StreamEnd):
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
            if self._streams.pop(invocation_id, None) is not None and not finished:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    if self._connection is connection and self._state is ClientState.CONNECTED:
                        await self._send(connection, CancelInvocation(invocation_id))

    def _split_uploads(self, args: Sequence[Any]) -> tuple[list[Any], dict[str, AsyncIterable[Any]]]:
        arguments: list[Any] = []
        uploads: dict[str, AsyncIterable[Any]] = {}
        for arg in args:
            if isinstance(arg, AsyncIterable):
                uploads[self._next_id()] = arg
            else:
                arguments.append(arg)
        return arguments, uploads

    def _start_uploads(self, connection: _Connection, uploads: dict[str, AsyncIterable[Any]]) -> None:
        for stream_id, items in uploads.items():
            connection.nursery.start_soon(self._upload, connection, stream_id, items)

    async def _upload(self, connection: _Connection, stream_id: str, items: AsyncIterable[Any]) -> None:
        error: str | None = None
        try:
            async for item in items:
                await self._send(connection, StreamItem(stream_id, item))
        except Exception as exc:  # the stream's own failure is told to the hub, as the official client does
            error = f"{type(exc).__name__}: {exc}"
        await self._send(connection, Completion(stream_id, error=error))

    async def _send(self, connection: _Connection, message: HubMessage) -> None:
        data = connection.protocol.encode(message)
        try:
            await connection.ws.send_message(data if connection.binary else data.decode("utf-8"))
        except trio_websocket.ConnectionClosed:
            raise HubClientError("the connection was lost while sending") from None
        connection.last_sent = trio.current_time()

    # -- the connection's life -------------------------------------------------------------------

    async def _run(
        self, *, task_status: trio.TaskStatus[BaseException | None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, serve, and reconnect while allowed; the first failure goes to ``task_status``."""
        first = True
        while True:
            outcome = await self._session(task_status if first else None)
            if first and not outcome.opened:
                self._finish(outcome.error)
                task_status.started(outcome.error or HubClientError("could not connect"))
                return
            first = False
            if self._stopping or not outcome.allow_reconnect or not self._delays:
                self._finish(outcome.error)
                return
            logger.info("hub client: connection lost (%s); reconnecting", outcome.error)
            self._set_state(ClientState.RECONNECTING)
            for delay in self._delays:
                await trio.sleep(delay)
                outcome = await self._session(None)
                if outcome.opened:
                    break
            else:
                self._finish(outcome.error)
                return
            if self._stopping:
                return

    def _finish(self, error: BaseException | None) -> None:
        self.error = error
        self._connection = None
        self._set_state(ClientState.DISCONNECTED)

    async def _session(self, task_status: trio.TaskStatus[BaseException | None] | None) -> _Outcome:
        """One connection, from negotiate to its loss; how it ended."""
        outcome = _Outcome()
        streams: list[trio.abc.Stream] = []
        try:
            async with trio.open_nursery() as nursery:
                connection = await self._open(nursery, streams)
                self._connection = connection
                outcome.opened = True
                self._set_state(ClientState.CONNECTED)
                if task_status is not None:
                    task_status.started(None)
                nursery.start_soon(self._keep_alive, connection)
                await self._read(connection, outcome)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            expected, rest = group.split(_CONNECTION_ERRORS)
            if rest is not None:
                raise
            assert expected is not None
            outcome.error = _first_leaf(expected)
        except _CONNECTION_ERRORS as exc:
            outcome.error = exc
        finally:
            self._connection = None
            self._fail_pending(outcome.error)
            for stream in streams:  # closed already after a clean close; dropped after a timeout
                await trio.aclose_forcefully(stream)
        return outcome

    async def _token(self) -> str | None:
        token = self._access_token
        if token is None or isinstance(token, str):
            return token
        return await token()

    async def _open(self, nursery: trio.Nursery, streams: list[trio.abc.Stream]) -> _Connection:
        """Negotiate (following redirects), open the WebSocket and shake hands; the TCP stream
        opened goes in ``streams``, for the caller to close whatever happens."""
        url, token, connection_id, ws_token = self.url, await self._token(), None, None
        if not self._skip_negotiation:
            for _ in range(_MAX_REDIRECTS):
                answer = await negotiate(url, self._http_headers(token), self._ssl_context)
                if answer.redirect is None:
                    connection_id, ws_token = answer.connection_id, answer.token
                    break
                url, token = answer.redirect, answer.access_token or token
            else:
                raise HubClientError(f"negotiate was redirected more than {_MAX_REDIRECTS} times")
        headers = [(name.encode(), value.encode()) for name, value in self._http_headers(token)]
        target = urlsplit(websocket_url(url, ws_token))
        if target.scheme not in ("ws", "wss") or target.hostname is None:
            raise HubClientError(f"a hub URL starts with http://, https://, ws:// or wss://, not {url!r}")
        secure = target.scheme == "wss"
        port = target.port or (443 if secure else 80)
        if secure:
            context = self._ssl_context or ssl.create_default_context()
            stream: (
                trio.SocketStream | trio.SSLStream[trio.SocketStream]
            ) = await trio.open_ssl_over_tcp_stream(
                target.hostname, port, ssl_context=context, https_compatible=True
            )
        else:
            stream = await trio.open_tcp_stream(target.hostname, port)
        streams.append(stream)
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            stream,
            target.netloc,
            target.path + (f"?{target.query}" if target.query else ""),
            extra_headers=headers,
            max_message_size=self._max_message_size,
            message_queue_size=16,
        )
        connection = _Connection(ws, self._protocol, nursery)
        connection.connection_id = connection_id
        await ws.send_message(encode_request(self._protocol.name, 1).decode())
        framer = TextFramer(self._max_message_size)
        with trio.move_on_after(self._server_timeout) as waiting:
            while (record := framer.next_record()) is None:
                data = await ws.get_message()
                framer.receive_data(data.encode() if isinstance(data, str) else data)
        if waiting.cancelled_caught:
            raise HubClientError(f"the hub did not answer the handshake within {self._server_timeout} s")
        assert record is not None
        refusal = parse_response(record)
        if refusal is not None:
            raise HubClientError(f"the hub refused the handshake: {refusal}")
        connection.rest = framer.take_rest()
        return connection

    def _http_headers(self, token: str | None) -> list[tuple[str, str]]:
        headers = [(name, value) for name, value in self._headers if name.lower() != "user-agent"]
        user_agents = [value for name, value in self._headers if name.lower() == "user-agent"]
        headers.append(("User-Agent", user_agents[0] if user_agents else USER_AGENT))
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        return headers

    async def _keep_alive(self, connection: _Connection) -> None:
        ping = connection.protocol.encode(Ping())
        while True:
            await trio.sleep_until(connection.last_sent + self._keep_alive_interval)
            if trio.current_time() >= connection.last_sent + self._keep_alive_interval:
                try:
                    await connection.ws.send_message(ping if connection.binary else ping.decode())
                except trio_websocket.ConnectionClosed:
                    return
                connection.last_sent = trio.current_time()

    async def _read(self, connection: _Connection, outcome: _Outcome) -> None:
        """Read and act on the server's messages until the connection ends."""
        reader = connection.protocol.reader(self._max_message_size)
        reader.receive_data(connection.rest)
        while True:
            message = reader.next_message()
            if message is None:
                with trio.move_on_after(self._server_timeout) as waiting:
                    try:
                        data = await connection.ws.get_message()
                    except trio_websocket.ConnectionClosed as exc:
                        if not self._stopping:
                            outcome.error = HubClientError(f"the WebSocket closed: {exc.reason}")
                        return
                if waiting.cancelled_caught:
                    outcome.error = HubClientError(
                        f"server timeout: nothing from the hub for {self._server_timeout} s"
                    )
                    return  # the hub is unresponsive: its TCP connection is dropped, not closed
                reader.receive_data(data.encode() if isinstance(data, str) else data)
                continue
            match message:
                case Completion():
                    self._complete(message)
                case StreamItem():
                    channel = self._streams.get(message.invocation_id)
                    if channel is not None:
                        await channel.send(message.item)  # a full stream slows the reading down
                case Invocation():
                    connection.nursery.start_soon(self._call_handler, connection, message)
                case Close():
                    # The hub closes the WebSocket next; the reader answers its Close frame.
                    outcome.allow_reconnect = message.allow_reconnect
                    outcome.error = (
                        None if message.error is None else HubClientError(f"the hub closed: {message.error}")
                    )
                    with trio.move_on_after(_CLOSE_TIMEOUT):
                        await _wait_closed(connection.ws)
                    return

    def _complete(self, message: Completion) -> None:
        channel = self._streams.pop(message.invocation_id, None)
        if channel is not None:
            error = None if message.error is None else InvocationError(message.error)
            # A full channel: the stream's reader stopped reading, and will find it closed.
            with suppress(trio.WouldBlock):
                channel.send_nowait(_StreamEnd(error))
            channel.close()
            return
        pending = self._pending.get(message.invocation_id)
        if pending is None:
            return
        if message.error is not None:
            pending.error = InvocationError(message.error)
        else:
            pending.result = message.result
        pending.done.set()

    async def _call_handler(self, connection: _Connection, message: Invocation) -> None:
        handler = self._handlers.get(message.target.lower())
        if handler is None:
            logger.warning("hub client: no handler for the server's call to %r", message.target)
            if message.invocation_id is not None:
                await self._answer(connection, Completion.with_error(message.invocation_id, _NO_RESULT))
            return
        try:
            result = handler(*message.arguments)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            logger.error("hub client: the handler for %r failed", message.target, exc_info=exc)
            if message.invocation_id is not None:
                await self._answer(
                    connection, Completion.with_error(message.invocation_id, f"{type(exc).__name__}: {exc}")
                )
            return
        if message.invocation_id is not None:
            await self._answer(connection, Completion.with_result(message.invocation_id, result))

    async def _answer(self, connection: _Connection, completion: Completion) -> None:
        with suppress(HubClientError):  # the connection is gone, and with it whoever asked
            await self._send(connection, completion)

    def _fail_pending(self, error: BaseException | None) -> None:
        lost = HubClientError(f"the connection was lost{f': {error}' if error else ''}")
        for pending in self._pending.values():
            pending.error = lost
            pending.done.set()
        for channel in self._streams.values():
            with suppress(trio.WouldBlock):
                channel.send_nowait(_StreamEnd(lost))
            channel.close()
        self._streams.clear()

    async def _stop(self) -> None:
        """Say goodbye and stop reconnecting.

        The client sends Close; a hub answers by closing the WebSocket (trio_ws
        and ASP.NET both do), which ends the connection from the server's
        side, as RFC 6455 wants. A hub that does not within ``_CLOSE_TIMEOUT``
        has its WebSocket closed by the client.
        """
        self._stopping = True
        connection = self._connection
        if connection is not None and self._state is ClientState.CONNECTED:
            with trio.move_on_after(_CLOSE_TIMEOUT) as waiting:
                with suppress(HubClientError):
                    await self._send(connection, Close())
                await self.wait_disconnected()
            if waiting.cancelled_caught:
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    await _close_quietly(connection.ws)


class _StreamEnd:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Outcome:
    """How a connection ended."""

    def __init__(self) -> None:
        self.opened = False
        self.allow_reconnect = True  # a lost transport may be reconnected; a Close says for itself
        self.error: BaseException | None = None


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _wait_closed(ws: trio_websocket.WebSocketConnection) -> None:
    """Read (and drop) until the WebSocket has closed."""
    with suppress(trio_websocket.ConnectionClosed):
        while True:
            await ws.get_message()


async def _close_quietly(ws: trio_websocket.WebSocketConnection) -> None:
    try:
        await ws.aclose()
    except Exception:  # already gone: nothing to close
        logger.debug("hub client: the WebSocket was already closed")


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

    Raises:
        HubClientError: the first connection could not be made (the text
            says why; ``status`` holds a refusal's HTTP status, such as 401).
    """
    if not 0 < keep_alive_interval < math.inf or not 0 < server_timeout < math.inf:
        raise ValueError("keep_alive_interval and server_timeout must be positive numbers of seconds")
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
    )
    failure: BaseException | None = None
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            failure = await nursery.start(client._run)
            if failure is None:
                try:
                    yield client
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await client._stop()
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        leaves = group.exceptions
        if body_error is not None and len(leaves) == 1 and leaves[0] is body_error:
            raise body_error from None
        raise
    if failure is not None:
        raise failure
