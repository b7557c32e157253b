"""The WebSocket transport: a hub connection's bytes over one of trio_ws's WebSockets.

::

    the WebSocket's handler task (trio_ws's connection nursery)
    └─ HubConnection.attach(WebSocketTransport(ws))     the pump, while attached

    the hub connection's own task                       receive(): the socket's next message

The socket belongs to trio_ws's front door (its reader, its keep-alive
pings, its close handshake); the hub connection it carries lives in the hub
server's nursery. This module only adapts one to the other.

Rules of this module:

* JSON goes in Text frames and MessagePack in Binary frames, as the official
  clients expect (a Binary handshake reply breaks the JavaScript client).
  Each ``send`` is one WebSocket message, which may hold many hub messages:
  the protocols allow it, and the hub connection's pump joins what is queued.
* A sender may hand a message to the WebSocket without waiting
  (``send_now``, see ``sender.py``): it goes out at once, when the
  WebSocket can write it at once, or not at all; ``send(b"")`` sends what
  the socket did not take of one.
* Whatever frame type a client uses, its bytes go to the hub protocol's
  reader: a Text frame is UTF-8, which is what the JSON protocol reads.
* A WebSocket closed with a Close frame (any code the client chose: 1000 on
  ``stop()``, 1001 when a page goes away) is the client closing; one that
  ended without a Close (1006), or with a protocol error, broke.
* When the hub connection ends, the socket is closed with 1000, or with
  1001 when the server is shutting down (after the hub's own Close message,
  so a client hears the reason first). A client too slow to read is cut off
  at once with 1008, without waiting for its answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from trio_websocket import ConnectionClosed

from .._protocol.messages import TransferFormat

if TYPE_CHECKING:
    from ..._websocket.connection import ServerConnection

__all__ = ["WebSocketTransport"]

# Closes that end a WebSocket without a clean Close handshake from the client.
_BROKEN = frozenset({1002, 1006, 1007, 1009, 1011})


class WebSocketTransport:
    """A ``Transport`` over a server WebSocket (``trio_ws.ServerWebSocket``)."""

    name = "WebSockets"
    transfer_formats = frozenset({TransferFormat.TEXT, TransferFormat.BINARY})
    keep_alive = True

    __slots__ = ("ws",)

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    async def receive(self) -> bytes | None:
        try:
            message = await self.ws.get_message()
        except ConnectionClosed as exc:
            code = None if exc.reason is None else exc.reason.code
            if code in _BROKEN:
                raise trio.BrokenResourceError(f"the WebSocket closed with {code}") from None
            return None
        return message.encode("utf-8") if isinstance(message, str) else message

    def send_now(self, data: bytes, *, binary: bool) -> int | None:
        """Send ``data`` as one message without waiting, if nothing else is on its way
        (``ServerConnection._send_now``): ``None`` if it was not sent, else how many bytes of it
        wait for the next ``send``."""
        return self.ws._send_now(data, text=not binary)

    async def send(self, data: bytes, *, binary: bool) -> None:
        try:
            if data:
                await self.ws.send_message(data if binary else data.decode("utf-8"))
            else:
                await self.ws._flush()  # what a send_now left waiting
        except ConnectionClosed as exc:
            raise trio.BrokenResourceError(f"the WebSocket closed: {exc.reason}") from None

    async def aclose(self) -> None:
        if self.ws.request.closing:
            await self.ws.aclose(1001, "server shutting down")
        else:
            await self.ws.aclose(1000)

    async def abort(self) -> None:
        await self.ws.close_now(1008, "too slow")

    def __repr__(self) -> str:
        return f"<WebSocketTransport {self.ws}>"
