"""examples/chat.py: broadcast, join and leave announcements, and a slow member dropped with 1008."""

from __future__ import annotations

import json
import urllib.request

import pytest
import trio
import trio.testing
from websockets.sync.client import connect

import trio_ws
from trio_ws.testing import open_memory_server

from ..helpers import close_of
from .programs import load_example, running_example, stop_with_ctrl_c

chat = load_example("chat")


async def receive(ws: trio_ws.WebSocketConnection) -> dict[str, object]:
    event: dict[str, object] = json.loads(await ws.get_message())
    return event


async def test_two_members_hear_each_other_and_the_joins_and_leaves() -> None:
    """Ann and Bob are welcomed, each message reaches both, and Ann hears Bob join and leave."""
    room = chat.Room()
    async with open_memory_server(chat.chat_app(room)) as served, served.connect("/ws?name=Ann") as ann:
        assert await receive(ann) == {"type": "welcome", "name": "Ann", "members": ["Ann"]}
        async with served.connect("/ws?name=Bob") as bob:
            assert await receive(bob) == {"type": "welcome", "name": "Bob", "members": ["Ann", "Bob"]}
            assert await receive(ann) == {"type": "join", "name": "Bob"}
            await bob.send_message("hello, Ann")
            await ann.send_message("hi Bob")
            for ws in (ann, bob):
                assert await receive(ws) == {"type": "message", "name": "Bob", "text": "hello, Ann"}
                assert await receive(ws) == {"type": "message", "name": "Ann", "text": "hi Bob"}
        assert await receive(ann) == {"type": "leave", "name": "Bob", "reason": "left"}
        assert list(room.members) == ["Ann"]
    assert room.members == {}


async def test_a_slow_member_is_dropped_with_1008_and_the_room_goes_on() -> None:
    """A member who stops reading is closed with 1008 "too slow"; the others get every message meanwhile."""
    room = chat.Room(queue_size=4)
    async with open_memory_server(chat.chat_app(room)) as served, served.connect("/ws?name=Ann") as ann:
        await receive(ann)  # welcome
        # Lockstep streams: the server's send waits until Slow's client reads, and it won't.
        async with served.connect("/ws?name=Slow", stream_pair=trio.testing.lockstep_stream_pair) as slow:
            assert await receive(ann) == {"type": "join", "name": "Slow"}
            for n in range(20):
                await ann.send_message(f"message {n}")
                # Ann hears herself at once: the room never waits for Slow.
                assert await receive(ann) == {"type": "message", "name": "Ann", "text": f"message {n}"}
            assert "Slow" not in room.members
            # Now Slow reads: what was already sent, then the close and its reason.
            events = []
            with pytest.raises(trio_ws.ConnectionClosed) as closed:
                while True:
                    events.append(await receive(slow))
            assert close_of(closed.value) == (1008, "too slow: fell 4 messages behind")
            # Only what was on its way: message 0 waited in the client, message 1 in the
            # socket. The four in the server's queue for Slow were dropped with it.
            assert events[0]["type"] == "welcome"
            assert [e["text"] for e in events[1:]] == ["message 0", "message 1"]
        assert await receive(ann) == {
            "type": "leave",
            "name": "Slow",
            "reason": "too slow: fell 4 messages behind",
        }
        await ann.send_message("still here")
        assert await receive(ann) == {"type": "message", "name": "Ann", "text": "still here"}


async def test_names_are_made_unique_and_binary_is_refused() -> None:
    """A second "Ann" becomes "Ann (2)"; no name means "guest"; a binary message closes with 1003."""
    async with (
        open_memory_server(chat.chat_app(chat.Room())) as served,
        served.connect("/ws?name=Ann") as first,
        served.connect("/ws?name=%20Ann%20") as second,
        served.connect("/ws") as guest,
    ):
        assert (await receive(first))["name"] == "Ann"
        assert (await receive(second))["name"] == "Ann (2)"
        assert (await receive(guest))["name"] == "guest"
        await guest.send_message(b"\x00")
        with pytest.raises(trio_ws.ConnectionClosed) as closed:
            await guest.get_message()
        assert close_of(closed.value) == (1003, "chat messages are text")


def test_chat_program_serves_its_page_and_room_and_stops_on_ctrl_c() -> None:
    """python examples/chat.py prints its URLs, serves the page and the room, and exits 0 on SIGINT."""
    with running_example("chat") as (proc, url, ws_url):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert '<script src="/static/chat.js"' in response.read().decode()
        with urllib.request.urlopen(url + "static/chat.js", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/javascript")
        with connect(ws_url + "?name=Zoe", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["members"] == ["Zoe"]
            ws.send("anyone?")
            assert json.loads(ws.recv(timeout=10))["text"] == "anyone?"
            stop_with_ctrl_c(proc)
            assert ws.close_code == 1001
