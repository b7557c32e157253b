"""The echo servers the benchmark compares, each run in its own process.

``python -m benchmarks.servers NAME [--port N] [--option KEY=VALUE ...]`` serves
until killed and prints ``listening on ws://127.0.0.1:PORT/ws`` (``tcp://``
for the raw TCP echo) once it accepts connections. Every WebSocket server
takes messages of up to ``MAX_MESSAGE_SIZE`` bytes and sends each one back as
it came; none logs below WARNING.

* ``trio_ws``: ``trio_ws.echo_app()``, the app ``python -m trio_ws`` serves,
  with default ``Options`` except ``max_connections`` (off, for the idle
  scenario's thousands); ``--option`` overrides one, for experiments.
* ``trio-websocket``: the bare baseline, ``serve_websocket`` with a
  ``get_message``/``send_message`` loop.
* ``websockets-asyncio`` and ``websockets-trio``: the ``websockets``
  library's two APIs, with their documented echo handler.
* ``raw-trio-tcp``: a trio TCP echo with no WebSocket framing at all, the
  floor for Python on trio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from .harness import raise_file_limit

MAX_MESSAGE_SIZE = 2**20
HOST = "127.0.0.1"


def _announce(scheme: str, port: int) -> None:
    path = "/ws" if scheme == "ws" else "/"
    print(f"listening on {scheme}://{HOST}:{port}{path}", flush=True)


async def _trio_ws(port: int, options: dict[str, str]) -> None:
    import trio_ws

    fields = {f.name: f for f in dataclasses.fields(trio_ws.Options)}
    # No connection limit: the idle scenario opens thousands, more than the default 1,000.
    values: dict[str, Any] = {"max_message_size": MAX_MESSAGE_SIZE, "max_connections": None}
    for key, text in options.items():
        if key not in fields:
            raise SystemExit(f"unknown trio_ws option {key!r}; choose from {', '.join(fields)}")
        values[key] = _option_value(text)
    async with trio.open_nursery() as nursery:
        started: trio_ws.Server = await nursery.start(
            partial(trio_ws.serve, trio_ws.echo_app(), HOST, port, options=trio_ws.Options(**values))
        )
        _announce("ws", started.port)


def _option_value(text: str) -> Any:
    """An ``--option`` value: ``none``, ``true`` or ``false``, or a number."""
    words = {"none": None, "true": True, "false": False}
    if text.lower() in words:
        return words[text.lower()]
    return float(text) if "." in text else int(text)


async def _trio_websocket(port: int, options: dict[str, str]) -> None:
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        # A ConnectionClosed escaping the handler would end serve_websocket, so catch it here.
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            return

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve_websocket, handler, HOST, port, ssl_context=None, max_message_size=MAX_MESSAGE_SIZE)
        )
        _announce("ws", server.port)


async def _websockets_trio(port: int, options: dict[str, str]) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.trio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve, handler, port, host=HOST, max_size=MAX_MESSAGE_SIZE))
        _announce("ws", server.listeners[0].socket.getsockname()[1])


async def _websockets_asyncio(port: int, options: dict[str, str]) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)

    async with serve(handler, HOST, port, max_size=MAX_MESSAGE_SIZE) as server:
        _announce("ws", next(iter(server.sockets)).getsockname()[1])
        await server.serve_forever()


async def _raw_trio_tcp(port: int, options: dict[str, str]) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, port, host=HOST))
        _announce("tcp", listeners[0].socket.getsockname()[1])


SERVERS: dict[str, tuple[str, Callable[[int, dict[str, str]], Any]]] = {
    # name: (event loop, coroutine function)
    "trio-websocket": ("trio", _trio_websocket),
    "trio_ws": ("trio", _trio_ws),
    "websockets-trio": ("trio", _websockets_trio),
    "websockets-asyncio": ("asyncio", _websockets_asyncio),
    "raw-trio-tcp": ("trio", _raw_trio_tcp),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("name", choices=SERVERS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a trio_ws Options field"
    )
    parser.add_argument("--profile", metavar="FILE", help="write cProfile stats here on SIGTERM")
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.option)
    if options and args.name != "trio_ws":
        parser.error("--option applies to trio_ws only")
    logging.basicConfig(level=logging.WARNING)
    raise_file_limit()
    loop, serve = SERVERS[args.name]
    run: Callable[[], object]
    if loop == "trio":
        run = partial(trio.run, serve, args.port, options)
    else:
        run = partial(asyncio.run, serve(args.port, options))
    if args.profile:
        _run_profiled(run, args.profile)
    else:
        with contextlib.suppress(KeyboardInterrupt):
            run()


def _run_profiled(run: Callable[[], object], path: str) -> None:
    """Run under cProfile until SIGTERM or SIGINT, then write the stats to ``path``."""
    import cProfile
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(run)
    except KeyboardInterrupt:
        pass
    finally:
        profiler.dump_stats(path)
        print(f"profile written to {path} (pid {os.getpid()})", flush=True)


if __name__ == "__main__":
    main()
