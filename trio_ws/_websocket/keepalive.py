"""The keep-alive task: a ping every interval, and a dead peer closed after the timeout.

Why: proxies and NAT boxes drop TCP connections that carry nothing for a
while, and a peer that vanished without a FIN (a laptop lid, a pulled cable)
leaves a half-open socket that would otherwise live forever. One ping frame
per interval fixes the first; a deadline on its pong fixes the second.

The task runs in the connection's nursery beside the reader and the handler,
so it ends when they do and never outlives its connection. Nor does it end
before its connection: once a Close has gone either way there is no pong to
wait for, and the reader bounds the rest by ``close_timeout`` (see
``_websocket/connection.py``), so the task stays until the connection has ended.
"""

from __future__ import annotations

import logging

import trio
from trio_websocket import ConnectionClosed

from .._options import seconds
from .connection import ServerConnection

__all__ = ["keep_alive"]

logger = logging.getLogger("trio_ws.keepalive")


async def keep_alive(ws: ServerConnection, interval: float, pong_timeout: float | None) -> None:
    """Ping ``ws`` every ``interval`` seconds; close it with 1011 if a pong is ``pong_timeout`` late.

    Returns when the connection has ended, whichever side closed it.
    """
    while not ws.closing:
        await _sleep(interval)
        with trio.move_on_after(seconds(pong_timeout)) as deadline:
            try:
                await ws.ping()
            except ConnectionClosed:
                break
        if deadline.cancelled_caught:
            logger.info("%s: no pong within %s s, closing the connection", ws, pong_timeout)
            await ws.close_now(1011, "keep-alive timeout")
            break
    await ws.wait_reader_done()


async def _sleep(seconds: float) -> None:
    """``trio.sleep``, in two coroutine frames instead of five.

    Every idle connection spends its life in here, so the three frames
    ``trio.sleep`` -> ``sleep_until`` -> ``sleep_forever`` would hold cost
    memory on each (about half a kilobyte, measured with tracemalloc).
    """
    with trio.move_on_after(seconds):
        await trio.lowlevel.wait_task_rescheduled(_abort)


def _abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED
