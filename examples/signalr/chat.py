"""A chat with rooms and presence: a SignalR hub and a page that uses the official browser client.

What it teaches: a typed ``Hub`` whose methods the page calls (``Join``, ``Send``) and which
calls the page back through its client protocol, ``ChatClient`` (``Message``, ``Presence``), so
mypy checks both; a page that calls the hub through a contract generated from those type hints
(``chat/contract.ts``, compiled to ``chat/contract.js`` by ``build_contract.py``); groups as
rooms; presence kept in the hub and sent to the room whenever someone comes or goes,
``on_disconnected`` included; and ``map_hub``, which serves the hub beside the page on one
port. Every hub connection is a nursery in the hub's service, so a page that leaves takes its
calls with it. On Ctrl-C every page is told to reconnect (Close with ``allowReconnect``) before
the server stops, and the page's ``withAutomaticReconnect`` brings it back, showing
"reconnecting" meanwhile.

The page uses ``@microsoft/signalr`` from npm: run ``npm ci`` in ``examples/signalr`` once
(the README's install command does), then ``python examples/signalr/chat.py`` and open
http://127.0.0.1:5000 in two tabs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import trio

import trio_ws
from trio_ws.signalr import DisconnectReason, Hub, HubError, map_hub

HERE = Path(__file__).resolve().parent
PAGE = HERE / "chat"
BUNDLE = HERE / "node_modules" / "@microsoft" / "signalr" / "dist" / "browser" / "signalr.min.js"


@dataclass
class Room:
    """Who is in a room: connection id to name."""

    members: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.members.values(), key=str.casefold)


class ChatClient(Protocol):
    """What the hub calls on the page."""

    async def message(self, name: str, text: str) -> None:
        """``name`` said ``text`` in the page's room."""

    async def presence(self, room: str, names: list[str]) -> None:
        """Who is in ``room`` now, sorted; sent whenever someone comes or goes."""


class ChatHub(Hub[ChatClient]):
    """Rooms are groups; the hub keeps who is where, so it can tell a room who is in it."""

    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}

    async def join(self, room: str, name: str) -> None:
        """Join ``room`` as ``name`` (leaving the room this connection was in, if any)."""
        room, name = room.strip()[:20], name.strip()[:20]
        if not room or not name:
            raise HubError("a room and a name, please")
        me = self.context.connection_id
        await self._leave(me)
        await self.groups.add(me, room)
        self.rooms.setdefault(room, Room()).members[me] = name
        self.context.items["room"] = room
        await self._tell_presence(room)

    async def send(self, text: str) -> None:
        """Say ``text`` to everyone in this connection's room (the sender too)."""
        room = self.context.items.get("room")
        if room is None:
            raise HubError("join a room first")
        name = self.rooms[room].members[self.context.connection_id]
        await self.clients.group(room).message(name, text[:500])

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        await self._leave(self.context.connection_id)

    async def _leave(self, connection_id: str) -> None:
        room = self.context.items.pop("room", None)
        if room is None:
            return
        await self.groups.remove(connection_id, room)
        members = self.rooms[room].members
        members.pop(connection_id, None)
        if not members:
            del self.rooms[room]
        await self._tell_presence(room)

    async def _tell_presence(self, room: str) -> None:
        names = self.rooms[room].names() if room in self.rooms else []
        await self.clients.group(room).presence(room, names)


def build_app(*, auth: trio_ws.AuthHook | None = None) -> trio_ws.App:
    """The page at ``/``, its files and the SignalR bundle under ``/static/``, the hub at ``/chat``.

    ``auth`` guards the hub (negotiate and every transport request), for example
    ``trio_ws.bearer_auth(...)``; the page and its files stay public. The tests use it to stand
    in for a proxy that refuses WebSockets, and watch the page fall back.
    """
    if not BUNDLE.is_file():
        raise SystemExit(f"the page needs @microsoft/signalr: run `npm ci` in {HERE} first")
    app = trio_ws.App()
    app.add_static("/", (PAGE / "index.html").read_bytes(), "text/html; charset=utf-8")
    app.add_static_directory("/static", PAGE)
    app.add_static("/static/signalr.js", BUNDLE.read_bytes(), "text/javascript; charset=utf-8")
    map_hub(app, "/chat", ChatHub(), auth=auth)
    return app


async def main(host: str, port: int) -> None:
    app = build_app()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(trio_ws.serve, app, host, port))
            print(f"hub chat at {server.url} (hub at {server.url}chat)", flush=True)
            async for _ in signals:
                await server.aclose()  # pages hear "reconnect", then the server stops
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    arguments = parser.parse_args(sys.argv[1:])
    trio.run(main, arguments.host, arguments.port)
