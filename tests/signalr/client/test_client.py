"""trio_ws's own hub client (``open_hub_client``) against the conformance hub, over real sockets.

The hub is ``examples/signalr/testhub.py``'s app, served in this test's nursery; the client
negotiates, opens its WebSocket and shakes hands as the official clients do.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio

import trio_ws
from examples.signalr.testhub import OPTIONS, build_app, generate_token
from trio_ws.signalr import (
    ClientState,
    HubClient,
    HubClientError,
    InvocationError,
    open_hub_client,
)

from ...helpers import IO_DEADLINE

# Fast reconnects: the restart test waits for them in real time.
QUICK_RETRIES = [0.0] + [0.05] * 100


@pytest.fixture
async def hub_url(nursery: trio.Nursery) -> str:
    server = await trio_ws.testing.start_server(nursery, build_app())
    return server.url.rstrip("/")


async def test_invoke_send_and_errors(hub_url: str) -> None:
    """invoke returns the result, send returns at once, an error completion raises InvocationError
    with the hub's text, and the connection id is the server's."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"{hub_url}/testhub") as hub:
            assert hub.state is ClientState.CONNECTED
            assert await hub.invoke("Echo", "héllo") == "héllo"
            assert await hub.invoke("GetCallerConnectionId") == hub.connection_id
            await hub.send("Echo", "nobody waits")
            with pytest.raises(InvocationError) as failed:
                await hub.invoke("ThrowException", "boom")
            assert str(failed.value) == (
                "An unexpected error occurred invoking 'ThrowException' on the server. "
                "InvalidOperationException: boom"
            )
            assert await hub.invoke("GetActiveTransportName") == "WebSockets"
        assert _state(hub) is ClientState.DISCONNECTED
        assert hub.error is None


async def test_streams_both_ways(hub_url: str) -> None:
    """A server stream arrives item by item and ends; leaving one early cancels it on the server;
    an async iterable argument is uploaded as a stream, and its failure reaches the hub."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"{hub_url}/testhub") as hub:
            async with hub.stream("Stream") as items:
                assert [item async for item in items] == ["a", "b", "c"]
            cancelled = trio.Event()
            hub.on("StreamCanceled", cancelled.set)
            async with hub.stream("InfiniteStream"):
                pass  # leaving the block cancels the stream
            await cancelled.wait()

            async def words() -> AsyncIterator[str]:
                for word in ("Hello ", "world", "!"):
                    yield word

            assert await hub.invoke("StreamingConcat", words()) == "Hello world!"

            async def broken() -> AsyncIterator[str]:
                yield "partial"
                raise ValueError("Something bad")

            with pytest.raises(InvocationError, match="HubException: ValueError: Something bad"):
                await hub.invoke("StreamingConcat", broken())
            async with hub.stream("StreamThrowException", "oops") as items:
                with pytest.raises(InvocationError, match="InvalidOperationException: oops"):
                    async for _ in items:
                        pass


async def test_client_results(hub_url: str) -> None:
    """A handler's return value is the server's client result; a handler that raises, or none at
    all, answers the error the server reports."""
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=hub_url) as http:

            async def ask(connection_id: str | None) -> str:
                return (await http.get("/clientresult", params={"id": connection_id})).text

            async with open_hub_client(f"{hub_url}/testhub") as hub:
                assert await ask(hub.connection_id) == "Client didn't provide a result."

                @hub.on("Result")
                async def result() -> int:
                    await trio.lowlevel.checkpoint()
                    return 42

                assert await ask(hub.connection_id) == "42"
                hub.off("result")

                def fail() -> int:
                    raise ValueError("from callback")

                hub.on("RESULT", fail)
                assert await ask(hub.connection_id) == "ValueError: from callback"
                assert await hub.invoke("Echo", "still open") == "still open"


async def test_messagepack_and_complex_objects(hub_url: str) -> None:
    """With MessagePack, bytes and dates travel as themselves."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"{hub_url}/testhub", protocol="messagepack") as hub:
            value = await hub.invoke("SendComplexObject")
            assert value["ByteArray"] == b"\x01\x02\x03"
            assert value["DateTime"] == datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
            assert await hub.invoke("Echo", "binary frames") == "binary frames"


async def test_skip_negotiation_and_headers(hub_url: str) -> None:
    """skip_negotiation opens the WebSocket directly (no connection id); headers reach the hub."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(
            f"{hub_url}/testhub", skip_negotiation=True, headers=[("X-Header", "value")]
        ) as hub:
            assert hub.connection_id is None
            assert await hub.invoke("GetHeader", "x-header") == "value"
            assert (await hub.invoke("GetHeader", "User-Agent")).startswith("trio_ws/")


async def test_tokens_redirects_and_refusals(hub_url: str) -> None:
    """A token (or a token function) opens /authorizedhub as its user; without one the first
    connect raises HubClientError with the 401; a negotiate redirect is followed."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"{hub_url}/authorizedhub", access_token=generate_token()) as hub:
            assert await hub.invoke("GetUserNameIdentifier") == "testuser"

        async def fresh_token() -> str:
            await trio.lowlevel.checkpoint()
            return generate_token()

        async with open_hub_client(f"{hub_url}/authorizedhub", access_token=fresh_token) as hub:
            assert await hub.invoke("Echo", "tokened") == "tokened"
        with pytest.raises(HubClientError) as refused:
            async with open_hub_client(f"{hub_url}/authorizedhub"):
                pytest.fail("connected without a token")
        assert refused.value.status == 401
        async with open_hub_client(f"{hub_url}/redirect?baseUrl={hub_url}") as hub:
            assert await hub.invoke("GetNumRedirects") >= 1


async def test_an_error_in_the_block_comes_out_as_itself(hub_url: str) -> None:
    """An exception raised inside ``async with open_hub_client(...)`` is not wrapped in a group."""
    with trio.fail_after(IO_DEADLINE), pytest.raises(KeyError):
        async with open_hub_client(f"{hub_url}/testhub"):
            raise KeyError("mine")


async def test_reconnects_across_a_server_restart(nursery: trio.Nursery) -> None:
    """When the server shuts down the client hears Close with allowReconnect, reconnects by
    itself once a server is back on the port, as a new connection; calls in between fail fast."""
    first: trio_ws.Server = await nursery.start(partial(trio_ws.serve, build_app(), "127.0.0.1", 0))
    port = first.port
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(f"http://127.0.0.1:{port}/testhub", reconnect=QUICK_RETRIES) as hub:
            before = hub.connection_id
            await first.aclose()
            with pytest.raises(HubClientError, match="while the client is reconnecting"):
                await hub.invoke("Echo", "nobody there")
            second: trio_ws.Server = await nursery.start(
                partial(trio_ws.serve, build_app(), "127.0.0.1", port)
            )
            await hub.wait_connected()
            assert hub.connection_id not in (None, before)
            assert await hub.invoke("GetCallerConnectionId") == hub.connection_id
            await second.aclose()
            hub_state_after = hub.state
        assert hub_state_after in (ClientState.RECONNECTING, ClientState.CONNECTED)


async def test_idle_longer_than_every_interval(nursery: trio.Nursery) -> None:
    """With the intervals shortened, a client idle for longer than the hub's keep-alive and client
    timeout plus its own keep-alive and server timeout stays connected, on the same connection."""
    options = dataclasses.replace(OPTIONS, keep_alive_interval=0.2, client_timeout=0.6)
    server = await trio_ws.testing.start_server(nursery, build_app(options))
    idle = 0.2 + 0.6 + 0.2 + 0.6 + 0.3
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(
            f"{server.url}testhub", keep_alive_interval=0.2, server_timeout=0.6
        ) as hub:
            before = await hub.invoke("GetCallerConnectionId")
            await trio.sleep(idle)  # the subject of this test is time passing
            assert hub.state is ClientState.CONNECTED
            assert await hub.invoke("GetCallerConnectionId") == before


def test_options_are_checked() -> None:
    """A client with a protocol it does not speak, or a bad interval, is refused up front."""
    with pytest.raises(ValueError, match="protocol"):
        trio.run(_open, {"protocol": "xml"})
    with pytest.raises(ValueError, match="seconds"):
        trio.run(_open, {"server_timeout": 0})


async def _open(options: dict[str, Any]) -> None:
    async with open_hub_client("http://127.0.0.1:9/hub", **options):
        pass


def _state(hub: HubClient) -> ClientState:
    """The client's state now (a function, so a type checker does not assume it unchanged)."""
    return hub.state
