"""Server push: one producer task feeds a live chart on every open page.

What it teaches:

* A producer task beside the server, in the same nursery as ``serve()``.
  It lives exactly as long as the server: on Ctrl-C the server closes
  gracefully, then cancelling the nursery ends the producer, which would
  otherwise run forever.
* Publish and subscribe through memory channels. Each page subscribes with
  a channel that holds one set of figures; the producer publishes with
  ``send_nowait``, so a page that hasn't taken the last figures simply
  misses these. In the chat room a lost message is wrong, so a slow member
  is dropped; here a late figure is worthless, so the figure is dropped and
  the page stays.
* Two tasks per connection: one pushes figures to the page, the other
  reads what the page sends (counted as messages per second). Whichever
  ends first cancels the other, so neither outlives the connection.
* ``trio.sleep_until`` on a fixed schedule keeps the ticks regular however
  long publishing takes; the tests run it with ``autojump_clock``.

Run it with ``python examples/dashboard.py`` and open http://127.0.0.1:5000/
in a few tabs; press "Send 100 messages" to see the rate jump.
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import NoReturn

import trio

import trio_ws

PAGE = Path(__file__).parent / "dashboard"  # index.html, dashboard.js, dashboard.css


class Hub:
    """The pages subscribed to figures, and a count of the messages they sent."""

    def __init__(self) -> None:
        self.messages_received = 0
        self._subscribers: set[trio.MemorySendChannel[str]] = set()

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[str]]:
        """Receive figures for the duration of the block."""
        send, receive = trio.open_memory_channel[str](1)
        with send, receive:
            self._subscribers.add(send)
            try:
                yield receive
            finally:
                self._subscribers.discard(send)

    def publish(self, figures: dict[str, float]) -> None:
        """Offer ``figures`` to every subscriber; one still busy with the last ones misses these."""
        text = json.dumps(figures)
        for channel in self._subscribers:
            with suppress(trio.WouldBlock):
                channel.send_nowait(text)


async def produce(server: trio_ws.Server, hub: Hub, period: float = 1.0) -> NoReturn:
    """Every ``period`` seconds, publish the open connections and the messages per second."""
    start = tick = trio.current_time()
    counted = hub.messages_received
    while True:
        tick += period
        await trio.sleep_until(tick)
        total = hub.messages_received
        hub.publish(
            {
                "time": round(tick - start, 3),
                "connections": server.statistics().open_websockets,
                "messages_per_second": (total - counted) / period,
                "messages": total,
            }
        )
        counted = total


def dashboard_app(hub: Hub) -> trio_ws.App:
    """The page at ``/`` and the figures at ``/ws``."""
    app = trio_ws.App()
    app.add_static("/", (PAGE / "index.html").read_bytes())
    app.add_static_directory("/static", PAGE)

    @app.websocket("/ws")
    async def subscriber(ws: trio_ws.WebSocketConnection) -> None:
        with hub.subscribe() as figures:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(count_messages, ws, hub, nursery.cancel_scope)
                await push(ws, figures)  # returns if the page goes away while we send
                nursery.cancel_scope.cancel()

    return app


async def push(ws: trio_ws.WebSocketConnection, figures: trio.MemoryReceiveChannel[str]) -> None:
    """Send each set of figures to the page, until the connection closes."""
    with suppress(trio_ws.ConnectionClosed):
        async for text in figures:
            await ws.send_message(text)


async def count_messages(ws: trio_ws.WebSocketConnection, hub: Hub, done: trio.CancelScope) -> None:
    """Count what the page sends; when it closes, cancel ``done`` so the pushing stops too."""
    with suppress(trio_ws.ConnectionClosed):  # a close other than a normal one
        async for _ in ws:
            hub.messages_received += 1
    done.cancel()


async def main(host: str, port: int, period: float) -> None:
    hub = Hub()
    with trio.open_signal_receiver(signal.SIGINT) as ctrl_c:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(trio_ws.serve, dashboard_app(hub), host, port))
            nursery.start_soon(produce, server, hub, period)
            print(f"dashboard at {server.url}", flush=True)
            print(f"WebSocket at {server.ws_url('/ws')}", flush=True)
            async for _ in ctrl_c:
                await server.aclose()  # close 1001 to every page, wait for the handlers
                nursery.cancel_scope.cancel()  # then stop the producer, which never returns
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--period", type=float, default=1.0, help="seconds between updates")
    args = parser.parse_args()
    trio.run(main, args.host, args.port, args.period)
