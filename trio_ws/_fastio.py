"""Fewer trio schedule points per message in trio-websocket's reader and writer.

trio-websocket's reader hands each message to the handler with
``await send_channel.send(message)``, and every write takes its stream lock
with ``async with lock``. Each of those is a schedule point: the task goes
back through trio's run queue even when nothing was waiting, and on an echo
server that is two of the five trips each message makes through the
scheduler. Here both take the lock or the queue slot at once when it is
free (``*_nowait``) and wait the usual way only when it is not.

Why this changes nothing a user can see: the reader still checkpoints in
``receive_some`` on every read, and ``send_message`` still checkpoints in
``send_all``, so both stay cancel points and schedule points; the order of
messages, the lock's FIFO fairness, the errors and trio-websocket's debug
log lines are as before.

What it replaces (check on a trio-websocket upgrade; the tests cover both):
``WebSocketConnection._send`` and ``_handle_message_event``, each
reproduced from trio-websocket 0.12 except for the ``*_nowait`` step.
"""

from __future__ import annotations

import contextlib
import logging

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import BytesMessage, Event, TextMessage

__all__ = ["FewerCheckpoints"]

# trio-websocket's own logger, so its debug lines read as before.
_logger = logging.getLogger("trio-websocket")


class FewerCheckpoints(WebSocketConnection):
    """A ``WebSocketConnection`` whose internal hand-offs skip the scheduler when they need not wait."""

    async def _send(self, event: Event) -> None:
        data = self._wsproto.send(event)
        lock = self._stream_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if _logger.isEnabledFor(logging.DEBUG):
                _logger.debug("%s sending %d bytes", self, len(data))
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._abort_web_socket()
                assert self._close_reason is not None
                raise ConnectionClosed(self._close_reason) from None
        finally:
            lock.release()

    async def _handle_message_event(self, event: TextMessage | BytesMessage) -> None:
        data = event.data
        if (
            not event.message_finished
            or self._message_parts
            or len(data) > self._max_message_size
            or not isinstance(data, str | bytes)
        ):
            await super()._handle_message_event(event)
            return
        # A whole message in one event: what trio-websocket would join is `data` itself.
        # As in trio-websocket, a closed queue means the handler closed the connection.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            try:
                self._send_channel.send_nowait(data)
            except trio.WouldBlock:
                await self._send_channel.send(data)
