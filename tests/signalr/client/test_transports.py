"""The trio client on every transport and protocol, its fallback, and stateful reconnect, over real sockets.

The conformance hub (``examples/signalr/testhub.py``) and this module's own
``Recorder`` hub are served on 127.0.0.1 in the test's nursery; the clients
reach them directly or through ``Proxy``, a TCP proxy written here that can
cut every connection it carries, hold new ones, and refuse WebSocket
upgrades or event streams the way a corporate proxy does. Time is the
``autojump_clock``'s: the hubs' timeouts, the client's reconnect delays and
the proxy's holds take no real time.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, cast

import httpx
import pytest
import trio
import trio.testing

import trio_ws
import trio_ws.testing
from examples.signalr.testhub import OPTIONS, build_app
from trio_ws.signalr import (
    ClientState,
    HttpTransportType,
    Hub,
    HubClient,
    HubClientError,
    HubOptions,
    InvocationError,
    map_hub,
    open_hub_client,
)
from trio_ws.signalr._client.negotiate import negotiate
from trio_ws.signalr._client.transports import (
    LongPollingClientTransport,
    ServerSentEventsClientTransport,
    TransportEnded,
)
from trio_ws.signalr._protocol.handshake import encode_request

WS, SSE, LP = (
    HttpTransportType.WEBSOCKETS,
    HttpTransportType.SERVER_SENT_EVENTS,
    HttpTransportType.LONG_POLLING,
)

# Mock seconds (autojump_clock): a hang fails at once, in real time, and the tests' sleeps fit.
IO_DEADLINE = 1000

# JSON on all three transports, MessagePack where the transfer format allows (not SSE).
COMBINATIONS = [(WS, "json"), (WS, "messagepack"), (SSE, "json"), (LP, "json"), (LP, "messagepack")]


@pytest.fixture
async def hub_url(nursery: trio.Nursery) -> str:
    server = await trio_ws.testing.start_server(nursery, build_app())
    return server.url.rstrip("/")


class Proxy:
    """A TCP proxy on 127.0.0.1 that the test controls: cut, hold, refuse."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.block: tuple[bytes, ...] = ()  # refuse requests holding one of these (lower-case) with 403
        self.hold_for = 0.0  # how long a new connection waits before it is carried
        self.accepted = 0
        self._live: set[trio.CancelScope] = set()

    async def serve(
        self, *, task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._carry, listeners, task_status=task_status)

    def cut(self) -> None:
        """Drop every connection carried now (no close handshake: TCP just ends)."""
        for scope in self._live:
            scope.cancel()

    async def _carry(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        with trio.CancelScope() as scope:
            self._live.add(scope)
            try:
                first = await client.receive_some(65536)
                if any(marker in first.lower() for marker in self.block):
                    await client.send_all(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                await trio.sleep(self.hold_for)
                server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                async with server, trio.open_nursery() as nursery:
                    await server.send_all(first)
                    nursery.start_soon(_pump, client, server, nursery.cancel_scope)
                    nursery.start_soon(_pump, server, client, nursery.cancel_scope)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # one side went away: the other goes too
            finally:
                self._live.discard(scope)
        await trio.aclose_forcefully(client)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    both.cancel()


async def start_proxy(nursery: trio.Nursery, upstream_port: int) -> Proxy:
    proxy = Proxy(upstream_port)
    await nursery.start(proxy.serve)
    return proxy


@pytest.mark.parametrize(
    ("transport", "protocol"), COMBINATIONS, ids=lambda value: getattr(value, "name", value)
)
async def test_calls_streams_and_results_on_every_transport(
    hub_url: str, transport: HttpTransportType, protocol: str, autojump_clock: trio.testing.MockClock
) -> None:
    """On each transport x protocol: calls, send, errors, streams both ways with cancellation, and
    client results (a value, a raised error, no handler) all work, on the transport asked for."""
    with trio.fail_after(IO_DEADLINE):
        async with (
            open_hub_client(f"{hub_url}/testhub", transport=transport, protocol=protocol) as hub,
            httpx.AsyncClient(base_url=hub_url) as http,
        ):
            assert hub.transport_name == transport.value
            assert await hub.invoke("GetActiveTransportName") == transport.value
            assert await hub.invoke("Echo", "héllo 🙂") == "héllo 🙂"
            assert await hub.invoke("GetCallerConnectionId") == hub.connection_id
            with pytest.raises(InvocationError, match="InvalidOperationException: boom"):
                await hub.invoke("ThrowException", "boom")
            said = trio.Event()
            hub.on("Message", lambda text: said.set() if text == "told" else None)
            await hub.send("InvokeWithString", "told")
            await said.wait()

            async with hub.stream("Stream") as items:
                assert [item async for item in items] == ["a", "b", "c"]
            cancelled = trio.Event()
            hub.on("StreamCanceled", cancelled.set)
            async with hub.stream("InfiniteStream"):
                pass  # leaving the block cancels the stream on the hub
            await cancelled.wait()

            async def words() -> AsyncIterator[str]:
                for word in ("Hello ", "world", "!"):
                    yield word

            assert await hub.invoke("StreamingConcat", words()) == "Hello world!"

            async def ask() -> str:
                return (await http.get("/clientresult", params={"id": hub.connection_id})).text

            assert await ask() == "Client didn't provide a result."
            hub.on("Result", lambda: 42)
            assert await ask() == "42"
            hub.off("Result")

            def fail() -> int:
                raise ValueError("from callback")

            hub.on("Result", fail)
            assert await ask() == "ValueError: from callback"
            value = await hub.invoke("SendComplexObject")
            assert value["ByteArray"] == (b"\x01\x02\x03" if protocol == "messagepack" else "AQID")
        assert hub.state is ClientState.DISCONNECTED
        assert hub.error is None


async def test_falls_back_in_the_hubs_order(
    nursery: trio.Nursery, hub_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Behind a proxy refusing WebSocket upgrades the client uses Server-Sent Events; refusing event
    streams too, Long Polling; MessagePack skips SSE; /testhub-nowebsockets starts at SSE."""
    proxy = await start_proxy(nursery, int(hub_url.rsplit(":", 1)[1]))
    url = f"http://127.0.0.1:{proxy.port}/testhub"
    with trio.fail_after(IO_DEADLINE):
        proxy.block = (b"upgrade: websocket",)
        async with open_hub_client(url) as hub:
            assert await hub.invoke("GetActiveTransportName") == "ServerSentEvents"
        proxy.block = (b"upgrade: websocket", b"accept: text/event-stream")
        async with open_hub_client(url) as hub:
            assert await hub.invoke("GetActiveTransportName") == "LongPolling"
            assert await hub.invoke("Echo", "still chatting") == "still chatting"
        proxy.block = ()
        async with open_hub_client(f"{hub_url}/testhub-nowebsockets") as hub:
            assert hub.transport_name == "ServerSentEvents"
        async with open_hub_client(f"{hub_url}/testhub-nowebsockets", protocol="messagepack") as hub:
            assert hub.transport_name == "LongPolling"


async def test_no_transport_left_is_a_clear_error(
    nursery: trio.Nursery, hub_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A hub offering nothing the client may use, or transports that all fail, is refused with a
    text naming what was offered and why each failed."""
    proxy = await start_proxy(nursery, int(hub_url.rsplit(":", 1)[1]))
    with trio.fail_after(IO_DEADLINE):
        with pytest.raises(HubClientError) as refused:
            async with open_hub_client(f"{hub_url}/testhub-nowebsockets", transport=WS):
                pytest.fail("connected without a transport")
        assert str(refused.value) == (
            f"the hub at {hub_url}/testhub-nowebsockets offers ServerSentEvents (Text), LongPolling "
            "(Text/Binary); the client asked for WebSockets with the Text transfer format (json)"
        )
        with pytest.raises(HubClientError) as refused:
            async with open_hub_client(f"{hub_url}/testhub", protocol="messagepack", transport=SSE):
                pytest.fail("MessagePack over Server-Sent Events")
        assert "the client asked for ServerSentEvents with the Binary transfer format" in str(refused.value)
        proxy.block = (b"upgrade: websocket", b"accept: text/event-stream", b"get /testhub?")
        with pytest.raises(HubClientError) as refused:
            async with open_hub_client(f"http://127.0.0.1:{proxy.port}/testhub"):
                pytest.fail("connected through a proxy that refuses everything")
        assert str(refused.value).startswith("no transport could connect to")
        assert "WebSockets: the hub refused the WebSocket: 403" in str(refused.value)
        assert "ServerSentEvents: the hub refused the event stream: 403" in str(refused.value)
        assert "LongPolling: the hub refused the first poll: 403" in str(refused.value)
        assert refused.value.status == 403
    with pytest.raises(ValueError, match="skip_negotiation"):
        async with open_hub_client(hub_url, skip_negotiation=True, transport=LP):
            pass


@pytest.mark.parametrize("transport", [WS, SSE, LP], ids=lambda kind: kind.name)
async def test_automatic_reconnect_on_every_transport(
    nursery: trio.Nursery, transport: HttpTransportType, autojump_clock: trio.testing.MockClock
) -> None:
    """When the server shuts down, a client on any transport hears Close with allowReconnect and,
    once a server is back on the port, reconnects on the same transport as a new connection."""
    first: trio_ws.Server = await trio_ws.testing.start_server(nursery, build_app())
    port = first.port
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(
            f"http://127.0.0.1:{port}/testhub", transport=transport, reconnect=[0.0] + [1.0] * 10
        ) as hub:
            before = hub.connection_id
            await first.aclose()
            await _wait_for(hub, ClientState.RECONNECTING)
            second: trio_ws.Server = await nursery.start(trio_ws.serve, build_app(), "127.0.0.1", port)
            await hub.wait_connected()
            assert hub.connection_id not in (None, before)
            assert hub.transport_name == transport.value
            assert await hub.invoke("GetCallerConnectionId") == hub.connection_id
        await second.aclose()


async def test_long_polling_outlives_the_poll_hold_and_ends_with_the_block(
    hub_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A Long Polling client idle for longer than the hub's poll hold keeps its connection (empty
    polls are polled again); leaving the block ends it on the hub, which then answers 404."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"{hub_url}/testhub", transport=LP) as hub:
            before = await hub.invoke("GetCallerConnectionId")
            await trio.sleep(200)  # mock time: past the 90 s hold twice
            assert await hub.invoke("GetCallerConnectionId") == before
            token_query = f"id={before}"
        async with httpx.AsyncClient(base_url=hub_url) as http:
            gone = await http.post(f"/testhub?{token_query}", content=b"")
        assert gone.status_code == 404


async def test_closing_long_polling_sends_delete(
    nursery: trio.Nursery, hub_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A Long Polling transport closed before the hub ended it sends DELETE: the hub forgets the
    connection at once (a POST to it is then 404)."""
    url = f"{hub_url}/testhub"
    answer = await negotiate(url, [])
    assert answer.token is not None
    with trio.fail_after(IO_DEADLINE):
        transport = await LongPollingClientTransport.open(
            nursery, url, answer.token, [], binary=False, max_message_size=2**20, ssl_context=None
        )
        await transport.send(encode_request("json", 1))
        assert await transport.receive() == b"{}\x1e"
        await transport.aclose()
        with pytest.raises(TransportEnded):
            await transport.receive()
        async with httpx.AsyncClient(base_url=hub_url) as http:
            assert (await http.post(f"/testhub?id={answer.token}", content=b"")).status_code == 404


class Recorder(Hub):
    """Numbers go in (``Record``), are kept in order, and come back to the caller (``Recorded``)."""

    def __init__(self) -> None:
        self.received: dict[str, list[int]] = {}

    async def record(self, number: int) -> None:
        self.received.setdefault(self.context.connection_id, []).append(number)
        await self.clients.caller.send("Recorded", number)

    async def connection_id(self) -> str:
        return self.context.connection_id

    async def burst(self, count: int) -> None:
        for number in range(count):
            await self.clients.caller.send("Recorded", number)


def recorder_app(options: HubOptions) -> tuple[trio_ws.App, Recorder]:
    app = trio_ws.App()
    recorder = Recorder()
    map_hub(app, "/recorder", recorder, options=options, auth=None, stateful_reconnect=True)
    return app, recorder


@pytest.mark.parametrize("transport", [WS, SSE, LP], ids=lambda kind: kind.name)
async def test_handlers_are_called_in_the_hubs_order(
    nursery: trio.Nursery, transport: HttpTransportType, autojump_clock: trio.testing.MockClock
) -> None:
    """A burst of calls from the hub, arriving together, reaches the handler in the order sent."""
    app, _ = recorder_app(OPTIONS)
    server = await trio_ws.testing.start_server(nursery, app)
    got: list[int] = []
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"{server.url}recorder", transport=transport) as hub:
            done = trio.Event()

            async def recorded(number: int) -> None:
                await trio.lowlevel.checkpoint()
                got.append(number)
                if number == 99:
                    done.set()

            hub.on("Recorded", recorded)
            await hub.invoke("Burst", 100)
            await done.wait()
    assert got == list(range(100))


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
async def test_stateful_reconnect_loses_and_repeats_nothing(
    nursery: trio.Nursery, protocol: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Through a proxy that cuts the WebSocket 20 times while numbers flow both ways, every number
    reaches the hub and comes back exactly once and in order, on the same connection id."""
    app, recorder = recorder_app(OPTIONS)
    server = await trio_ws.testing.start_server(nursery, app)
    proxy = await start_proxy(nursery, server.port)
    count, cuts = 200, 20
    got: list[int] = []
    all_back = trio.Event()

    def recorded(number: int) -> None:
        got.append(number)
        if len(got) == count:
            all_back.set()

    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(
            f"http://127.0.0.1:{proxy.port}/recorder", protocol=protocol, stateful_reconnect=True
        ) as hub:
            assert hub.stateful_reconnect
            hub.on("Recorded", recorded)
            connection_id = hub.connection_id
            assert connection_id is not None
            for number in range(count):
                await hub.send("Record", number)
                await trio.sleep(0.01)  # mock time: Acks (a second after receipt) flow both ways
                if number % (count // cuts) == count // cuts // 2:
                    proxy.cut()
            await all_back.wait()
            assert await hub.invoke("ConnectionId") == connection_id
            assert hub.connection_id == connection_id
            assert hub.state is ClientState.CONNECTED
    assert recorder.received == {connection_id: list(range(count))}
    assert got == list(range(count))
    assert proxy.accepted >= cuts  # negotiate, then a new WebSocket after each cut


async def test_stateful_reconnect_backpressure_waits_for_acks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """With a small replay buffer and the hub unreachable, sending stops once the buffer is full
    (nothing dropped); when the client resumes, everything goes through in order."""
    app, recorder = recorder_app(OPTIONS)
    server = await trio_ws.testing.start_server(nursery, app)
    proxy = await start_proxy(nursery, server.port)
    sent = 0
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(
            f"http://127.0.0.1:{proxy.port}/recorder",
            stateful_reconnect=True,
            stateful_reconnect_buffer_size=500,
        ) as hub:
            back = trio.Event()
            hub.on("Recorded", lambda number: back.set() if number == 99 else None)
            proxy.hold_for = 10.0  # below the hub's disconnect timeout: the connection waits for us
            proxy.cut()

            async def sender() -> None:
                nonlocal sent
                for number in range(100):
                    await hub.send("Record", number)
                    sent += 1

            async with trio.open_nursery() as senders:
                senders.start_soon(sender)
                await trio.sleep(5.0)  # the resume is held by the proxy: the buffer fills
                assert 0 < sent < 100
                proxy.hold_for = 0.0
            await back.wait()
            connection_id = hub.connection_id
    assert recorder.received == {connection_id: list(range(100))}


async def test_away_longer_than_the_disconnect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A stateful client whose new WebSocket comes after the hub's disconnect timeout is refused
    (404) and ends cleanly: calls in flight fail, and with reconnect on it comes back as a new
    connection."""
    options = dataclasses.replace(OPTIONS, disconnect_timeout=15.0)
    app, _ = recorder_app(options)
    server = await trio_ws.testing.start_server(nursery, app)
    proxy = await start_proxy(nursery, server.port)
    url = f"http://127.0.0.1:{proxy.port}/recorder"
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(url, stateful_reconnect=True) as hub:
            proxy.hold_for = 20.0
            proxy.cut()
            await hub.wait_disconnected()
            assert isinstance(hub.error, HubClientError)
            assert hub.error.status == 404
            assert str(hub.error).endswith(
                "the hub no longer has the connection (404): the client was away longer than the hub's "
                "disconnect timeout"
            )
        proxy.hold_for = 0.0
        async with open_hub_client(url, stateful_reconnect=True, reconnect=[0.0, 1.0]) as hub:
            before = hub.connection_id
            proxy.hold_for = 20.0
            proxy.cut()
            await _wait_for(hub, ClientState.RECONNECTING)
            proxy.hold_for = 0.0
            await hub.wait_connected()
            assert hub.connection_id not in (None, before)
            assert await hub.invoke("ConnectionId") == hub.connection_id


async def test_stateful_reconnect_is_asked_for_not_assumed(
    hub_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Without stateful_reconnect the client does not ask for it; on a hub that does not allow it,
    or on a transport other than WebSockets, the client goes on without it."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"{hub_url}/testhub") as hub:
            assert not hub.stateful_reconnect
        async with open_hub_client(f"{hub_url}/testhub-nowebsockets", stateful_reconnect=True) as hub:
            assert not hub.stateful_reconnect
            assert await hub.invoke("Echo", "fine") == "fine"
        async with open_hub_client(f"{hub_url}/testhub", stateful_reconnect=True, transport=LP) as hub:
            assert not hub.stateful_reconnect
        async with open_hub_client(f"{hub_url}/testhub", stateful_reconnect=True) as hub:
            assert hub.stateful_reconnect
    with pytest.raises(ValueError, match="stateful_reconnect_buffer_size"):
        async with open_hub_client(hub_url, stateful_reconnect_buffer_size=0):
            pass


async def _wait_for(hub: HubClient, state: ClientState) -> None:
    for _ in itertools.count():
        if hub.state is state:
            return
        await trio.sleep(0.01)


async def test_event_stream_parsing_across_chunks() -> None:
    """Events cut anywhere (even between \\r and \\n) come out whole: ':' comments and other fields
    dropped, several data lines joined by \\n; the stream's end is TransportEnded, and an event over
    the limit is refused."""
    wire = b':\r\n\r\ndata: {"type":6}\x1e\r\n\r\nid: 3\ndata: one\r\ndata:two\n\ndata: x\r\r\n'
    for size in (1, 2, 5, len(wire)):

        async def chunks(size: int = size) -> AsyncIterator[bytes]:
            for start in range(0, len(wire), size):
                yield wire[start : start + size]

        events = ServerSentEventsClientTransport(cast(Any, None), chunks(), AsyncExitStack(), 100)
        assert await events.receive() == b'{"type":6}\x1e'
        assert await events.receive() == b"one\ntwo"
        assert await events.receive() == b"x"
        with pytest.raises(TransportEnded, match="the event stream ended"):
            await events.receive()

    async def huge() -> AsyncIterator[bytes]:
        yield b"data: " + b"y" * 200 + b"\r\n"

    events = ServerSentEventsClientTransport(cast(Any, None), huge(), AsyncExitStack(), 100)
    with pytest.raises(HubClientError, match="over 100 bytes"):
        await events.receive()
