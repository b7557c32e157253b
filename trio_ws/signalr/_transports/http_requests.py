"""The requests of the transports that ride on plain HTTP: the event stream, polls, POSTs and DELETE.

::

    GET  {hub}?id=TOKEN  Accept: text/event-stream   the event stream: the server's half of SSE
    GET  {hub}?id=TOKEN                               a long poll: the server's half of Long Polling
    POST {hub}?id=TOKEN                               the client's half of both
    DELETE {hub}?id=TOKEN                             the end of a Long Polling connection

Neither is a duplex connection, so each is two halves: the client's bytes
come in POST bodies, and the server's go out in an event stream or in poll
answers. Both halves run in the tasks that serve those requests (the front
door's), never in the hub connection's nursery; they meet the connection
through its POST inbox (``PostInbox``, in ``_transports/http.py``, which the connection's reader reads)
and its send queue (``Sender.take``). Rules of this module, from
TransportProtocols.md and ASP.NET's own transports:

* A POST body's bytes go to the connection as they arrive, a chunk at a
  time; the POST waits while the reader is behind (one chunk waits), and is
  answered 200 once its body is all handed over. One POST at a time per
  connection: another meanwhile is answered 409. The bytes may hold several
  messages or part of one.
* The event stream answers 200 ``text/event-stream`` with no-cache headers
  and ``Content-Encoding: identity``, writes ``:\\r\\n`` first (a comment,
  which makes browsers fire ``open``), then one event per chunk taken from
  the send queue: each line as ``data: LINE\\r\\n``, then ``\\r\\n``. It ends
  cleanly when the connection ends, and the connection ends
  (``CLIENT_CLOSED``) when the client drops it.
* The first poll is answered at once, 200 with an empty body: it attaches
  the transport. Each later poll takes everything queued (200,
  ``application/octet-stream``), or is answered 200 empty after
  ``long_polling_timeout``, or 204 when the connection has ended (its last
  message taken) or a newer poll displaced it. Between polls the client is
  away: with no poll for ``disconnect_timeout`` the connection ends
  (``TIMED_OUT``). The hub sends no Pings over it: each poll shows the client
  is alive.
* ``DELETE`` ends a Long Polling connection (``CLIENT_CLOSED``) and forgets
  its token at once, so the next poll is answered 404.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..._app.response import Response
from ..._app.sse import ServerSentEvent
from .._errors import DisconnectReason
from .http import LONG_POLLING, LongPollingTransport, ServerSentEventsTransport
from .sender import CHUNK
from .transport import TransportMismatch

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from ..._app.request import Request
    from .connection import TransportConnection
    from .transport import Attachment

__all__ = ["delete", "event_stream", "poll", "post"]

logger = logging.getLogger("trio_ws.signalr")

# ASP.NET's headers for a response no cache may keep (polls), and for an event stream.
_NO_CACHE = (
    ("cache-control", "no-cache, no-store"),
    ("pragma", "no-cache"),
    ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
)
_EVENT_STREAM_HEADERS = (
    ("cache-control", "no-cache,no-store"),
    ("pragma", "no-cache"),
    ("content-encoding", "identity"),
    # nginx buffers responses unless told not to; events must not wait in a buffer.
    ("x-accel-buffering", "no"),
)
_OPEN_COMMENT = b":\r\n"
# The most a poll answer carries: everything queued, in practice (send_buffer_size and a goodbye).
_POLL_BYTES = 1 << 30


# -- POST: the client's half of both --------------------------------------------------------


async def post(connection: TransportConnection, body: AsyncIterable[bytes]) -> Response:
    """``POST {hub}?id=``: hand the body (the request's, or one relayed from another worker) to
    the connection; 200 once it is all handed over."""
    if connection.transport_name == "WebSockets":
        return Response.text(405, "POST requests are not allowed for WebSocket connections.")
    inbox = connection.post_inbox()
    if inbox.busy:
        return Response.text(409, "Conflict: another POST for this connection is in progress")
    inbox.busy = True
    try:
        delivered = await inbox.put(body)
    finally:
        inbox.busy = False
    if not delivered:
        return _gone()
    return Response(200, b"", "text/plain")


# -- Server-Sent Events ----------------------------------------------------------------------


def event_stream(connection: TransportConnection, request: Request) -> Response:
    """``GET {hub}?id=`` with ``Accept: text/event-stream``: the connection's messages as events.

    Raises:
        ConnectionGone, TransportInUse, TransportMismatch: as ``connect_transport``
            (the caller answers 404, 409, 400).
    """
    transport = ServerSentEventsTransport(connection.post_inbox())
    attachment = connection.connect_transport(transport, request=request)
    # Reading it tells the server that this stream ends itself on shutdown: the hub's goodbye
    # (Close with allowReconnect) goes out first.
    _ = request.closing
    return Response(200, _EventStream(connection, attachment), "text/event-stream", _EVENT_STREAM_HEADERS)


class _EventStream:
    """The event stream's body. An object rather than a generator: the front door closes it
    (``aclose``) even if it never started, and closing it is what tells the connection."""

    def __init__(self, connection: TransportConnection, attachment: Attachment) -> None:
        self._connection = connection
        self._attachment = attachment
        self._started = False

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> bytes:
        if not self._started:
            self._started = True
            await trio.lowlevel.checkpoint()
            return _OPEN_COMMENT
        try:
            chunk = await self._connection.sender.take(CHUNK)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        # UTF-8 JSON (Text only: MessagePack is refused on this transport at the handshake).
        return ServerSentEvent(chunk.decode("utf-8")).encode(line_break="\r\n")

    async def aclose(self) -> None:
        # The stream is over: the connection ended, the client dropped it, or the server stopped it.
        self._connection.transport_lost(self._attachment, broken=False, detail="the event stream ended")
        await trio.lowlevel.checkpoint_if_cancelled()


# -- Long Polling ----------------------------------------------------------------------------


async def poll(connection: TransportConnection, request: Request | None, hold: float) -> Response:
    """``GET {hub}?id=`` without ``Accept: text/event-stream``: one long poll (``request`` is
    ``None`` for one relayed from another worker).

    Raises:
        ConnectionGone, TransportInUse, TransportMismatch: for the first poll, as
            ``connect_transport`` (the caller answers 404, 409, 400).
    """
    transport = connection.current_transport
    if transport is None:
        if connection.closing:
            return Response.empty(204, headers=_NO_CACHE)  # stopped: it has nothing more to say
        return _first_poll(connection, request)
    if not isinstance(transport, LongPollingTransport):
        raise TransportMismatch(f"{connection} is carried by {connection.transport_name}")
    if transport.held is not None:
        transport.held.cancel()  # displaced: answered 204
    scope = transport.held = trio.CancelScope()
    connection.set_away(False)
    try:
        with scope:
            scope.deadline = trio.current_time() + hold
            try:
                chunk = await connection.sender.take(_POLL_BYTES)
            except trio.EndOfChannel:
                return Response.empty(204, headers=_NO_CACHE)  # the connection has ended
            return Response(200, chunk, "application/octet-stream", _NO_CACHE)
    finally:
        if transport.held is scope:
            transport.held = None
            connection.set_away(True, DisconnectReason.TIMED_OUT, "no poll within disconnect_timeout")
    if trio.current_time() >= scope.deadline:
        return Response(200, b"", "text/plain", _NO_CACHE)  # nothing to send: poll again
    return Response.empty(204, headers=_NO_CACHE)  # a newer poll took over


def _first_poll(connection: TransportConnection, request: Request | None) -> Response:
    """The first poll attaches the transport, and is answered at once: the client's ``start()``
    waits for it."""
    transport = LongPollingTransport(connection.post_inbox())
    connection.connect_transport(transport, request=request)
    connection.set_away(True, DisconnectReason.TIMED_OUT, "no poll within disconnect_timeout")
    return Response(200, b"", "application/octet-stream", _NO_CACHE)


def delete(connection: TransportConnection) -> Response:
    """``DELETE {hub}?id=``: the client stops a Long Polling connection; 202, and the token is forgotten."""
    if connection.transport_name != LONG_POLLING:
        return Response.text(400, "Cannot terminate this connection using the DELETE endpoint.")
    connection.stop()
    connection.server.forget(connection)
    return Response(202, b"", "text/plain")


def _gone() -> Response:
    return Response.text(404, "No Connection with that ID")
