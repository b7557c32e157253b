"""The hub servers the hub benchmarks compare, and the programs that serve the peers.

Every server serves the same hub: ``Echo(message)`` answers its argument,
and ``Broadcast(message)`` sends ``Broadcast`` with the message to every
connected client (the caller too), then answers. ``HUB_SERVERS`` says what
each server is, which transports it has, whether it runs as several workers
on a Redis backplane, and what its clients need:

* ``aiosignalr`` 0.1.1: an asyncio SignalR server on aiohttp, one process
  (it has no backplane). Its WebSocket sends JSON in Binary frames, which
  the official client cannot parse, so the generator reads them as text.
* ``python-socketio`` 5.x on its asyncio server (aiohttp): not SignalR, but
  the nearest Python peer; ``socket.io-client`` drives it. Workers share
  the port (``SO_REUSEPORT``) and its ``AsyncRedisManager`` is the
  backplane. It has no Server-Sent Events.
* ``socket.io``: Node socket.io 4.8 (``socketio_server.js``), the reference
  row: a fast server in another runtime, one process, with the same events
  as python-socketio.
* ``trio_ws``: the conformance hub, ``examples.signalr.testhub:app``
  (issue 11), whose ``TestHub`` has ``Echo`` and ``Broadcast`` as above; its
  workers and backplane are ``python -m trio_ws APP --workers N
  --backplane URL`` (issue 13). ``run.py`` starts it, and says what it waits
  for while trio_ws cannot serve it yet.

The peers run in a virtual environment of their own (``--setup`` makes it
from ``requirements-peers.txt``): ``aiosignalr`` pins ``websockets`` below
17, and the echo benchmark needs 17.

``python -m benchmarks.hubs.servers NAME [--port N] [--reuse-port]
[--backplane URL]`` serves one of them until killed and prints ``listening on
http://127.0.0.1:PORT/PATH`` once it accepts connections. Only the standard
library is imported here before a server is chosen, so any interpreter can
read ``HUB_SERVERS``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import trio_ws

HOST = "127.0.0.1"
TRANSPORTS = ("websockets", "sse", "longpolling")


@dataclass(frozen=True)
class HubServerInfo:
    """One server the benchmark knows: what it speaks, where its hub is, what it can do."""

    name: str
    kind: Literal["signalr", "socketio"]
    path: str
    transports: frozenset[str]
    scale_out: bool  # several workers on a Redis backplane
    interpreter: Literal["project", "peers", "node"]  # the project's venv, the peers' own, or Node
    text_frames: bool = False  # the client must read Binary frames as JSON text
    protocols: frozenset[str] = frozenset({"json"})  # SignalR hub protocols measured
    # Transports it has that the official client cannot use against it, and why.
    unusable: Mapping[str, str] = field(default_factory=dict)


HUB_SERVERS = {
    "aiosignalr": HubServerInfo(
        "aiosignalr",
        "signalr",
        "/hub",
        frozenset(TRANSPORTS),
        False,
        "peers",
        text_frames=True,
        unusable={
            "longpolling": "aiosignalr holds the first long poll until it times out (15 s), then drops "
            "the connection as idle, so the official client's next send gets 404"
        },
    ),
    "python-socketio": HubServerInfo(
        "python-socketio", "socketio", "/socket.io/", frozenset({"websockets", "longpolling"}), True, "peers"
    ),
    "socket.io": HubServerInfo(
        "socket.io", "socketio", "/socket.io/", frozenset({"websockets", "longpolling"}), False, "node"
    ),
    "trio_ws": HubServerInfo(
        "trio_ws",
        "signalr",
        "/testhub",
        frozenset(TRANSPORTS),
        True,
        "project",
        protocols=frozenset({"json", "messagepack"}),
    ),
}


def _announce(port: int, path: str) -> None:
    print(f"listening on http://{HOST}:{port}{path}", flush=True)


async def _aiosignalr(port: int, reuse_port: bool, backplane: str | None) -> None:
    from aiosignalr.server import Hub, SignalRServer

    class BenchHub(Hub):  # type: ignore[misc]  # aiosignalr ships no type information
        # aiosignalr answers a call with a result only when the method's return is annotated.
        async def echo(self, message: str) -> str:
            return message

        async def broadcast(self, message: str) -> None:
            await self.clients.all_.send("Broadcast", message)

    if backplane or reuse_port:
        raise SystemExit("aiosignalr has no backplane: it runs as one process")
    server = SignalRServer(BenchHub)
    _, bound = await server.serve(HOST, port, path=HUB_SERVERS["aiosignalr"].path)
    _announce(bound, HUB_SERVERS["aiosignalr"].path)
    await asyncio.Event().wait()


async def _python_socketio(port: int, reuse_port: bool, backplane: str | None) -> None:
    import socketio
    from aiohttp import web

    manager = socketio.AsyncRedisManager(backplane) if backplane else None
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)

    async def echo(sid: str, message: str) -> str:
        return message  # the answer is the client's acknowledgement

    async def broadcast(sid: str, message: str) -> None:
        await sio.emit("broadcast", message)

    sio.on("echo", echo)
    sio.on("broadcast", broadcast)

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, reuse_port=reuse_port or None)
    await site.start()
    _announce(runner.addresses[0][1], HUB_SERVERS["python-socketio"].path)
    await asyncio.Event().wait()


async def _trio_ws(port: int, reuse_port: bool, backplane: str | None, metrics: bool = False) -> None:

    import trio

    import trio_ws

    if backplane or reuse_port:
        raise SystemExit(
            "trio_ws's workers and backplane are python -m trio_ws APP --workers N --backplane URL"
        )
    app = trio_ws_app()
    if app is None:
        raise SystemExit(f"trio_ws is {TRIO_WS_WAITING}")
    # No connection limits: the broadcast scenario opens more than the default 1,000, and over Long
    # Polling each client also keeps an idle connection for its POSTs between them, more than the
    # default 1,000 idle ones (closing them makes the official client's fetch fail).
    options = trio_ws.Options(max_connections=None, max_idle_connections=None, metrics=metrics)
    async with trio.open_nursery() as nursery:
        server: trio_ws.Server = await nursery.start(partial(trio_ws.serve, app, HOST, port, options=options))
        _announce(server.port, HUB_SERVERS["trio_ws"].path)


TRIO_WS_WAITING = (
    "waiting for the HTTP side of hubs (issue 11): examples.signalr.testhub has no `app` yet, the "
    "trio_ws.App that serves TestHub at /testhub (POST /testhub/negotiate, the WebSocket at /testhub?id=)"
)
TRIO_WS_SCALE_OUT_WAITING = (
    "waiting for issue 13: python -m trio_ws takes no APP, --workers or --backplane yet "
    "(python -m trio_ws examples.signalr.testhub:app --workers N --backplane redis://...)"
)


def trio_ws_app() -> trio_ws.App | None:
    """The conformance hub's ``trio_ws.App``, or ``None`` while trio_ws cannot serve hubs over HTTP."""
    import trio_ws
    from examples.signalr import testhub

    app = vars(testhub).get("app")
    return app if isinstance(app, trio_ws.App) else None


PROGRAMS: dict[str, tuple[str, Callable[[int, bool, str | None], Coroutine[Any, Any, None]]]] = {
    # name: (event loop, the server's coroutine function)
    "aiosignalr": ("asyncio", _aiosignalr),
    "python-socketio": ("asyncio", _python_socketio),
    "trio_ws": ("trio", _trio_ws),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("name", choices=PROGRAMS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reuse-port", action="store_true", help="share the port with other workers")
    parser.add_argument("--backplane", metavar="URL", help="a Redis URL: this server is one of several")
    parser.add_argument("--metrics", action="store_true", help="trio_ws only: serve GET /metrics")
    args = parser.parse_args()
    if args.metrics and args.name != "trio_ws":
        parser.error("--metrics applies to trio_ws only")
    logging.basicConfig(level=logging.WARNING)
    from ..harness import raise_file_limit

    raise_file_limit()
    loop, serve = PROGRAMS[args.name]
    with contextlib.suppress(KeyboardInterrupt):
        if loop == "trio":
            import trio

            if args.metrics:
                trio.run(partial(_trio_ws, metrics=True), args.port, args.reuse_port, args.backplane)
            else:
                trio.run(serve, args.port, args.reuse_port, args.backplane)
        else:
            asyncio.run(serve(args.port, args.reuse_port, args.backplane))


if __name__ == "__main__":
    main()
