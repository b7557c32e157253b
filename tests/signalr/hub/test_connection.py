"""A hub connection's life over memory streams, with ``autojump_clock`` for every timeout:
the handshake, the keep-alive, the client timeout, how it ends and what each ending says."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_ws.signalr import (
    DisconnectReason,
    Hub,
    HubServer,
    StreamTransport,
    TransferFormat,
)
from trio_ws.signalr._hub.connection import ConnectionGone, TransportInUse
from trio_ws.signalr._protocol import JSON, MESSAGEPACK
from trio_ws.signalr._protocol.handshake import encode_request
from trio_ws.signalr._protocol.messages import Close, Completion, Invocation, Ping, StreamInvocation

from ..helpers import HubTestClient, assert_no_tracebacks, connect, serve_hub


class Lifecycle(Hub):
    def __init__(self) -> None:
        self.reasons: list[DisconnectReason] = []
        self.disconnected = trio.Event()
        self.connected_ids: list[str] = []
        self.cancelled: list[str] = []
        self.started = trio.Event()

    async def on_connected(self) -> None:
        self.connected_ids.append(self.context.connection_id)
        await self.groups.add(self.context.connection_id, "everyone")

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.reasons.append(reason)
        self.disconnected.set()

    async def echo(self, text: str) -> str:
        return text

    async def hang(self, name: str) -> None:
        self.started.set()
        try:
            await trio.sleep_forever()
        finally:
            self.cancelled.append(name)

    async def leave(self) -> None:
        self.context.abort()

    async def members(self) -> int:
        return await self.groups.count("everyone")


class TextOnly(StreamTransport):
    """A transport that carries text only, as Server-Sent Events do."""

    transfer_formats = frozenset({TransferFormat.TEXT})


class BreaksOnReceive(StreamTransport):
    """A transport whose receive side breaks when told, as a reset socket does."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        super().__init__(stream, name="Breakable")
        self._receiving = trio.CancelScope()
        self._broken = False

    def break_now(self) -> None:
        self._broken = True
        self._receiving.cancel()

    async def receive(self) -> bytes | None:
        with trio.CancelScope() as self._receiving:
            if not self._broken:
                return await super().receive()
        raise trio.BrokenResourceError("reset by peer")


async def raw_handshake(
    server: HubServer, request: bytes, transport: type[StreamTransport] = StreamTransport
) -> bytes:
    """Send ``request`` as the first bytes; return all the server sends until it closes."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_transport, transport(server_stream))
        if request:
            await client_stream.send_all(request)
        received = b""
        while data := await client_stream.receive_some():
            received += data
    return received


@pytest.mark.parametrize(
    ("request_", "answer"),
    [
        (encode_request("xml"), b'{"error":"The protocol \'xml\' is not supported."}\x1e'),
        (
            encode_request("json", 3),
            b'{"error":"The server does not support version 3 of the \'json\' protocol."}\x1e',
        ),
        (
            b'{"protocol":"json"}\x1e',
            b'{"error":"An unexpected error occurred during connection handshake."}\x1e',
        ),
        (b"\x00" * 40_000, b'{"error":"Handshake was canceled."}\x1e'),
    ],
)
async def test_a_refused_handshake_gets_aspnets_answer_then_the_end(
    request_: bytes, answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown protocol, unsupported version, a malformed or oversized request: the error, then EOF."""
    async with serve_hub(Lifecycle()) as server:
        assert await raw_handshake(server, request_) == answer
        assert server.statistics().connections == 0
    assert_no_tracebacks(caplog)


async def test_a_refused_handshake_says_why_with_detailed_errors() -> None:
    """With detailed errors the refusal adds what was wrong with the request."""
    async with serve_hub(Lifecycle(), detailed_errors=True) as server:
        assert await raw_handshake(server, b'{"protocol":"json"}\x1e') == (
            b'{"error":"An unexpected error occurred during connection handshake. '
            b"InvalidDataException: missing required property 'version'\"}\x1e"
        )


async def test_messagepack_is_refused_on_a_text_only_transport() -> None:
    """A binary protocol on a transport that carries only text gets ASP.NET's refusal."""
    async with serve_hub(Lifecycle()) as server:
        assert await raw_handshake(server, encode_request("messagepack"), TextOnly) == (
            b'{"error":"Cannot use the \'messagepack\' protocol on the current transport. '
            b"The transport does not support 'Binary' transfer format.\"}\x1e"
        )


async def test_the_handshake_times_out_after_15_seconds(autojump_clock: trio.testing.MockClock) -> None:
    """A client that never sends its handshake is told "Handshake was canceled." after 15 s."""
    async with serve_hub(Lifecycle()) as server:
        start = trio.current_time()
        assert (
            await raw_handshake(server, encode_request("json")[:5])
            == b'{"error":"Handshake was canceled."}\x1e'
        )
        assert trio.current_time() - start == pytest.approx(15)


@pytest.mark.parametrize("protocol", [JSON, MESSAGEPACK])
async def test_messages_in_the_same_chunk_as_the_handshake_are_read(protocol: object) -> None:
    """Bytes after the handshake's separator are the first hub messages, in the chosen protocol."""
    async with serve_hub(Lifecycle()) as server:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_transport, StreamTransport(server_stream))
            client = HubTestClient(client_stream, protocol)  # type: ignore[arg-type]
            first = encode_request(client.protocol.name) + client.protocol.encode(
                Invocation("Echo", ("x",), "1")
            )
            await client_stream.send_all(first)
            data = await client_stream.receive_some()
            assert data.startswith(b"{}\x1e")
            client._reader.receive_data(data[3:])
            assert await client.receive() == Completion.with_result("1", "x")
            await client_stream.aclose()


async def test_a_ping_goes_out_after_15_seconds_with_nothing_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The keep-alive pings an idle client every 15 s, and not while other messages flow."""
    async with serve_hub(Lifecycle()) as server, connect(server) as client:
        start = trio.current_time()
        pings = []
        for _ in range(3):
            assert await client.receive(skip_pings=False) == Ping()
            pings.append(trio.current_time() - start)
        assert pings == pytest.approx([15, 30, 45])
        await trio.sleep(10)
        assert await client.call("Echo", "x") == "x"  # sent at 55 s: the next ping waits until 70 s
        assert await client.receive(skip_pings=False) == Ping()
        assert trio.current_time() - start == pytest.approx(70)


async def test_the_client_timeout_starts_with_the_first_ping(autojump_clock: trio.testing.MockClock) -> None:
    """Silent for an hour without ever pinging: still open. After a Ping, 30 s of silence closes it,
    with ASP.NET's Close message, and ``on_disconnected`` hears TIMED_OUT."""
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as client:
        await trio.sleep(3600)
        assert await client.call("Echo", "still here") == "still here"
        await client.send(Ping())
        start = trio.current_time()
        assert await client.receive_close() == Close("Connection closed with an error.", allow_reconnect=True)
        assert trio.current_time() - start == pytest.approx(30)
        await hub.disconnected.wait()
    assert hub.reasons == [DisconnectReason.TIMED_OUT]


async def test_a_client_that_keeps_pinging_stays_connected(autojump_clock: trio.testing.MockClock) -> None:
    """Pings every 15 s (as the official clients send them) keep the connection open indefinitely."""
    async with serve_hub(Lifecycle()) as server, connect(server) as client:
        for _ in range(20):
            await client.send(Ping())
            await trio.sleep(15)
        assert await client.call("Echo", "alive") == "alive"


async def test_a_close_message_from_the_client(caplog: pytest.LogCaptureFixture) -> None:
    """The client's Close ends the connection: CLIENT_CLOSED, and the server's own Close in answer."""
    caplog.set_level(logging.INFO, logger="trio_ws.signalr")
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(Close())
        assert await client.receive_close() == Close()
    assert hub.reasons == [DisconnectReason.CLIENT_CLOSED]
    assert any(r.getMessage().endswith(": closed: client closed") for r in caplog.records)


async def test_the_client_closing_its_transport_is_client_closed() -> None:
    """A transport closed cleanly (a WebSocket's close frame, a stream's EOF) is CLIENT_CLOSED."""
    hub = Lifecycle()
    async with serve_hub(hub) as server:
        async with connect(server) as client:
            assert await client.call("Echo", "bye") == "bye"
        await hub.disconnected.wait()
    assert hub.reasons == [DisconnectReason.CLIENT_CLOSED]


async def test_a_transport_that_breaks_on_receive_is_transport_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A transport raising BrokenResourceError ends the connection with TRANSPORT_FAILED, quietly."""
    hub = Lifecycle()
    async with serve_hub(hub) as server:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        transport = BreaksOnReceive(server_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_transport, transport)
            client = HubTestClient(client_stream, JSON)
            assert await client.handshake() is None
            transport.break_now()
            await hub.disconnected.wait()
    assert hub.reasons == [DisconnectReason.TRANSPORT_FAILED]
    assert_no_tracebacks(caplog)


async def test_a_transport_that_breaks_on_send_is_transport_failed() -> None:
    """A client that stops reading for good (its side closed) fails the next send: TRANSPORT_FAILED."""
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as client:
        client.wire.receive_stream.close()  # type: ignore[attr-defined]
        await client.send(Invocation("Echo", ("x",), "1"))
        await hub.disconnected.wait()
    assert hub.reasons == [DisconnectReason.TRANSPORT_FAILED]


async def test_a_transport_whose_task_is_cancelled_ends_its_connection() -> None:
    """If the task carrying the transport is cancelled (its socket's handler, say), the connection
    does not linger without one: it ends with TRANSPORT_FAILED."""
    hub = Lifecycle()
    async with serve_hub(hub) as server:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_transport, StreamTransport(server_stream))
            client = HubTestClient(client_stream, JSON)
            assert await client.handshake() is None
            assert await client.call("Echo", "x") == "x"
            nursery.cancel_scope.cancel()
        await hub.disconnected.wait()
        assert server.statistics().connections == 0
    assert hub.reasons == [DisconnectReason.TRANSPORT_FAILED]


async def test_pings_start_before_on_connected_returns(autojump_clock: trio.testing.MockClock) -> None:
    """The keep-alive runs from the handshake on, so a slow on_connected does not look like a dead server."""

    class Slow(Lifecycle):
        async def on_connected(self) -> None:
            await trio.sleep(40)

    async with serve_hub(Slow()) as server, connect(server) as client:
        start = trio.current_time()
        assert await client.receive(skip_pings=False) == Ping()
        assert trio.current_time() - start == pytest.approx(15)


async def test_abort_closes_without_allowing_reconnect() -> None:
    """``context.abort()`` sends ``{"type":7}``: the client stops for good; the reason is ABORTED."""
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(Invocation("Leave", (), "1"))
        assert await client.receive_close() == Close()
    assert hub.reasons == [DisconnectReason.ABORTED]


async def test_server_shutdown_tells_clients_to_reconnect() -> None:
    """``aclose()`` sends Close with allowReconnect to every client, and ends their connections."""
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as first, connect(server) as second:
        await server.aclose()
        assert await first.receive_close() == Close(allow_reconnect=True)
        assert await second.receive_close() == Close(allow_reconnect=True)
        assert server.statistics().connections == 0
        with pytest.raises(RuntimeError, match="closing"):
            server.open_connection()
    assert hub.reasons == [DisconnectReason.SERVER_SHUTDOWN] * 2


async def test_cancelling_the_hub_server_still_runs_on_disconnected() -> None:
    """The hard stop cancels everything in the hub server, but each connection still leaves its
    groups, hears SERVER_SHUTDOWN, and gets its Close out to a transport that is still there."""
    hub = Lifecycle()
    server = HubServer(hub)
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as outside:  # where a socket's handler lives, not the hub server
        async with trio.open_nursery() as hub_nursery:
            await hub_nursery.start(server.run)
            outside.start_soon(server.serve_transport, StreamTransport(server_stream))
            client = HubTestClient(client_stream, JSON)
            assert await client.handshake() is None
            assert await client.call("Members") == 1
            hub_nursery.cancel_scope.cancel()
        assert await client.receive_close() == Close(allow_reconnect=True)
    assert hub.reasons == [DisconnectReason.SERVER_SHUTDOWN]
    assert await server.backplane.group_members("everyone") == frozenset()


async def test_when_a_connection_ends_its_calls_are_cancelled_and_it_leaves_its_groups() -> None:
    """A call still running is cancelled (its ``finally`` runs), and the group forgets the connection."""
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as watcher:
        async with connect(server) as client:
            assert await watcher.call("Members") == 2
            await client.send(Invocation("Hang", ("call",), "1"))
            await hub.started.wait()
        await hub.disconnected.wait()
        assert hub.cancelled == ["call"]
        assert await watcher.call("Members") == 1


async def test_on_connected_failing_closes_with_its_error(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in ``on_connected`` is logged, and the client gets Close with the error and
    no reconnect (as ASP.NET does); ``on_disconnected`` does not run for a connection never made."""

    class Broken(Lifecycle):
        async def on_connected(self) -> None:
            raise RuntimeError("no database")

    hub = Broken()
    async with serve_hub(hub, detailed_errors=True) as server, connect(server) as client:
        assert await client.receive_close() == Close(
            "Connection closed with an error. RuntimeError: no database", allow_reconnect=False
        )
    assert hub.reasons == []
    assert next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR).endswith(
        "on_connected failed"
    )


async def test_one_call_at_a_time_by_default(autojump_clock: trio.testing.MockClock) -> None:
    """With ``max_parallel_invocations=1`` a second call waits until the first is done."""
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(Invocation("Hang", ("first",), "1"))
        await hub.started.wait()
        await client.send(Invocation("Echo", ("second",), "2"))
        with trio.move_on_after(3600) as waited:  # autojump: passes once everything is blocked
            await client.receive()
        assert waited.cancelled_caught  # the echo is not answered while the first call runs


async def test_parallel_calls_up_to_the_limit() -> None:
    """With ``max_parallel_invocations=2`` a call runs while another hangs."""
    hub = Lifecycle()
    async with serve_hub(hub, max_parallel_invocations=2) as server, connect(server) as client:
        await client.send(Invocation("Hang", ("first",), "1"))
        await hub.started.wait()
        assert await client.call("Echo", "second") == "second"


async def test_connection_ids_tokens_and_transports() -> None:
    """Each connection has a public id and a different secret token; a second transport cannot
    attach (409), nor can one to a connection that has ended (404)."""
    hub = Lifecycle()
    async with serve_hub(hub) as server:
        connection = server.open_connection(user_id="ann")
        assert connection.token != connection.connection_id
        assert server.find_connection(connection.token) is connection
        assert server.find_connection(connection.connection_id) is None
        first_client, first = trio.testing.memory_stream_pair()
        _, second = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            assert not connection.has_transport
            nursery.start_soon(connection.attach, StreamTransport(first))
            await trio.testing.wait_all_tasks_blocked()
            assert connection.has_transport
            with pytest.raises(TransportInUse):
                await connection.attach(StreamTransport(second))
            client = HubTestClient(first_client, JSON)
            assert await client.handshake() is None
            assert await client.call("Echo", "x") == "x"
            await client.send(Close())
        with pytest.raises(ConnectionGone):
            await connection.attach(StreamTransport(second))
        assert server.find_connection(connection.token) is None


async def test_hub_state_outside_calls_and_instances_per_server() -> None:
    """``context`` exists only in a call; a hub instance belongs to one server."""
    hub = Lifecycle()
    with pytest.raises(RuntimeError, match="not served yet"):
        _ = hub.clients
    HubServer(hub)
    with pytest.raises(RuntimeError, match="only available inside a hub method"):
        _ = hub.context
    with pytest.raises(RuntimeError, match="needs a caller"):
        _ = hub.clients.caller
    with pytest.raises(ValueError, match="already served by another HubServer"):
        HubServer(hub)


async def test_streams_end_with_the_connection() -> None:
    """A server-to-client stream still running when the client leaves is cancelled."""

    class Streams(Lifecycle):
        async def ticks(self) -> AsyncIterator[int]:
            try:
                while True:
                    yield 1
                    await trio.sleep(1)
            finally:
                self.cancelled.append("ticks")

    hub = Streams()
    async with serve_hub(hub) as server:
        async with connect(server) as client:
            await client.send(Invocation("Echo", ("x",), "0"))
            await client.receive()
            await client.send(StreamInvocation("s", "Ticks", ()))
            await client.receive()
        await hub.disconnected.wait()
    assert hub.cancelled == ["ticks"]


def _tasks_named(prefix: str) -> list[trio.lowlevel.Task]:
    found = []
    root = trio.lowlevel.current_root_task()
    assert root is not None
    pending = [root]
    while pending:
        task = pending.pop()
        if task.name.startswith(prefix):
            found.append(task)
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


async def test_idle_connections_have_no_timer_task_each_and_keep_their_own_timers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The hub server's one timer task keeps every connection's timers: an idle connection is its
    reading task alone, and each still gets its Pings on its own schedule and its own timeout."""
    hub = Lifecycle()
    async with serve_hub(hub) as server, connect(server) as first:
        start = trio.current_time()
        await trio.sleep(5)
        async with connect(server) as second:
            await trio.testing.wait_all_tasks_blocked()
            connections = _tasks_named("hub connection")
            assert len(connections) == 2
            for task in connections:  # its nursery is there for calls, and empty while idle
                assert [list(nursery.child_tasks) for nursery in task.child_nurseries] == [[]]
            assert len(_tasks_named("trio_ws.signalr._transports.timers.Timers.run")) == 1

            assert await first.receive(skip_pings=False) == Ping()
            assert trio.current_time() - start == pytest.approx(15)
            assert await second.receive(skip_pings=False) == Ping()
            assert trio.current_time() - start == pytest.approx(20)
            await second.send(Ping())  # the second's client timeout runs from now (20 s)
            assert await first.receive(skip_pings=False) == Ping()
            assert trio.current_time() - start == pytest.approx(30)
            assert await second.receive(skip_pings=False) == Ping()
            assert trio.current_time() - start == pytest.approx(35)
            assert await second.receive_close() == Close(
                "Connection closed with an error.", allow_reconnect=True
            )
            assert trio.current_time() - start == pytest.approx(50)
        await hub.disconnected.wait()
        assert hub.reasons == [DisconnectReason.TIMED_OUT]
        assert await first.receive(skip_pings=False) == Ping()  # the one sent at 45 s
        assert await first.receive(skip_pings=False) == Ping()  # the first goes on, unharmed
        assert trio.current_time() - start == pytest.approx(60)
        assert await first.call("Echo", "still here") == "still here"
