"""Relaying: a transport request that lands on a worker other than the one holding its connection.

::

    front: the worker the request landed on        holder: the worker the connection lives on
    ─────────────────────────────────────────      ──────────────────────────────────────────────
    GET {hub}?id= (a long poll)      ── ask ──▶     poll(connection)          ── its answer ──▶ 200/204
    POST {hub}?id= (SSE, Long Polling) ─ ask ──▶    post(connection, body)    ── its answer ──▶ 200/404/409
    DELETE {hub}?id=                 ── ask ──▶     delete(connection)        ── its answer ──▶ 202/400
    a WebSocket's upgrade            ── ask ──▶     before_upgrade's checks  ── its answer ──▶ 101 or refused
    the WebSocket (stateful          ── ask ──▶     a RemoteTransport, attached in place of the dropped socket
      reconnect only)                ◀── ask ──     ... its sends (Out), and its close
      its messages (Data), its end   ── ask ──▶     ... what RemoteTransport.receive() returns

A connection lives where its first transport landed (``HubServer.locate``):
a WebSocket is always served where it landed, an event stream too, so only
their later requests can land elsewhere: every long poll, POST and DELETE
of Long Polling, and the POSTs beside an event stream. Each is relayed as
one request and its answer over the backplane (``Backplane.ask``), and the
holder serves it with the same functions it uses for its own requests
(``_http_transports.py``), so the rules, the answers and the order are the
same wherever a request lands.

Rules of this module:

* One request, one answer, in the order the client makes them: a Long
  Polling or SSE client sends one POST at a time and waits for its answer,
  so relaying keeps the order the holder sees. Nothing is buffered on the
  front but the one request in flight, whose body the front door bounds
  (``max_request_body``).
* A relayed request is bounded: the holder answers within its own time
  (a poll's ``long_polling_timeout``; ``slow_client_timeout`` for a POST
  the hub is slow to read), and the front waits that plus the backplane's
  ``operation_timeout``. A holder that does not answer is taken for gone:
  404, as for an unknown id, so the client starts a new connection.
* A front whose client goes away stops waiting and tells the holder
  (``Cancel``), which stops serving the poll before it takes any bytes.
* The holder checks the user as it checks its own requests (403 for a
  request from another user than the one who negotiated).
* A WebSocket that lands on another worker can only be a stateful
  reconnect's new socket (the first one opened the connection where it
  landed). The connection does not move: the holder attaches a
  ``RemoteTransport`` in place of the socket that dropped, and replays
  from the client's Sequence exactly as for a socket of its own, so nothing
  is lost or duplicated whichever worker the socket reached. Each way, one
  ask is in flight at a time, answered once the other side has taken it
  (the holder's inbound queue, the front's socket), so order is kept and
  back-pressure reaches the sender; what queued meanwhile goes in the next
  ask (the holder's pump joins its queue, the front joins the client's
  messages), so a slow backplane makes messages wait, never pile up.
* A relayed socket ends on both sides together. The front tells the holder
  when the client's socket ends, and when the holder stops answering (as
  far as it can), so the holder never keeps a socket attached that is
  gone; the holder tells the front when a newer socket takes over or the
  connection ends (and answers ``False`` to the old socket's messages
  after that), and the front closes it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio
from trio_websocket import ConnectionClosed

from ..._app.response import Response
from ..._printable import printable
from .._errors import BackplaneError
from .._protocol.messages import TransferFormat
from .http_requests import delete, poll, post
from .transport import ConnectionGone, TransportInUse, TransportMismatch

if TYPE_CHECKING:
    from ..._app.request import Request
    from ..._websocket.connection import ServerConnection
    from .._backplane import Backplane
    from .._options import HubOptions
    from .connection import TransportConnection as HubConnection

__all__ = [
    "DELETE",
    "RelayHost",
    "POLL",
    "POST",
    "WEBSOCKET",
    "RelayedSockets",
    "RemoteTransport",
    "answer_relayed",
    "relay",
    "relay_check",
    "relay_websocket",
]


class RelayHost(Protocol):
    """What relaying needs of the server (a hub's or a connection handler's: relaying is the same
    for both): its backplane and options, whether it is shutting down, its connections by token,
    the sockets it relays, and its nursery for their carriers."""

    @property
    def backplane(self) -> Backplane: ...  # pragma: no cover (a signature)

    @property
    def options(self) -> HubOptions: ...  # pragma: no cover (a signature)

    @property
    def closing(self) -> bool: ...  # pragma: no cover (a signature)

    @property
    def relayed_sockets(self) -> RelayedSockets: ...  # pragma: no cover (a signature)

    def find_connection(self, token: str, /) -> HubConnection | None: ...  # pragma: no cover (a signature)

    def start_soon(
        self, function: Callable[..., Awaitable[object]], /, *args: object
    ) -> None: ...  # pragma: no cover (a signature)


logger = logging.getLogger("trio_ws.signalr")

POLL = "poll"
POST = "post"
DELETE = "delete"
WEBSOCKET = "websocket"  # the checks before a relayed upgrade
_OPEN = "ws-open"  # front → holder: attach a RemoteTransport for this socket
_DATA = "ws-data"  # front → holder: one message from the client
_END = "ws-end"  # front → holder: the client's socket ended (cleanly, or broken)
_OUT = "ws-out"  # holder → front: one message for the client
_CLOSE = "ws-close"  # holder → front: close the socket with this code
# Closes that end a WebSocket without a clean Close handshake from the client.
_BROKEN = frozenset({1002, 1006, 1007, 1009, 1011})

_GONE = (404, b"No Connection with that ID", "text/plain; charset=utf-8", ())


# -- the front: the worker the request landed on ----------------------------------------------


async def relay(hub_server: RelayHost, worker: str, kind: str, request: Request) -> Response:
    """Relay ``request`` (a poll, a POST, a DELETE) to ``worker``; its answer."""
    answer = await relay_check(hub_server, worker, kind, request)
    assert answer is not None, "the holder answers every HTTP request"
    return answer


async def relay_check(hub_server: RelayHost, worker: str, kind: str, request: Request) -> Response | None:
    """Relay ``request`` to ``worker``; its answer (``None``: the WebSocket may be upgraded)."""
    options = hub_server.options
    body = b""
    if kind == POST:
        body = b"".join([chunk async for chunk in request.body_stream])
    within = options.long_polling_timeout if kind == POLL else options.slow_client_timeout
    user = None if request.identity is None else request.identity.user_id
    token = request.query_param("id") or ""
    try:
        answer = await hub_server.backplane.ask(worker, [kind, token, user, body], within)
    except BackplaneError as exc:
        logger.info(
            "hub connection %s: its worker %s did not answer (%s): 404", printable(token), worker, exc
        )
        answer = _GONE
    if answer is None:
        return None
    status, content, content_type, headers = answer
    return Response(status, bytes(content), content_type, tuple((name, value) for name, value in headers))


# -- the holder: the worker the connection lives on --------------------------------------------


async def answer_relayed(hub_server: RelayHost, origin: str, payload: Any) -> Any:
    """Serve a request another worker relayed here; its answer as plain values (or ``None``)."""
    kind, token, user, body = payload
    if kind in (_DATA, _END, _OUT, _CLOSE):
        return await hub_server.relayed_sockets.answer(kind, token, user, body)
    connection = hub_server.find_connection(token)
    if connection is None:
        await trio.lowlevel.checkpoint()
        return _GONE
    if user is not None and user != connection.user_id:
        await trio.lowlevel.checkpoint()
        return _plain(Response.text(403, "Forbidden: this connection was negotiated by another user"))
    logger.debug("%s: serving a %s relayed from worker %s", connection, kind, origin)
    if kind == POLL:
        return _plain(await _poll(connection, hub_server.options.long_polling_timeout))
    if kind == POST:
        return _plain(await post(connection, _once(bytes(body))))
    if kind == DELETE:
        await trio.lowlevel.checkpoint()
        return _plain(delete(connection))
    if kind in (WEBSOCKET, _OPEN):
        await trio.lowlevel.checkpoint()
        refusal = _websocket_refusal(connection)
        if refusal is not None:
            return _plain(refusal)
        if kind == _OPEN:
            hub_server.relayed_sockets.carry(hub_server, connection, origin, str(body))
        return None
    await trio.lowlevel.checkpoint()
    return _plain(Response.text(400, f"unknown relayed request {kind!r}"))


async def _poll(connection: HubConnection, hold: float) -> Response:
    try:
        return await poll(connection, None, hold)
    except ConnectionGone:
        return Response.text(404, "No Connection with that ID")
    except TransportMismatch:
        return Response.text(400, "Cannot change transports mid-connection")
    except TransportInUse:
        return Response.text(409, "Conflict: another transport is connected to this connection")


def _websocket_refusal(connection: HubConnection) -> Response | None:
    """Why a WebSocket may not carry ``connection`` (``None``: it may)."""
    if connection.closing:
        return Response.text(404, "No Connection with that ID")
    if connection.transport_name not in (None, "WebSockets"):
        return Response.text(400, "Cannot change transports mid-connection")
    if connection.has_transport and not connection.resumable:
        return Response.text(409, "Conflict: another transport is connected to this connection")
    return None


async def relay_websocket(hub_server: RelayHost, worker: str, ws: ServerConnection) -> None:
    """Carry a WebSocket that landed here for a connection ``worker`` holds, until either ends."""
    sockets = hub_server.relayed_sockets
    backplane = hub_server.backplane
    options = hub_server.options
    request = ws.request
    user = None if request.identity is None else request.identity.user_id
    stream = secrets.token_hex(8)
    front = _Front(ws)
    sockets.fronts[stream] = front
    try:
        try:
            opening = [_OPEN, request.query_param("id"), user, stream]
            refusal = await backplane.ask(worker, opening, options.close_timeout)
        except BackplaneError as exc:
            logger.info("%s: the worker holding its connection did not answer: %s", ws, exc)
            refusal = _GONE
        if refusal is not None:
            await ws.aclose(1008, "connection gone" if refusal[0] == 404 else "connection in use")
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_client, front)
            await _forward(hub_server, worker, stream, front)
            nursery.cancel_scope.cancel()
    finally:
        del sockets.fronts[stream]
        sockets.forgot()


# Bytes from the client that may wait on the front while a relayed message is on its way to the
# holder; past it, the front stops reading the socket (back-pressure through TCP).
_FRONT_BUFFER = 256 * 1024


class _Front:
    """A WebSocket on the front, whose connection another worker holds.

    Its reader (``_read_client``) queues what the client sends; its
    forwarder (``_forward``) sends everything queued to the holder as one
    message, then the socket's end. A message is whole hub messages, so
    joined messages are the same bytes for the hub protocol's reader.
    """

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.ended = trio.Event()
        self.queued: list[bytes] = []
        self.queued_bytes = 0
        self.broken: bool | None = None  # set when the client's socket has ended: whether it broke
        self.changed = trio.Event()  # something queued, or the end
        self.room = trio.Event()


async def _read_client(front: _Front) -> None:
    ws = front.ws
    while True:
        while front.queued_bytes >= _FRONT_BUFFER:
            front.room = trio.Event()
            await front.room.wait()
        try:
            message = await ws.get_message()
        except ConnectionClosed as exc:
            code = None if exc.reason is None else exc.reason.code
            front.broken = code in _BROKEN
            front.changed.set()
            return
        data = message.encode("utf-8") if isinstance(message, str) else message
        front.queued.append(data)
        front.queued_bytes += len(data)
        front.changed.set()


async def _forward(hub_server: RelayHost, worker: str, stream: str, front: _Front) -> None:
    """Send what the client sends to the holder, in order, until the socket or the relay ends.

    Everything queued while one message is on its way goes in the next, so
    a backplane's round trip costs each message a wait, never a place in a
    queue that grows. When the holder no longer carries this socket (a
    newer one took the connection over, or it ended), the socket is closed;
    when the holder does not answer, it is told the socket broke, as far
    as it can be told, so it does not keep waiting on it.
    """
    backplane, options, ws = hub_server.backplane, hub_server.options, front.ws
    while True:
        if not front.queued and front.broken is None:
            front.changed = trio.Event()
            await front.changed.wait()
            continue
        if not front.queued:
            with contextlib.suppress(BackplaneError):
                await backplane.ask(worker, [_END, stream, None, front.broken], options.close_timeout)
            break
        data = b"".join(front.queued)
        front.queued.clear()
        front.queued_bytes = 0
        front.room.set()
        try:
            taken = await backplane.ask(worker, [_DATA, stream, None, data], options.slow_client_timeout)
        except BackplaneError as exc:
            logger.info("%s: the worker holding its connection is gone: %s", ws, exc)
            with contextlib.suppress(BackplaneError):
                await backplane.ask(worker, [_END, stream, None, True], options.close_timeout)
            await ws.aclose(1011, "the server holding this connection is gone")
            break
        if not taken:
            logger.info("%s: its connection has ended, or another socket carries it now", ws)
            await ws.aclose(1008, "connection gone or moved")
            break
    front.ended.set()


class RemoteTransport:
    """The holder's side of a relayed WebSocket: a ``Transport`` whose bytes cross the backplane."""

    name = "WebSockets"
    transfer_formats = frozenset({TransferFormat.TEXT, TransferFormat.BINARY})
    keep_alive = True

    def __init__(self, hub_server: RelayHost, front: str, stream: str) -> None:
        self._backplane = hub_server.backplane
        self._hub_server = hub_server
        self._front = front
        self._stream = stream
        self.inbound, self._inbound = trio.open_memory_channel[bytes](1)
        self.broken = False

    async def receive(self) -> bytes | None:
        try:
            return await self._inbound.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self.broken:
                raise trio.BrokenResourceError("the relayed WebSocket broke") from None
            return None

    async def send(self, data: bytes, *, binary: bool) -> None:
        within = self._hub_server.options.slow_client_timeout
        try:
            taken = await self._backplane.ask(self._front, [_OUT, self._stream, binary, data], within)
        except BackplaneError as exc:
            raise trio.BrokenResourceError(f"the relayed WebSocket's worker: {exc}") from None
        if not taken:
            raise trio.BrokenResourceError("the relayed WebSocket closed")

    async def aclose(self) -> None:
        await self._close(1001 if self._hub_server.closing else 1000)

    async def abort(self) -> None:
        await self._close(1008)

    async def _close(self, code: int) -> None:
        self.inbound.close()
        with contextlib.suppress(BackplaneError):
            closing = [_CLOSE, self._stream, None, code]
            await self._backplane.ask(self._front, closing, self._hub_server.options.close_timeout)

    def __repr__(self) -> str:
        return f"<RemoteTransport {self._stream} on worker {self._front}>"


class RelayedSockets:
    """A hub server's relayed WebSockets: those it holds the connection of (``remote``), and
    those that landed here for a connection another worker holds (``fronts``)."""

    def __init__(self) -> None:
        self.remote: dict[str, RemoteTransport] = {}
        self.fronts: dict[str, _Front] = {}
        self._emptied = trio.Event()

    def forgot(self) -> None:
        """A relayed socket's last trace here is gone."""
        if not (self.remote or self.fronts):
            self._emptied.set()
            self._emptied = trio.Event()

    async def wait_empty(self) -> None:
        """Wait until this worker keeps no relayed socket, either side."""
        while self.remote or self.fronts:
            await self._emptied.wait()
        await trio.lowlevel.checkpoint()

    def carry(self, hub_server: RelayHost, connection: HubConnection, front: str, stream: str) -> None:
        """Attach a ``RemoteTransport`` for the front's socket ``stream`` to ``connection``."""
        transport = self.remote[stream] = RemoteTransport(hub_server, front, stream)
        hub_server.start_soon(self._carry, connection, transport, stream)

    async def _carry(self, connection: HubConnection, transport: RemoteTransport, stream: str) -> None:
        try:
            await connection.attach(transport)
        except (ConnectionGone, TransportInUse, TransportMismatch) as exc:
            logger.info("%s: a relayed WebSocket refused: %s", connection, type(exc).__name__)
            await transport.abort()
        finally:
            self.remote.pop(stream, None)
            self.forgot()

    async def answer(self, kind: str, stream: str, flag: Any, body: Any) -> Any:
        """A relayed socket's message, for this worker's side of it."""
        if kind in (_DATA, _END):
            transport = self.remote.get(stream)
            if transport is None:
                await trio.lowlevel.checkpoint()
                return False
            if kind == _END:
                transport.broken = bool(body)
                transport.inbound.close()
                await trio.lowlevel.checkpoint()
                return True
            try:
                await transport.inbound.send(bytes(body))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True
        front = self.fronts.get(stream)
        if front is None:
            await trio.lowlevel.checkpoint()
            return False
        ws = front.ws
        if kind == _OUT:
            try:
                await ws.send_message(bytes(body) if flag else bytes(body).decode("utf-8"))
            except ConnectionClosed:
                return False
            return True
        await ws.aclose(int(body), "server shutting down" if body == 1001 else "")
        front.ended.set()
        return True


def _plain(response: Response) -> Sequence[Any]:
    assert isinstance(response.body, bytes), "relayed answers are whole bodies"
    return (response.status, response.body, response.content_type, [list(pair) for pair in response.headers])


async def _once(body: bytes) -> AsyncIterator[bytes]:
    """A relayed POST's body, as the stream ``post`` reads."""
    await trio.lowlevel.checkpoint()
    yield body
