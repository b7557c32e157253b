"""Hub filters: in order around calls, streams, connects and disconnects; refusing, changing
results and arguments; app-wide and per hub; nothing in the way when there are none."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import trio_ws
from trio_ws.signalr import (
    CallRefused,
    DisconnectReason,
    Hub,
    HubError,
    HubFilter,
    HubInvocationContext,
    HubLifetimeContext,
    HubOptions,
    HubServer,
    add_hub_filter,
    hub_method,
    map_hub,
    open_hub_client,
)
from trio_ws.signalr._hub.filters import NextConnected, NextDisconnected, NextInvoke
from trio_ws.signalr._protocol.messages import Close

from ...helpers import IO_DEADLINE
from ..helpers import assert_no_tracebacks, connect


class Sample(Hub):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def echo(self, text: str) -> str:
        self.events.append(f"echo {text}")
        return text

    @hub_method("addUp")
    async def add_up(self, a: int, b: int) -> int:
        return a + b

    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def on_connected(self) -> None:
        self.events.append("on_connected")

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.events.append(f"on_disconnected {reason.name}")


class Recorder(HubFilter):
    """Notes what it sees, before and after the rest of the pipeline."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events
        self.seen: list[HubInvocationContext] = []

    async def invoke(self, invocation: HubInvocationContext, next: NextInvoke) -> Any:
        self.seen.append(invocation)
        self.events.append(f"{self.name} before {invocation.method_name}")
        result = await next(invocation)
        self.events.append(f"{self.name} after {invocation.method_name}")
        return result

    async def on_connected(self, context: HubLifetimeContext, next: NextConnected) -> None:
        self.events.append(f"{self.name} connected {context.hub_name}")
        await next(context)

    async def on_disconnected(
        self, context: HubLifetimeContext, reason: DisconnectReason, next: NextDisconnected
    ) -> None:
        self.events.append(f"{self.name} disconnected {reason.name}")
        await next(context, reason)


async def serve(hub: Hub, filters: list[Any]) -> HubServer:
    return HubServer(hub, options=HubOptions(detailed_errors=False), filters=filters)


async def test_filters_run_in_order_around_calls_connects_and_disconnects() -> None:
    """The first filter given is the outermost; each sees the call, the connect and the disconnect."""
    hub = Sample()
    events = hub.events
    outer, inner = Recorder("outer", events), Recorder("inner", events)
    server = HubServer(hub, filters=[outer, inner])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server, user_id="ada") as client:
            assert await client.call("Echo", "hi") == "hi"
        await server.aclose()
    assert events == [
        "outer connected Sample",
        "inner connected Sample",
        "on_connected",
        "outer before Echo",
        "inner before Echo",
        "echo hi",
        "inner after Echo",
        "outer after Echo",
        "outer disconnected CLIENT_CLOSED",
        "inner disconnected CLIENT_CLOSED",
        "on_disconnected CLIENT_CLOSED",
    ]
    invocation = outer.seen[0]
    assert invocation.hub is hub
    assert invocation.hub_name == "Sample"
    assert (invocation.method_name, invocation.python_name, invocation.target) == ("Echo", "echo", "Echo")
    assert invocation.arguments == ["hi"]
    assert invocation.invocation_id == "1"
    assert not invocation.streaming
    assert invocation.caller.user_id == "ada"
    assert invocation.caller.transport == "Memory"
    assert invocation.caller.connection_id
    assert invocation.identity is None  # no auth hook: no identity
    assert inner.seen == [invocation]  # one context, handed down


async def test_a_plain_async_function_filters_calls_and_can_change_arguments_and_results() -> None:
    """``async def f(invocation, next)`` is a filter; it may change the arguments and the result."""

    async def doubled(invocation: HubInvocationContext, next: NextInvoke) -> Any:
        if invocation.method_name == "addUp":
            invocation.arguments[0] *= 10
            return await next(invocation) * 2
        return await next(invocation)

    server = HubServer(Sample(), filters=[doubled])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            assert await client.call("addUp", 1, 2) == 24  # (1 * 10 + 2) * 2
            assert await client.call("Echo", "same") == "same"
        await server.aclose()


async def test_a_filter_refuses_with_its_own_text_and_the_connection_stays_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``CallRefused``'s text is the error, exactly; a ``HubError`` reads as a hub method's would;
    the method never runs, nothing is logged above DEBUG, and later calls go on."""
    hub = Sample()

    async def gate(invocation: HubInvocationContext, next: NextInvoke) -> Any:
        if invocation.arguments == ["no"]:
            raise CallRefused("Not today.", outcome="closed")
        if invocation.arguments == ["hub error"]:
            raise HubError("ask later")
        return await next(invocation)

    server = HubServer(hub, filters=[gate])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            refused = await client.invoke("Echo", "no")
            assert refused.error == "Not today."
            hub_error = await client.invoke("Echo", "hub error")
            assert hub_error.error == (
                "An unexpected error occurred invoking 'Echo' on the server. HubException: ask later"
            )
            assert await client.call("Echo", "yes") == "yes"
        await server.aclose()
    assert "echo no" not in hub.events and "echo yes" in hub.events
    assert_no_tracebacks(caplog)


async def test_a_filter_that_fails_is_a_bug_reported_as_the_method_would_be(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any other exception from a filter gets ASP.NET's unexpected-error text and a logged traceback."""

    async def broken(invocation: HubInvocationContext, next: NextInvoke) -> Any:
        raise KeyError("oops")

    server = HubServer(Sample(), filters=[broken])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            completion = await client.invoke("Echo", "x")
            assert completion.error == "An unexpected error occurred invoking 'Echo' on the server."
        await server.aclose()
    assert any(record.exc_info for record in caplog.records)


async def test_a_filter_sees_a_stream_as_it_begins_and_may_wrap_its_items() -> None:
    """For a streaming method ``next`` returns the stream; a filter may return another iterator."""
    seen: list[HubInvocationContext] = []

    async def squares(invocation: HubInvocationContext, next: NextInvoke) -> Any:
        seen.append(invocation)
        items = await next(invocation)
        if not invocation.streaming:
            return items

        async def squared() -> AsyncIterator[int]:
            async with contextlib.aclosing(items):  # the method's stream is closed with this one
                async for item in items:
                    yield item * item

        return squared()

    server = HubServer(Sample(), filters=[squares])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            items, completion = await client.stream("Count", 4)
            assert items == [0, 1, 4, 9]
            assert completion.error is None
        await server.aclose()
    assert seen[0].streaming and seen[0].method_name == "Count"


async def test_a_filter_may_refuse_a_stream() -> None:
    """A refused stream call ends with a Completion carrying the refusal's text, and no items."""

    async def no_streams(invocation: HubInvocationContext, next: NextInvoke) -> Any:
        if invocation.streaming:
            raise CallRefused("No streams here.")
        return await next(invocation)

    server = HubServer(Sample(), filters=[no_streams])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            items, completion = await client.stream("Count", 3)
            assert (items, completion.error) == ([], "No streams here.")
            assert await client.call("Echo", "still open") == "still open"
        await server.aclose()


async def test_an_on_connected_filter_may_refuse_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    """A filter raising ``HubError`` around ``on_connected`` closes the connection with its reason
    (the hub's own hook never runs), logged without a traceback."""
    hub = Sample()

    class Closed(HubFilter):
        async def on_connected(self, context: HubLifetimeContext, next: NextConnected) -> None:
            raise HubError("the hub is closed for maintenance")

    server = HubServer(hub, filters=[Closed()])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            close = await client.receive_close()
            assert close == Close(
                "Connection closed with an error. HubException: the hub is closed for maintenance",
                allow_reconnect=False,
            )
        await server.aclose()
    assert hub.events == []
    assert_no_tracebacks(caplog)


async def test_filters_must_be_filters() -> None:
    """A class instead of an instance, or a plain function, is refused when given."""
    with pytest.raises(TypeError, match="instance of Recorder"):
        HubServer(Sample(), filters=[Recorder])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="async def f"):
        HubServer(Sample(), filters=[lambda invocation, next: None])  # type: ignore[list-item,return-value]


async def test_app_filters_run_before_the_hubs_own_over_real_sockets(nursery: trio.Nursery) -> None:
    """``add_hub_filter`` reaches every hub on the app (mapped before or after), ahead of ``filters=``."""
    app = trio_ws.App()
    events: list[str] = []
    first, second = Sample(), Sample()
    map_hub(app, "/first", first, filters=[Recorder("first's", events)])
    add_hub_filter(app, Recorder("app", events))
    map_hub(app, "/second", second)
    server = await trio_ws.testing.start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(server.url + "first") as client:
            assert await client.invoke("Echo", "one") == "one"
        async with open_hub_client(server.url + "second") as client:
            assert await client.invoke("Echo", "two") == "two"
    calls = [event for event in events if "before" in event or "after" in event]
    assert calls == [
        "app before Echo",
        "first's before Echo",
        "first's after Echo",
        "app after Echo",
        "app before Echo",
        "app after Echo",
    ]


async def test_without_filters_a_method_has_no_pipeline() -> None:
    """No filter, no requirement: the method is called directly (nothing is built for it)."""
    server = HubServer(Sample())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        assert server.pipelines == {}
        assert server.connected is None and server.disconnected is None
        await server.aclose()
    only_calls = HubServer(Sample(), filters=[Recorder("r", [])])
    async with trio.open_nursery() as nursery:
        await nursery.start(only_calls.run)
        assert set(only_calls.pipelines) == {"echo", "addup", "count"}
        await only_calls.aclose()
