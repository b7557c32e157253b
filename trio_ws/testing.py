"""Helpers for testing your own trio_ws apps with pytest-trio.

Two ways to reach an :class:`~trio_ws.App` from a test:

* In memory, with no sockets: :func:`open_memory_server` serves the app on a
  :class:`MemoryListener`, and its ``connect()`` opens a WebSocket to it. The
  client is a :class:`~trio_ws.WebSocketConnection`, with trio-websocket's
  API and ``async for`` (``send_message``, ``get_message``, ``aclose``, and
  ``ConnectionClosed`` with the close reason), so tests read like client
  code. Nothing waits on the operating
  system, so the ``autojump_clock`` fixture makes keep-alive and timeout tests
  take no real time. :func:`open_memory_websocket` is the one-client shortcut.
* On a real socket: :func:`start_server` serves the app on 127.0.0.1, port 0,
  in a nursery you own (pytest-trio's ``nursery`` fixture, say), and hands
  back the :class:`~trio_ws.Server`, whose ``url`` and ``ws_url()`` say where.

Rules of this module:

* Nothing started here outlives its ``async with`` block: each context
  manager owns the nursery its tasks run in.
* Error handling: an exception raised inside a block comes out as itself,
  not wrapped in an ``ExceptionGroup``, and so does ``ConnectionRejected``
  when the server refuses a handshake. The tasks behind the block never
  raise on their own; if one does anyway (a bug), the whole group comes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial

import trio
import trio.testing
from trio_websocket import HandshakeError

from ._app.app import App
from ._options import Options
from ._server.server import Server, serve, serve_listeners
from ._websocket.client import client_connection
from ._websocket.connection import WebSocketConnection

__all__ = [
    "MemoryListener",
    "MemoryServer",
    "StreamPairFactory",
    "open_memory_server",
    "open_memory_websocket",
    "start_server",
]

StreamPairFactory = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]
"""Makes a connected (client, server) stream pair, like ``trio.testing.memory_stream_pair``."""

# How long a client's closing handshake may take when its block ends.
_CLOSE_TIMEOUT = 10.0


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose connections are in-memory stream pairs, made by :meth:`connect`.

    Give it to :func:`trio_ws.serve_listeners` to serve an app with no sockets.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](100)

    async def connect(
        self, stream_pair: StreamPairFactory = trio.testing.memory_stream_pair
    ) -> trio.abc.Stream:
        """Open a connection to whoever accepts on this listener; returns the client's end.

        Args:
            stream_pair: Makes the two ends. The default buffers without limit,
                so the server never waits for the client to read; pass
                ``trio.testing.lockstep_stream_pair`` for a connection where
                every send waits until the other side reads it (a slow client).
        """
        client, server = stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError from None

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()


class MemoryServer:
    """An app served in memory, from :func:`open_memory_server`."""

    def __init__(self, server: Server, listener: MemoryListener) -> None:
        #: The running :class:`~trio_ws.Server` (``statistics()``, ``aclose()``).
        self.server = server
        #: The listener it accepts on; ``await listener.connect()`` gives a raw stream.
        self.listener = listener

    @asynccontextmanager
    async def connect(
        self,
        path: str = "/ws",
        *,
        subprotocols: Iterable[str] = (),
        headers: Iterable[tuple[str, str]] = (),
        stream_pair: StreamPairFactory = trio.testing.memory_stream_pair,
        message_queue_size: int = 1,
        max_message_size: int = 2**20,
    ) -> AsyncIterator[WebSocketConnection]:
        """Open a WebSocket to ``path`` and close it (code 1000) when the block ends.

        Usage::

            async with memory_server.connect("/ws?name=ann") as ws:
                await ws.send_message("hello")
                assert await ws.get_message() == "hello"

        Args:
            path: The request target, with a query string if you like.
            subprotocols: Subprotocols to propose; ``ws.subprotocol`` is the
                server's choice.
            headers: Extra request headers, such as ``("Origin", "https://...")``.
            stream_pair: See :meth:`MemoryListener.connect`.
            message_queue_size: How many received messages the client buffers
                before it stops reading (trio-websocket's option).
            max_message_size: The largest message the client accepts.

        Raises:
            trio_websocket.ConnectionRejected: the server answered the
                handshake over HTTP instead (``status_code`` says why: 404,
                403, ...).
        """
        stream = await self.listener.connect(stream_pair)
        extra_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        try:
            async with _unwrapped() as body, trio.open_nursery() as nursery:
                ws = await client_connection(
                    nursery,
                    stream,
                    path,
                    subprotocols=list(subprotocols),
                    extra_headers=extra_headers,
                    message_queue_size=message_queue_size,
                    max_message_size=max_message_size,
                )
                try:
                    async with body:
                        yield ws
                finally:
                    with trio.move_on_after(_CLOSE_TIMEOUT):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        finally:
            # Also when the handshake was refused, which leaves the stream to us.
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_memory_server(app: App, *, options: Options | None = None) -> AsyncIterator[MemoryServer]:
    """Serve ``app`` in memory for the duration of the block.

    Usage::

        async with trio_ws.testing.open_memory_server(app) as served:
            async with served.connect("/ws") as alice, served.connect("/ws") as bob:
                ...

    When the block ends the server shuts down gracefully (close 1001 to any
    WebSocket still open, as on Ctrl-C), and returns once every handler has.
    """
    async with MemoryListener() as listener, _unwrapped() as body, trio.open_nursery() as nursery:
        server: Server = await nursery.start(partial(serve_listeners, app, [listener], options=options))
        async with body:
            yield MemoryServer(server, listener)
        await server.aclose()


@asynccontextmanager
async def open_memory_websocket(
    app: App,
    path: str = "/ws",
    *,
    options: Options | None = None,
    subprotocols: Iterable[str] = (),
    headers: Iterable[tuple[str, str]] = (),
) -> AsyncIterator[WebSocketConnection]:
    """One in-memory WebSocket to ``path`` on ``app``: :func:`open_memory_server` plus ``connect()``.

    Usage::

        async def test_shout() -> None:
            async with trio_ws.testing.open_memory_websocket(app, "/ws") as ws:
                await ws.send_message("hi")
                assert await ws.get_message() == "HI"
    """
    async with (
        open_memory_server(app, options=options) as served,
        served.connect(path, subprotocols=subprotocols, headers=headers) as ws,
    ):
        yield ws


async def start_server(
    nursery: trio.Nursery,
    app: App,
    *,
    options: Options | None = None,
    host: str = "127.0.0.1",
) -> Server:
    """Serve ``app`` on a free port of ``host`` in ``nursery``; return once it accepts connections.

    The server runs until ``await server.aclose()`` or until the nursery is
    cancelled. With pytest-trio's ``nursery`` fixture it makes a fixture::

        @pytest.fixture
        async def server(nursery: trio.Nursery) -> trio_ws.Server:
            return await trio_ws.testing.start_server(nursery, app)

        async def test_it(server: trio_ws.Server) -> None:
            async with trio_websocket.open_websocket_url(server.ws_url("/ws")) as ws:
                ...

    Raises:
        OSError: ``host`` could not be bound.
    """
    server: Server = await nursery.start(partial(serve, app, host, 0, options=options))
    return server


class _Body:
    """Remembers the exception that left an ``async with`` body (see :func:`_unwrapped`)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        self.error = error


@asynccontextmanager
async def _unwrapped() -> AsyncIterator[_Body]:
    """Take the body's own exception (or a refused handshake) out of the nursery's group.

    A nursery wraps whatever its body raises in an ``ExceptionGroup``. Here the
    only task that can raise is the body (the server and the client's reader
    catch their own errors), so a group holding just the body's exception, or
    just the handshake refusal, is unwrapped; anything more is left as it is.
    """
    body = _Body()
    try:
        yield body
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1 and (leaves[0] is body.error or isinstance(leaves[0], HandshakeError)):
            raise leaves[0] from None
        raise


def _leaves(error: BaseException) -> Iterable[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error
