"""A chat room: everyone hears every message, and one slow reader can't stall the room.

What it teaches:

* Fan-out through memory channels. Each member has a bounded channel of its
  own, its send queue. The room puts every message into every queue with
  ``send_nowait``, which never waits, so the room moves at the pace of the
  person typing, not of the slowest reader.
* What a full queue means: that member has fallen too far behind. The room
  drops them, and their connection is closed with code 1008 and the reason
  "too slow: ...", instead of the room waiting for them or silently losing
  their messages.
* Two tasks per connection, in one nursery: the handler reads what the
  member says, and a writer task sends the member's queue to the socket.
  Whichever stops first cancels the nursery, and with it the other one:
  the reading stops when the member leaves, the writing when the room drops
  them (and then the handler closes the connection with the reason).
  Neither task can outlive the connection.
* ``with room.joined(name)`` announces the join, and its ``finally``
  announces the leave, however the connection ends: closed, dropped,
  failed, or cancelled on Ctrl-C.

Run it with ``python examples/chat.py``, open http://127.0.0.1:5000/ in two
browser tabs, and talk to yourself.
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import trio

import trio_ws

PAGE = Path(__file__).parent / "chat"  # index.html, chat.js, chat.css
QUEUE_SIZE = 32  # how many messages a member may fall behind before being dropped
MAX_TEXT = 500  # characters kept of one chat message


@dataclass
class Member:
    name: str
    queue: trio.MemorySendChannel[str]  # the room's end of this member's send queue
    dropped_because: str | None = None


class Room:
    """The members, and a ``broadcast`` that never waits for any of them."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.queue_size = queue_size
        self.members: dict[str, Member] = {}

    @contextmanager
    def joined(self, wanted_name: str) -> Iterator[tuple[Member, trio.MemoryReceiveChannel[str]]]:
        """Be a member for the duration of the block; yields the member and its send queue."""
        name = self._unique(wanted_name)
        send, receive = trio.open_memory_channel[str](self.queue_size)
        with send, receive:
            member = Member(name, send)
            self.broadcast({"type": "join", "name": name})
            self.members[name] = member
            send.send_nowait(json.dumps({"type": "welcome", "name": name, "members": list(self.members)}))
            try:
                yield member, receive
            finally:
                if self.members.get(name) is member:
                    del self.members[name]
                self.broadcast({"type": "leave", "name": name, "reason": member.dropped_because or "left"})

    def broadcast(self, event: dict[str, object]) -> None:
        """Queue ``event`` for every member; drop any member whose queue is full."""
        text = json.dumps(event)
        for member in list(self.members.values()):
            try:
                member.queue.send_nowait(text)
            except trio.WouldBlock:
                self._drop(member, f"too slow: fell {self.queue_size} messages behind")

    def _drop(self, member: Member, reason: str) -> None:
        member.dropped_because = reason
        del self.members[member.name]
        member.queue.close()  # the member's writer sees the end of its queue

    def _unique(self, wanted: str) -> str:
        base = " ".join(wanted.split())[:20] or "guest"
        name, n = base, 1
        while name in self.members:
            n += 1
            name = f"{base} ({n})"
        return name


def chat_app(room: Room) -> trio_ws.App:
    """The page at ``/`` and the room at ``/ws?name=...``."""
    app = trio_ws.App()
    app.add_static("/", (PAGE / "index.html").read_bytes())
    app.add_static_directory("/static", PAGE)

    @app.websocket("/ws")
    async def chat(ws: trio_ws.WebSocketConnection) -> None:
        query = parse_qs(urlsplit(ws.path or "").query)  # ws.path is "/ws?name=..."
        with room.joined(query.get("name", [""])[0]) as (member, queue):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write, ws, member, queue, nursery.cancel_scope)
                await read(ws, room, member)  # returns when the connection closes
                nursery.cancel_scope.cancel()  # so the writer stops too
            if member.dropped_because is not None:
                # Even the Close may wait on a slow reader; after 10 s TCP is closed regardless.
                with trio.move_on_after(10):
                    await ws.aclose(1008, member.dropped_because)

    return app


async def read(ws: trio_ws.WebSocketConnection, room: Room, member: Member) -> None:
    """Broadcast what the member says until their connection closes."""
    while True:
        try:
            text = await ws.get_message()
        except trio_ws.ConnectionClosed:
            return
        if isinstance(text, bytes):
            await ws.aclose(1003, "chat messages are text")
            return
        room.broadcast({"type": "message", "name": member.name, "text": text[:MAX_TEXT]})


async def write(
    ws: trio_ws.WebSocketConnection,
    member: Member,
    queue: trio.MemoryReceiveChannel[str],
    done: trio.CancelScope,
) -> None:
    """Send the member's queue to them until the room drops them; then cancel ``done``."""
    with suppress(trio_ws.ConnectionClosed):  # they left; read() sees it too
        async for text in queue:  # ends when the room closes the queue
            if member.dropped_because is not None:
                break  # don't spend more time on someone who can't keep up
            await ws.send_message(text)
    done.cancel()  # stops read(), so the handler can close the connection


async def main(host: str, port: int) -> None:
    app = chat_app(Room())
    with trio.open_signal_receiver(signal.SIGINT) as ctrl_c:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(trio_ws.serve, app, host, port))
            print(f"chat room at {server.url}", flush=True)
            print(f"WebSocket at {server.ws_url('/ws')}", flush=True)
            async for _ in ctrl_c:
                await server.aclose()  # close 1001 to everyone; their handlers announce the leaves
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
