"""The smallest trio_ws program: an echo endpoint, as a library user writes it.

What it teaches: ``await nursery.start(serve, ...)`` returns only once the
server accepts connections, so the next line can safely print its URL; each
connection's handler is one plain ``async def`` that returns when the client
leaves; and ``server.aclose()`` on Ctrl-C says goodbye (close 1001) to every
client before ``serve()`` returns and the nursery closes.

Run it with ``python examples/echo.py`` and connect to ws://127.0.0.1:5000/ws.
"""

import argparse
import signal
from functools import partial

import trio

import trio_ws

app = trio_ws.App()


@app.websocket("/ws")
async def echo(ws: trio_ws.WebSocketConnection) -> None:
    # The loop ends when the client closes (the server answers its Close for us).
    async for message in ws:
        await ws.send_message(message)


async def main(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as ctrl_c:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(trio_ws.serve, app, host, port))
            print(f"echo endpoint at {server.ws_url('/ws')}", flush=True)
            async for _ in ctrl_c:
                await server.aclose()  # serve() returns, and so the nursery can close
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
