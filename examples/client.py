"""A client that keeps talking: it reconnects, with exponential backoff and jitter, when the server goes away.

What it teaches:

* ``trio_websocket.open_websocket_url`` is an ``async with`` block: the
  connection and its reader task live inside it, and leaving the block
  closes the connection (code 1000) and ends the task.
* Reconnecting is a loop around that whole block. When the server restarts,
  the block ends with ``ConnectionClosed`` (or the next connect fails with
  ``OSError`` or ``HandshakeError``); the client waits, then tries again.
* Exponential backoff with full jitter: after each failed attempt the
  longest wait doubles, up to a cap, and the client waits a random part of
  it, so a thousand clients don't all come back in the same instant after a
  restart. One successful connection resets it.
* Two tasks per connection, one sending on a timer and one printing the
  replies; and a clean stop on Ctrl-C that asks (an ``Event``) instead of
  cancelling mid-sentence, so the server still gets a close 1000.

Run ``python examples/echo.py`` in one terminal and ``python
examples/client.py`` in another; stop and restart the server and watch the
client come back.
"""

from __future__ import annotations

import argparse
import random
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import trio
import trio_websocket


@dataclass(frozen=True)
class Backoff:
    """How long to wait before reconnecting: ``first``, doubling to ``cap``, with full jitter."""

    first: float = 0.5
    factor: float = 2.0
    cap: float = 30.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after ``failures`` failed attempts in a row (0 for the first retry)."""
        return rng.uniform(0, min(self.cap, self.first * self.factor**failures))


class Client:
    """Sends ``message 1``, ``message 2``, ... every ``interval`` seconds and reports every reply."""

    def __init__(
        self,
        url: str,
        *,
        interval: float = 1.0,
        backoff: Backoff = Backoff(),
        rng: random.Random | None = None,
        report: Callable[[str], object] = print,
    ) -> None:
        self.url = url
        self.interval = interval
        self.backoff = backoff
        self.rng = rng or random.Random()
        self.report = report
        self.sent = 0
        self.replies = 0
        self._stop = trio.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to close the connection cleanly and return."""
        self._stop.set()

    async def run(self, replies: int | None = None) -> None:
        """Talk to the server, reconnecting as needed, until ``replies`` replies or :meth:`stop`."""
        failures = 0
        while not self._stop.is_set() and self.replies != replies:
            try:
                async with trio_websocket.open_websocket_url(self.url) as ws:
                    self.report(f"connected to {self.url}")
                    failures = 0
                    lost = await self._converse(ws, replies)
                # Leaving the block closed the connection (with 1000, unless the server closed it).
            except (OSError, trio_websocket.HandshakeError) as exc:
                cause = exc.__cause__ or exc
                self.report(f"cannot connect: {str(cause) or type(cause).__name__}")
            else:
                if lost is None:
                    continue  # finished or stopped: the loop condition says which
                self.report(f"connection lost: {lost.code} {lost.name} ({lost.reason or 'no reason'})")
            delay = self.backoff.delay(failures, self.rng)
            failures += 1
            self.report(f"reconnecting in {delay:.2f} s")
            with trio.move_on_after(delay):
                await self._stop.wait()  # a stop request cuts the wait short
        self.report("closed")

    async def _converse(
        self, ws: trio_websocket.WebSocketConnection, replies: int | None
    ) -> trio_websocket.CloseReason | None:
        """Send and receive until ``replies`` replies or a stop request; or return why the server left."""
        lost = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_every_interval, ws)
            nursery.start_soon(self._cancel_on_stop, nursery.cancel_scope)
            try:
                while self.replies != replies:
                    message = await ws.get_message()
                    self.replies += 1
                    self.report(f"received: {message!r}")
            except trio_websocket.ConnectionClosed as exc:
                lost = exc.reason
            nursery.cancel_scope.cancel()  # stop the sender and the stop watcher
        return lost

    async def _send_every_interval(self, ws: trio_websocket.WebSocketConnection) -> None:
        try:
            while True:
                self.sent += 1
                await ws.send_message(f"message {self.sent}")
                await trio.sleep(self.interval)
        except trio_websocket.ConnectionClosed:
            pass  # the receiving loop sees it too, and reports it

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()


async def main(url: str, replies: int | None, interval: float) -> None:
    client = Client(url, interval=interval)
    with trio.open_signal_receiver(signal.SIGINT) as ctrl_c:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_ctrl_c, ctrl_c, client)
            await client.run(replies)
            nursery.cancel_scope.cancel()  # finished: stop waiting for Ctrl-C


async def _stop_on_ctrl_c(ctrl_c: AsyncIterator[int], client: Client) -> None:
    async for _ in ctrl_c:
        client.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:5000/ws")
    parser.add_argument("--count", type=int, help="stop after this many replies (default: never)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between messages")
    args = parser.parse_args()
    trio.run(main, args.url, args.count, args.interval)
