"""Relaying: a transport request that lands on a worker other than the one holding its connection.

::

    front: the worker the request landed on        holder: the worker the connection lives on
    ─────────────────────────────────────────      ──────────────────────────────────────────────
    GET {hub}?id= (a long poll)      ── ask ──▶     poll(connection)          ── its answer ──▶ 200/204
    POST {hub}?id= (SSE, Long Polling) ─ ask ──▶    post(connection, body)    ── its answer ──▶ 200/404/409
    DELETE {hub}?id=                 ── ask ──▶     delete(connection)        ── its answer ──▶ 202/400

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
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import trio

from .._response import Response
from ._errors import BackplaneError
from ._http_transports import delete, poll, post
from ._transport import ConnectionGone, TransportInUse, TransportMismatch

if TYPE_CHECKING:
    from .._request import Request
    from ._connection import HubConnection
    from ._server import HubServer

__all__ = ["DELETE", "POLL", "POST", "answer_relayed", "relay"]

logger = logging.getLogger("trio_ws.signalr")

POLL = "poll"
POST = "post"
DELETE = "delete"

_GONE = (404, b"No Connection with that ID", "text/plain; charset=utf-8", ())


# -- the front: the worker the request landed on ----------------------------------------------


async def relay(hub_server: HubServer, worker: str, kind: str, request: Request) -> Response:
    """Relay ``request`` (a poll, a POST, a DELETE) to ``worker``; its answer."""
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
        logger.info("hub connection %s: its worker %s did not answer (%s): 404", token, worker, exc)
        answer = _GONE
    status, content, content_type, headers = answer
    return Response(status, bytes(content), content_type, tuple((name, value) for name, value in headers))


# -- the holder: the worker the connection lives on --------------------------------------------


async def answer_relayed(hub_server: HubServer, origin: str, payload: Any) -> Any:
    """Serve a request another worker relayed here; its answer as plain values (or ``None``)."""
    kind, token, user, body = payload
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


def _plain(response: Response) -> Sequence[Any]:
    assert isinstance(response.body, bytes), "relayed answers are whole bodies"
    return (response.status, response.body, response.content_type, [list(pair) for pair in response.headers])


async def _once(body: bytes) -> AsyncIterator[bytes]:
    """A relayed POST's body, as the stream ``post`` reads."""
    await trio.lowlevel.checkpoint()
    yield body
