"""A hub send written by the sender itself (``Sender._send_now``) over a real WebSocket on TCP.

The sender writes at once only when nothing is queued and the WebSocket can
take the frame without waiting; what the socket does not take is sent by
the pump, first; and a send while anything waits queues behind it. The
client here is a raw peer with a small receive buffer that reads only when
told to, so the server's socket fills.
"""

from __future__ import annotations

import json
import socket

import trio
import trio.testing

import trio_ws
from trio_ws.signalr import Hub, HubOptions, map_hub
from trio_ws.signalr._hub.call import current_call

from ...helpers import IO_DEADLINE, start_server
from ...raw import TEXT, Peer, client_frame

PAYLOAD = "x" * 8_000


class Filler(Hub):
    """Sends items to its caller until the socket is full, and reports how it went."""

    rest_waited: list[int]

    async def fill(self, more: int) -> None:
        """Items until one leaves bytes waiting in the WebSocket, then ``more`` items after it."""
        ws = current_call.get().connection.sender.attachment.push.ws  # type: ignore[attr-defined]
        ws._tcp.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        number = 0
        while not ws._outbox:  # until a send leaves the rest of its frame waiting
            await self.clients.caller.send("Item", number, PAYLOAD)
            number += 1
        self.rest_waited.append(number - 1)
        for _ in range(more):
            await self.clients.caller.send("Item", number, PAYLOAD)
            number += 1


async def open_hub(nursery: trio.Nursery, hub: Hub) -> Peer[trio.SocketStream]:
    """A raw hub client with a small receive buffer, its JSON handshake done."""
    app = trio_ws.App()
    map_hub(app, "/hub", hub, options=HubOptions(keep_alive_interval=None))
    server = await start_server(nursery, app)
    peer = await Peer.open(server.port, path="/hub", receive_buffer=4096)
    await peer.send(client_frame(TEXT, b'{"protocol":"json","version":1}\x1e'))
    assert await peer.next_frame() == (TEXT, b"{}\x1e")
    return peer


async def read_messages(peer: Peer[trio.SocketStream], count: int) -> list[dict[str, object]]:
    """The next ``count`` hub messages, whatever frames they came in."""
    messages: list[dict[str, object]] = []
    while len(messages) < count:
        opcode, data = await peer.next_frame()
        assert opcode == TEXT
        messages += [json.loads(record) for record in data.split(b"\x1e") if record]
    return messages


def invocation(target: str, *arguments: object, invocation_id: str | None = None) -> bytes:
    message: dict[str, object] = {"type": 1, "target": target, "arguments": list(arguments)}
    if invocation_id is not None:
        message["invocationId"] = invocation_id
    return client_frame(TEXT, json.dumps(message).encode() + b"\x1e")


async def test_the_rest_of_a_send_the_socket_took_in_part_goes_out_with_nothing_after_it(
    nursery: trio.Nursery,
) -> None:
    """A send the socket took only part of is finished by the pump, woken for it, though nothing
    else is sent after it (a call without an id gets no Completion)."""
    hub = Filler()
    hub.rest_waited = []
    with trio.fail_after(IO_DEADLINE):
        peer = await open_hub(nursery, hub)
        await peer.send(invocation("Fill", 0))
        while not hub.rest_waited:
            await trio.testing.wait_all_tasks_blocked()
        last = hub.rest_waited[0]
        items = await read_messages(peer, last + 1)
    assert [item["arguments"] for item in items] == [[number, PAYLOAD] for number in range(last + 1)]
    await peer.aclose()


async def test_sends_behind_the_rest_of_a_partial_write_follow_it_in_order(nursery: trio.Nursery) -> None:
    """Sends after one whose rest waits queue behind it and go out after it, in order, and the
    call's Completion last."""
    hub = Filler()
    hub.rest_waited = []
    with trio.fail_after(IO_DEADLINE):
        peer = await open_hub(nursery, hub)
        await peer.send(invocation("Fill", 20, invocation_id="1"))
        while not hub.rest_waited:
            await trio.testing.wait_all_tasks_blocked()
        count = hub.rest_waited[0] + 1 + 20
        messages = await read_messages(peer, count + 1)
    assert [item["arguments"] for item in messages[:count]] == [[number, PAYLOAD] for number in range(count)]
    assert messages[count]["type"] == 3 and messages[count]["invocationId"] == "1"
    await peer.aclose()


class Echo(Hub):
    async def echo(self, text: str) -> str:
        return text


async def test_replies_queued_behind_waiting_calls_go_before_the_last_one(nursery: trio.Nursery) -> None:
    """Calls that come together are answered in order: the replies of calls with more calls behind
    them queue (to leave in one write), and the last reply, with nothing behind it, may go at once
    only after them."""
    with trio.fail_after(IO_DEADLINE):
        peer = await open_hub(nursery, Echo())
        await peer.send(b"".join(invocation("Echo", str(n), invocation_id=str(n)) for n in range(5)))
        replies = await read_messages(peer, 5)
    assert replies == [{"type": 3, "invocationId": str(n), "result": str(n)} for n in range(5)]
    await peer.aclose()
