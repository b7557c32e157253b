"""Server-Sent Events and Long Polling, request by request, as ASP.NET answers them.

The hub is served in memory (``open_memory_server``), so ``autojump_clock`` drives the
poll timeout and the disconnect timeout; the official client checks the same behaviour
end to end in ``tests/signalr/test_signalr_node.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing
import trio_websocket

import trio_ws
import trio_ws.testing
from trio_ws.signalr import DisconnectReason, HttpTransportType, Hub, HubOptions, HubServer, map_hub
from trio_ws.signalr._protocol import MESSAGEPACK
from trio_ws.signalr._protocol.handshake import encode_request
from trio_ws.signalr._protocol.messages import Close, Completion, Invocation

from ..helpers import assert_no_tracebacks
from ..http_helpers import HttpHubClient, exchange, open_request

STREAM = ("Accept", "text/event-stream")


class Chat(Hub):
    def __init__(self) -> None:
        self.reasons: list[DisconnectReason] = []
        self.left = trio.Event()

    async def echo(self, message: str) -> str:
        return message

    async def transport(self) -> str | None:
        return self.context.transport

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.reasons.append(reason)
        self.left.set()


@dataclass
class Served:
    memory: trio_ws.testing.MemoryServer
    hub: Chat
    hub_server: HubServer

    async def connect(self) -> trio.abc.Stream:
        return await self.memory.listener.connect()

    def client(self, path: str = "/hub", protocol: str = "json") -> HttpHubClient:
        return HttpHubClient(self.connect, path, protocol)


@asynccontextmanager
async def serve(**options: object) -> AsyncIterator[Served]:
    """A hub on every transport at /hub, and on Long Polling only at /polls, served in memory."""
    app = trio_ws.App()
    hub = Chat()
    hub_options = HubOptions(**{"long_polling_timeout": 90, **options})  # type: ignore[arg-type]
    hub_server = map_hub(app, "/hub", hub, options=hub_options)
    map_hub(app, "/polls", Chat(), options=hub_options, transports=[HttpTransportType.LONG_POLLING])
    async with trio_ws.testing.open_memory_server(app) as memory:
        yield Served(memory, hub, hub_server)


# -- Long Polling ----------------------------------------------------------------------------


async def test_long_polling_first_poll_at_once_then_messages_then_an_empty_200(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The first poll is answered at once and empty; later ones carry what is queued
    (``application/octet-stream``, no-cache), or 200 empty after the poll timeout; no Pings."""
    async with serve(long_polling_timeout=90, keep_alive_interval=1) as served:
        client = served.client()
        await client.negotiate()
        start = trio.current_time()
        first = await client.poll()
        assert (first.status, first.body, trio.current_time()) == (200, b"", start)
        assert first.headers["content-type"] == "application/octet-stream"
        assert first.headers["cache-control"] == "no-cache, no-store"
        assert first.headers["pragma"] == "no-cache"
        assert (await client.post(encode_request("json"))).status == 200
        handshake = await client.poll()
        assert (handshake.status, handshake.body) == (200, b"{}\x1e")
        posted = await client.send(Invocation("Echo", ("hi",), "1"))
        assert (posted.status, posted.body) == (200, b"")
        answer = await client.poll()
        assert client.decode(answer.body) == [Completion.with_result("1", "hi")]
        assert (await client.send(Invocation("Transport", (), "2"))).status == 200
        assert client.decode((await client.poll()).body) == [Completion.with_result("2", "LongPolling")]
        start = trio.current_time()
        idle = await client.poll()  # nothing to send: no Ping either, however long the keep-alive
        assert (idle.status, idle.body) == (200, b"")
        assert trio.current_time() - start == pytest.approx(90)


async def test_a_newer_poll_displaces_the_held_one_with_204(autojump_clock: trio.testing.MockClock) -> None:
    """A poll held when the next arrives is answered 204; the newer one gets the messages."""
    async with serve() as served:
        client = served.client()
        await client.negotiate()
        assert await client.handshake_by_polling() == b"{}\x1e"
        async with trio.open_nursery() as nursery:
            held = trio.Event()
            answers = []

            async def poll_first() -> None:
                async with open_request(await served.connect(), "GET", f"/hub?id={client.token}") as poll:
                    held.set()
                    answers.append(poll.status)

            nursery.start_soon(poll_first)
            await trio.testing.wait_all_tasks_blocked()
            assert not held.is_set()
            nursery.start_soon(client.send, Invocation("Echo", ("late",), "1"))
            second = await client.poll()
        assert answers == [204]
        assert client.decode(second.body) == [Completion.with_result("1", "late")]


async def test_delete_ends_the_connection_with_202_and_forgets_its_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``DELETE`` is answered 202, the held poll 204, the hub hears CLIENT_CLOSED, and a poll
    with the same token is then unknown (404)."""
    async with serve() as served:
        client = served.client()
        await client.negotiate()
        await client.handshake_by_polling()
        async with trio.open_nursery() as nursery:
            statuses = []

            async def held_poll() -> None:
                statuses.append((await client.poll()).status)

            nursery.start_soon(held_poll)
            await trio.testing.wait_all_tasks_blocked()
            deleted = await client.request("DELETE")
            assert (deleted.status, deleted.body) == (202, b"")
        assert statuses == [204]
        await served.hub.left.wait()
        assert served.hub.reasons == [DisconnectReason.CLIENT_CLOSED]
        assert (await client.poll()).status == 404


async def test_no_poll_for_the_disconnect_timeout_ends_the_connection(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A Long Polling client that stops polling is gone after ``disconnect_timeout``: TIMED_OUT."""
    caplog.set_level(logging.INFO, logger="trio_ws.signalr")
    async with serve(disconnect_timeout=15) as served:
        client = served.client()
        await client.negotiate()
        await client.handshake_by_polling()
        start = trio.current_time()
        await served.hub.left.wait()
        assert trio.current_time() - start == pytest.approx(15)
        assert served.hub.reasons == [DisconnectReason.TIMED_OUT]
        assert "no poll within disconnect_timeout (15 s)" in caplog.text
    assert_no_tracebacks(caplog)


async def test_a_held_poll_is_not_away(autojump_clock: trio.testing.MockClock) -> None:
    """Polls held back to back for longer than the disconnect timeout keep the connection."""
    async with serve(disconnect_timeout=15, long_polling_timeout=20) as served:
        client = served.client()
        await client.negotiate()
        await client.handshake_by_polling()
        for _ in range(3):
            assert (await client.poll()).status == 200
        await served.hub_server.clients.client(client.connection_id).send("Still", "here")
        assert client.decode((await client.poll()).body) == [Invocation("Still", ("here",))]
        assert served.hub.reasons == []


async def test_messagepack_travels_over_long_polling() -> None:
    """MessagePack is binary: its handshake is JSON, then every poll and POST is VarInt-framed."""
    async with serve() as served:
        client = served.client(protocol="messagepack")
        await client.negotiate()
        assert await client.handshake_by_polling() == b"{}\x1e"
        assert (await client.send(Invocation("Echo", ("héllo",), "1"))).status == 200
        answer = await client.poll()
        assert answer.body == MESSAGEPACK.encode(Completion.with_result("1", "héllo"))


async def test_server_shutdown_reaches_a_held_poll() -> None:
    """On graceful shutdown the held poll carries Close with allowReconnect."""
    async with serve() as served:
        client = served.client()
        await client.negotiate()
        await client.handshake_by_polling()
        answers = []

        async def held_poll() -> None:
            answers.append(await client.poll())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(held_poll)
            await trio.testing.wait_all_tasks_blocked()
            await served.hub_server.aclose()
        assert client.decode(answers[0].body) == [Close(allow_reconnect=True)]
        assert served.hub.reasons == [DisconnectReason.SERVER_SHUTDOWN]


# -- POST, and the transports' checks --------------------------------------------------------


async def test_post_answers_as_aspnet_does(autojump_clock: trio.testing.MockClock) -> None:
    """A POST without an id is 400, with an unknown one 404, to a WebSocket connection 405, while
    another POST of the connection is in progress 409; a body may cut a message in two."""
    async with serve() as served:
        no_id = await exchange(await served.connect(), "POST", "/hub")
        assert (no_id.status, no_id.body) == (400, b"Connection ID required\n")
        unknown = await exchange(await served.connect(), "POST", "/hub?id=nobody")
        assert (unknown.status, unknown.body) == (404, b"No Connection with that ID\n")
        async with served.memory.connect("/hub") as ws:  # skipNegotiation: a WebSocket connection
            await ws.send_message(encode_request("json").decode())
            await ws.get_message()
            (connection_token,) = [c.token for c in served.hub_server._connections.values()]
            on_ws = await exchange(await served.connect(), "POST", f"/hub?id={connection_token}")
        assert on_ws.status == 405
        assert on_ws.body == b"POST requests are not allowed for WebSocket connections.\n"
        client = served.client()
        await client.negotiate()
        await client.handshake_by_polling()
        message = client.protocol.encode(Invocation("Echo", ("in two",), "1"))
        # A POST whose body is still coming holds the connection's inbox: a second one is refused.
        stream = await served.connect()
        head = (
            f"POST /hub?id={client.token} HTTP/1.1\r\nHost: hub.test\r\n"
            f"Content-Length: {len(message)}\r\n\r\n"
        ).encode()
        await stream.send_all(head + message[:5])
        await trio.testing.wait_all_tasks_blocked()
        assert (await client.post(message)).status == 409
        await stream.send_all(message[5:])
        assert b"200 OK" in await stream.receive_some()
        await stream.aclose()
        assert client.decode((await client.poll()).body) == [Completion.with_result("1", "in two")]


async def test_transport_mismatches_are_refused_as_aspnet_refuses_them() -> None:
    """A transport the hub does not allow is 404; another kind than the connection's 400; a
    second event stream 409; DELETE on an event-stream connection 400; an unknown id 404."""
    async with serve() as served:
        polls_only = served.client("/polls")
        await polls_only.negotiate()
        refused = await polls_only.request("GET", headers=[("Accept", "text/event-stream")])
        assert (refused.status, refused.body) == (
            404,
            b"ServerSentEvents transport not supported by this end point type\n",
        )
        with pytest.raises(trio_websocket.ConnectionRejected) as upgrade:
            async with served.memory.connect(f"/polls?id={polls_only.token}"):
                pass
        assert upgrade.value.status_code == 404
        polling = served.client()
        await polling.negotiate()
        await polling.handshake_by_polling()
        mismatch = await polling.request("GET", headers=[("Accept", "text/event-stream")])
        assert (mismatch.status, mismatch.body) == (400, b"Cannot change transports mid-connection\n")
        with pytest.raises(trio_websocket.ConnectionRejected) as upgrade:
            async with served.memory.connect(f"/hub?id={polling.token}"):
                pass
        assert upgrade.value.status_code == 400
        streaming = served.client()
        await streaming.negotiate()
        headers = [("Accept", "text/event-stream")]
        async with open_request(await served.connect(), "GET", f"/hub?id={streaming.token}", headers=headers):
            second = await streaming.request("GET", headers=headers)
            assert second.status == 409
            poll = await streaming.poll()
            assert (poll.status, poll.body) == (400, b"Cannot change transports mid-connection\n")
            deleted = await streaming.request("DELETE")
            assert (deleted.status, deleted.body) == (
                400,
                b"Cannot terminate this connection using the DELETE endpoint.\n",
            )
        assert (await exchange(await served.connect(), "GET", "/hub?id=nobody")).status == 404
        assert (await exchange(await served.connect(), "DELETE", "/hub")).status == 400


# -- Server-Sent Events ----------------------------------------------------------------------


async def test_server_sent_events_headers_framing_and_the_end() -> None:
    """The stream answers 200 ``text/event-stream`` with ASP.NET's headers, sends ``:\\r\\n`` first,
    then one event per chunk (``data: ...\\r\\n\\r\\n``); the POSTs carry the client's half;
    when the connection ends (the client's Close) the stream ends cleanly."""
    async with serve() as served:
        client = served.client()
        await client.negotiate()
        target = f"/hub?id={client.token}"
        async with open_request(
            await served.connect(), "GET", target, headers=[("Accept", "text/event-stream")]
        ) as stream:
            assert stream.status == 200
            assert stream.headers["content-type"] == "text/event-stream"
            assert stream.headers["cache-control"] == "no-cache,no-store"
            assert stream.headers["pragma"] == "no-cache"
            assert stream.headers["content-encoding"] == "identity"
            assert await anext(stream.chunks) == b":\r\n"
            assert (await client.post(encode_request("json"))).status == 200
            assert await anext(stream.chunks) == b"data: {}\x1e\r\n\r\n"
            await client.send(Invocation("Transport", (), "1"))
            event = await anext(stream.chunks)
            assert event == b'data: {"type":3,"invocationId":"1","result":"ServerSentEvents"}\x1e\r\n\r\n'
            await client.send(Close())
            rest = [chunk async for chunk in stream.chunks]  # ends: h11 saw the end of the body
        assert rest == [b'data: {"type":7}\x1e\r\n\r\n']
        await served.hub.left.wait()
        assert served.hub.reasons == [DisconnectReason.CLIENT_CLOSED]


async def test_messagepack_is_refused_on_server_sent_events() -> None:
    """The handshake for MessagePack over SSE gets ASP.NET's refusal, as an event, then the end."""
    async with serve() as served:
        client = served.client()
        await client.negotiate()
        async with open_request(
            await served.connect(), "GET", f"/hub?id={client.token}", headers=[STREAM]
        ) as stream:
            assert await anext(stream.chunks) == b":\r\n"
            await client.post(encode_request("messagepack"))
            events = [chunk async for chunk in stream.chunks]
        assert events == [
            b'data: {"error":"Cannot use the \'messagepack\' protocol on the current transport. '
            b"The transport does not support 'Binary' transfer format.\"}\x1e\r\n\r\n"
        ]


async def test_a_client_dropping_its_event_stream_ends_the_connection() -> None:
    """The client ends SSE by dropping the stream: the connection ends, CLIENT_CLOSED, and is freed."""
    async with serve() as served:
        client = served.client()
        await client.negotiate()
        async with open_request(
            await served.connect(), "GET", f"/hub?id={client.token}", headers=[STREAM]
        ) as stream:
            assert await anext(stream.chunks) == b":\r\n"
            await client.post(encode_request("json"))
            assert await anext(stream.chunks) == b"data: {}\x1e\r\n\r\n"
        await served.hub.left.wait()
        assert served.hub.reasons == [DisconnectReason.CLIENT_CLOSED]
        await trio.testing.wait_all_tasks_blocked()
        assert served.hub_server.statistics().connections == 0
        assert (await client.post(b"{}")).status == 404


async def test_server_shutdown_ends_event_streams_after_the_goodbye() -> None:
    """On graceful shutdown an event stream carries Close with allowReconnect, then ends cleanly
    (before the server would end it itself)."""
    app = trio_ws.App()
    hub = Chat()
    map_hub(app, "/hub", hub)
    async with trio_ws.testing.open_memory_server(app) as memory:
        client = HttpHubClient(memory.listener.connect, "/hub")
        await client.negotiate()
        async with open_request(
            await memory.listener.connect(),
            "GET",
            f"/hub?id={client.token}",
            headers=[("Accept", "text/event-stream")],
        ) as stream:
            assert await anext(stream.chunks) == b":\r\n"
            await client.post(encode_request("json"))
            assert await anext(stream.chunks) == b"data: {}\x1e\r\n\r\n"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(memory.server.aclose)
                rest = [chunk async for chunk in stream.chunks]
        assert rest == [b'data: {"type":7,"allowReconnect":true}\x1e\r\n\r\n']
    assert hub.reasons == [DisconnectReason.SERVER_SHUTDOWN]
