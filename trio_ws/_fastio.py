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
``WebSocketConnection._send``, reproduced from trio-websocket 0.12 except
for the ``*_nowait`` step, and the hand-off at the end of
``_handle_message_event`` (``_deliver``, which ``_websocket.py``'s reader
calls with each whole message).
"""

from __future__ import annotations

import logging

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import Event

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

    async def _deliver(self, message: str | bytes) -> bool:
        """Hand a whole received message to the handler's queue; False if the handler closed it.

        As in trio-websocket, a closed queue means the handler closed the connection.
        """
        try:
            self._send_channel.send_nowait(message)
        except trio.WouldBlock:
            try:
                await self._send_channel.send(message)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True
