"""The life of one WebSocket, from the upgrade to the last byte, in one nursery.

::

    connection nursery                 (opened by run_websocket)
    ├─ reader task       socket -> protocol.py -> the handler's inbox (bounded; reader.py)
    ├─ keep-alive task   a ping every keep_alive_interval (if enabled, and the route keeps it)
    └─ handler           the route's handler, run in this task itself

The handler runs in the connection's own task, so the nursery cannot close
before it returns. When it does return (or fails, or is cancelled), the
connection is closed, the reader finishes the close handshake (within
``close_timeout``, after which it drops TCP: see ``_websocket/connection.py``), and the
nursery is cancelled: the keep-alive task and anything else left over end
with it. Nothing started here outlives the connection.

Error handling: a handler exception is logged once, with the route and the
peer, and closes only this connection, with 1011, whatever its type short
of a stop (``_contain.py``). ``ConnectionClosed`` escaping a handler is not
an error: the peer left while the handler was talking to it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio
from trio_websocket import ConnectionClosed

from .._contain import contain
from .._observe.logs import set_log_fields
from .keepalive import keep_alive

if TYPE_CHECKING:
    from .._app.app import WebSocketRoute
    from .._options import Options
    from .connection import ServerConnection

__all__ = ["WebSocketHost", "run_websocket"]


class WebSocketHost(Protocol):
    """What one WebSocket needs of the server that runs it (``Server`` is one; this layer sits below it)."""

    @property
    def options(self) -> Options: ...  # pragma: no cover (a signature)

    @property
    def closing(self) -> bool: ...  # pragma: no cover (a signature)

    def websocket_opened(self, ws: ServerConnection, /) -> None: ...  # pragma: no cover (a signature)

    def websocket_closed(self, ws: ServerConnection, /) -> None: ...  # pragma: no cover (a signature)


logger = logging.getLogger("trio_ws.connection")

# The name of every reader task: one string for all (trio makes one per task from the method's).
_READER_TASK = "trio_ws._websocket.connection.BaseConnection.run_reader"


async def run_websocket(
    ws: ServerConnection, route: WebSocketRoute, server: WebSocketHost, handshake_deadline: float
) -> None:
    """Finish the handshake on ``ws``, run the route's handler, and clean up."""
    options = server.options
    identity = ws.request.identity
    user = None if identity is None else identity.user_id
    # Set before the reader starts, so that its task shares these fields with this one's: a copy
    # made earlier would keep the fields before them alive as long as the connection.
    set_log_fields(connection_id=str(ws), transport="websocket", path=route.path, user=user)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.run_reader, name=_READER_TASK)
        with trio.move_on_at(handshake_deadline) as handshake:
            try:
                await ws.accept(route.choose_subprotocol(ws.proposed_subprotocols))
            except ConnectionClosed:
                logger.debug("%s: the peer left during the upgrade", ws)
                nursery.cancel_scope.cancel()
                return
        if handshake.cancelled_caught:
            logger.info("%s: dropped: the upgrade did not finish within handshake_timeout", ws)
            nursery.cancel_scope.cancel()
            return
        # The handshake's scope would otherwise stay alive as long as the connection.
        del handshake
        extensions = f" with {', '.join(ws.extensions)}" if ws.extensions else ""
        logger.info("%s: WebSocket %s opened by %s%s", ws, route.path, _remote(ws), extensions)

        if options.keep_alive_interval is not None and route.keep_alive:
            nursery.start_soon(keep_alive, ws, options.keep_alive_interval, options.keep_alive_timeout)
        server.websocket_opened(ws)
        try:
            if server.closing:
                # Shutdown began during this handshake: say goodbye like to the others.
                await ws.aclose(1001, "server shutting down")
            else:
                # The handler runs in this frame, not in a helper's: a frame is kept as long
                # as the connection, for every connection.
                code, reason = 1000, None
                try:
                    await route.handler(ws)
                except BaseException as exc:
                    if _handler_failed(exc, ws, route):
                        code, reason = 1011, "internal error"
                finally:
                    # Closes with `code` if the handler left the connection open; no-op otherwise.
                    # The reader bounds the close by close_timeout.
                    await ws.aclose(code, reason)
            # Let the reader see the close handshake through (it gives up after
            # close_timeout), then stop everything else.
            await ws.wait_reader_done()
        except trio.Cancelled:
            logger.info("%s: cancelled (by then: %s)", ws, ws.describe_close())
            raise
        finally:
            server.websocket_closed(ws)
        nursery.cancel_scope.cancel()
    logger.info("%s: %s", ws, ws.describe_close(), extra=_close_fields(ws))


def _handler_failed(exc: BaseException, ws: ServerConnection, route: WebSocketRoute) -> bool:
    """Whether what the handler raised is a failure (logged, with its traceback; the peer gets
    1011), not the peer leaving while the handler talked to it (``contain`` re-raises a stop)."""
    failure = contain(
        exc,
        logger,
        "handler %s for %s failed on connection %s from %s",
        getattr(route.handler, "__qualname__", route.handler),
        route.path,
        ws,
        _remote(ws),
        expected=(ConnectionClosed,),
    )
    return failure is not None


def _close_fields(ws: ServerConnection) -> dict[str, object]:
    """The close code and reason for a structured log line (the reason is the peer's, or ours)."""
    closed = ws.closed
    if closed is None:
        return {}
    return {"close_code": closed.code, "close_reason": closed.reason}


def _remote(ws: ServerConnection) -> object:
    """The peer's address for a log line; a peer that has reset the connection has none."""
    try:
        return ws.remote
    except OSError:
        return "a peer that has gone"
