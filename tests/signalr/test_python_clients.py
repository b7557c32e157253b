"""Python's own SignalR clients against the conformance hub: pysignalr (asyncio) and signalrcore
(threads). Both negotiate at version 0; pysignalr connects over WebSockets, signalrcore over
WebSockets, Server-Sent Events and Long Polling.

The hub runs in a thread with its own ``trio.run``; each client runs as its library means it to
(``asyncio.run`` for pysignalr, signalrcore's own threads), and each wait is bounded. The idle
cases wait, in real time, longer than every keep-alive interval and timeout on the way (the
hub's, the WebSocket's and the client's), shortened so that takes seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

import trio_ws
from examples.signalr.testhub import OPTIONS, build_app

from .helpers import served_in_thread

DEADLINE = 15.0
# The hub's keep-alive and client timeout, and trio_ws's WebSocket keep-alive interval and
# timeout (which hub routes do not use: signalrcore never answers a WebSocket ping), all
# shortened; idle waits past them all, plus each client's own keep-alive. signalrcore checks
# whether to ping once a second, so the hub's client timeout must be longer than its interval
# plus that second, as ASP.NET's 30 s is longer than 15 s plus it.
HUB = dataclasses.replace(OPTIONS, keep_alive_interval=0.25, client_timeout=2.0)
SERVER = trio_ws.Options(keep_alive_interval=0.25, keep_alive_timeout=0.5)
CLIENT_KEEP_ALIVE = 0.25
IDLE = 0.25 + 2.0 + 0.25 + 0.5 + CLIENT_KEEP_ALIVE + 0.5


@pytest.fixture(scope="module")
def hub_url() -> Iterator[str]:
    with served_in_thread(build_app(HUB), SERVER) as url:
        yield url


def _client_result(base: str, connection_id: str) -> str:
    with urllib.request.urlopen(f"{base}/clientresult?id={connection_id}", timeout=DEADLINE) as answer:
        text: str = answer.read().decode()
        return text


# -- pysignalr ------------------------------------------------------------------------------------


def test_pysignalr_calls_streams_and_answers_client_results(hub_url: str) -> None:
    """pysignalr connects, gets results and errors, uploads a stream, answers a client result, and
    stays connected while idle past every interval."""
    from pysignalr.client import SignalRClient

    outcome: dict[str, Any] = {}

    async def session() -> None:
        # Its hub Ping every second (whole seconds only), under the hub's 2 s client timeout.
        # Typed Any: pysignalr annotates a call's arguments as a list of dicts, which they need not be.
        client: Any = SignalRClient(f"{hub_url}/testhub", ping_interval=1, signalr_ping_interval=1)
        opened = asyncio.Event()
        answers: asyncio.Queue[Any] = asyncio.Queue()

        async def on_open() -> None:
            opened.set()

        async def result(args: list[Any]) -> int:
            return 10

        async def on_completion(message: Any) -> None:
            await answers.put(message)

        async def on_error(message: Any) -> None:
            outcome.setdefault("errors seen", 0)
            outcome["errors seen"] += 1  # pysignalr wants this set; the completion comes below too

        client.on_open(on_open)
        client.on_error(on_error)
        client.on("Result", result)
        runner = asyncio.create_task(client.run())
        try:
            await asyncio.wait_for(opened.wait(), DEADLINE)
            await client.send("Echo", ["héllo"], on_completion)
            outcome["echo"] = (await asyncio.wait_for(answers.get(), DEADLINE)).result
            await client.send("ThrowException", ["boom"], on_completion)
            outcome["error"] = (await asyncio.wait_for(answers.get(), DEADLINE)).error
            await client.send("GetCallerConnectionId", [], on_completion)
            connection_id = (await asyncio.wait_for(answers.get(), DEADLINE)).result
            outcome["client result"] = await asyncio.to_thread(_client_result, hub_url, connection_id)
            async with client.client_stream("StreamingConcat") as stream:
                for word in ("a", "b", "c"):
                    await stream.send(word)
            await asyncio.sleep(IDLE)  # the subject of the idle case: time passing
            await client.send("GetCallerConnectionId", [], on_completion)
            outcome["same connection"] = (
                await asyncio.wait_for(answers.get(), DEADLINE)
            ).result == connection_id
        finally:
            runner.cancel()

    asyncio.run(session())
    assert outcome == {
        "echo": "héllo",
        "error": "An unexpected error occurred invoking 'ThrowException' on the server. "
        "InvalidOperationException: boom",
        "errors seen": 1,
        "client result": "10",
        "same connection": True,
    }


def _stream_items(hub: Any, method: str, attempts: int = 3) -> list[Any]:
    """The items of a signalrcore stream, once it has completed (or failed).

    signalrcore subscribes only after sending the call, so when the server's answer wins that race
    (a loaded machine) even the completion is dropped ("no callback configured"): the call is then
    made again, on the same connection.
    """
    for _ in range(attempts):
        items = _stream_once(hub, method, DEADLINE / attempts)
        if items is not None:
            return items
    raise AssertionError(f"{method} did not complete in {attempts} attempts")


def _stream_once(hub: Any, method: str, wait: float) -> list[Any] | None:
    """One stream call's items, or ``None`` if its end did not come within ``wait`` seconds."""
    items: list[Any] = []
    done = threading.Event()
    hub.stream(method, []).subscribe(
        {"next": items.append, "complete": lambda _: done.set(), "error": lambda _: done.set()}
    )
    return items if done.wait(wait) else None


# -- signalrcore ----------------------------------------------------------------------------------


def test_signalrcore_calls_and_stays_connected_while_idle(hub_url: str) -> None:
    """signalrcore (threads, its own WebSocket client, which never answers a WebSocket ping)
    connects, invokes and streams, and stays connected, on the same connection, while idle past
    every interval."""
    from signalrcore.hub_connection_builder import HubConnectionBuilder

    hub = (
        HubConnectionBuilder()
        .with_url(f"{hub_url}/testhub")
        .with_automatic_reconnect(
            {"type": "raw", "keep_alive_interval": CLIENT_KEEP_ALIVE, "max_attempts": 0}
        )
        .build()
    )
    opened, closed = threading.Event(), threading.Event()
    hub.on_open(opened.set)
    hub.on_close(closed.set)
    results: dict[str, Any] = {}
    arrived = threading.Event()

    def answer(name: str) -> Any:
        def keep(message: Any) -> None:
            results[name] = message.result if message.error is None else f"error: {message.error}"
            arrived.set()

        return keep

    def call(name: str, method: str, *args: Any) -> Any:
        arrived.clear()
        hub.send(method, list(args), answer(name))
        assert arrived.wait(DEADLINE), f"no answer to {method}"
        return results[name]

    hub.start()
    try:
        assert opened.wait(DEADLINE), "signalrcore did not connect"
        assert call("echo", "Echo", "hi") == "hi"
        first = call("id", "GetCallerConnectionId")
        # signalrcore subscribes to a stream only after sending the call, so items that arrive at
        # once may be dropped ("no callback configured"); what it gets is the stream's tail, in
        # order, then its end (which _stream_items waits for).
        items = _stream_items(hub, "Stream")
        assert items == ["a", "b", "c"][3 - len(items) :]
        time.sleep(IDLE)  # the subject of the idle case: time passing
        assert not closed.is_set(), "signalrcore's connection closed while idle"
        assert call("again", "GetCallerConnectionId") == first
    finally:
        hub.stop()


# Polls held briefly: signalrcore takes one message per poll answer (see below), and an empty
# answer is what hands it the next one it already has.
HTTP_HUB = dataclasses.replace(HUB, long_polling_timeout=0.25)


@pytest.fixture(scope="module")
def http_hub_url() -> Iterator[str]:
    with served_in_thread(build_app(HTTP_HUB), SERVER) as url:
        yield url


@pytest.mark.parametrize("transport", ["server_sent_events", "long_polling"])
def test_signalrcore_over_server_sent_events_and_long_polling(http_hub_url: str, transport: str) -> None:
    """signalrcore over SSE and over Long Polling: calls, the hub's sends, every stream item, and
    the same connection after idling past every interval. Over Long Polling it reads only the
    first message of each poll answer (its own bug), so the rest come as later polls return."""
    from signalrcore.hub_connection_builder import HubConnectionBuilder
    from signalrcore.types import HttpTransportType

    hub = (
        HubConnectionBuilder()
        .with_url(f"{http_hub_url}/testhub", options={"transport": HttpTransportType[transport]})
        .with_automatic_reconnect(
            {"type": "raw", "keep_alive_interval": CLIENT_KEEP_ALIVE, "max_attempts": 0}
        )
        .build()
    )
    opened, closed = threading.Event(), threading.Event()
    hub.on_open(opened.set)
    hub.on_close(closed.set)
    messages: list[str] = []
    got_message = threading.Event()

    def on_message(arguments: list[Any]) -> None:
        messages.extend(arguments)
        got_message.set()

    hub.on("Message", on_message)
    answers: dict[str, Any] = {}
    arrived = threading.Event()

    def call(method: str, *args: Any) -> Any:
        arrived.clear()

        def keep(message: Any) -> None:
            answers[method] = message.result if message.error is None else f"error: {message.error}"
            arrived.set()

        hub.send(method, list(args), keep)
        assert arrived.wait(DEADLINE), f"no answer to {method}"
        return answers[method]

    hub.start()
    try:
        assert opened.wait(DEADLINE), "signalrcore did not connect"
        assert call("GetActiveTransportName") == {"server_sent_events": "ServerSentEvents"}.get(
            transport, "LongPolling"
        )
        assert call("Echo", "hi") == "hi"
        first = call("GetCallerConnectionId")
        hub.send("InvokeWithString", ["pushed"])  # the hub sends "Message" back, unasked
        assert got_message.wait(DEADLINE)
        assert messages == ["pushed"]
        if transport == "long_polling":
            # Over SSE signalrcore subscribes too late for items that come at once (they are
            # dropped as "no callback configured"); over Long Polling they come a poll apart.
            assert _stream_items(hub, "Stream") == ["a", "b", "c"]
        time.sleep(IDLE)  # the subject of the idle case: time passing
        assert not closed.is_set(), "signalrcore's connection closed while idle"
        assert call("GetCallerConnectionId") == first
    finally:
        hub.stop()
