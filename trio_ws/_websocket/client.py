"""The client side, for ``trio_ws.testing``: trio-websocket's own client, with ``async for``.

One fix on top of trio-websocket's client: no Pong after our Close
(trio-websocket issue #184). A Ping that arrives while our Close is in
flight would make wsproto raise ``LocalProtocolError`` in the reader task
and crash the connection; the server's keep-alive pings can cross the
client's Close. This is the one place left where trio_ws reaches into
trio-websocket (``_reader_task``, ``_open_handshake``, ``_handle_ping_event``
and ``_wsproto``); ``tests/test_dependency_internals.py`` lists them.
"""

from __future__ import annotations

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import Ping

from .connection import WebSocketConnection

__all__ = ["ClientConnection", "client_connection"]


class ClientConnection(WebSocketConnection):
    """trio-websocket's client connection, with the fix in the module docstring (and ``async for``)."""

    async def _handle_ping_event(self, event: Ping) -> None:
        if self._wsproto.state is ConnectionState.OPEN:
            await super()._handle_ping_event(event)


async def client_connection(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    path: str,
    *,
    subprotocols: list[str],
    extra_headers: list[tuple[bytes, bytes]],
    message_queue_size: int,
    max_message_size: int,
) -> ClientConnection:
    """Open a client WebSocket over ``stream``, as ``trio_websocket.wrap_client_stream`` does.

    Raises:
        trio_websocket.ConnectionRejected: from the reader task in ``nursery``,
            when the server answers the handshake over HTTP.
    """
    connection = ClientConnection(
        stream,
        WSConnection(ConnectionType.CLIENT),
        host="localhost",
        path=path,
        client_subprotocols=subprotocols,
        client_extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
    )
    nursery.start_soon(connection._reader_task)
    await connection._open_handshake.wait()
    return connection
