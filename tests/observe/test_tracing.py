"""Traces: a span per HTTP request and per hub call, joined to the caller's trace through ``traceparent``.

In one process the spans go to the OpenTelemetry SDK's ``InMemorySpanExporter``
(the server is given the SDK's tracer as ``configure_from_environment`` or
``opentelemetry-instrument`` would set it up); the command line's own set-up
from the ``OTEL_*`` variables is checked on a real process, with the console
exporter.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import trio_ws
import trio_ws._server.server
from trio_ws._observe.tracing import kept_trace
from trio_ws.signalr import (
    Backplane,
    Hub,
    HubError,
    InvocationError,
    RedisBackplane,
    map_hub,
    open_hub_client,
)

from ..helpers import start_server
from ..raw import http_exchange, parse_response
from ..signalr.helpers import open_hub_websocket
from ..signalr.redis_helpers import RedisServer, redis, redis_server

__all__ = ["redis", "redis_server"]  # fixtures, imported for pytest

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
OTHER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_SPAN = "00f067aa0ba902b7"


class Shop(Hub):
    async def buy(self, item: str) -> str:
        return f"bought {item}"

    async def refund(self) -> None:
        raise HubError("no refunds")

    async def prices(self) -> AsyncIterator[int]:
        for price in (1, 2):
            yield price


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Servers started in the test trace to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trio_ws._server.server, "tracer", lambda: provider.get_tracer("trio_ws"))
    yield exporter
    provider.shutdown()


def shop_app(backplane: Backplane | None = None) -> trio_ws.App:
    app = trio_ws.App()
    map_hub(app, "/shop", Shop(), auth=None, backplane=backplane)

    @app.route("/orders/{id}")
    async def order(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, "order")

    return app


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def joined_to_caller(span: ReadableSpan, trace_id: str = TRACE_ID, parent_id: str = CALLER_SPAN) -> bool:
    assert span.context is not None
    return (
        span.parent is not None
        and format(span.context.trace_id, "032x") == trace_id
        and format(span.parent.span_id, "016x") == parent_id
    )


async def test_http_request_spans(nursery: trio.Nursery, spans: InMemorySpanExporter) -> None:
    server = await start_server(nursery, shop_app())
    head = f"GET /orders/7?x=1 HTTP/1.1\r\nHost: x\r\ntraceparent: {TRACEPARENT}\r\n\r\n".encode()
    assert parse_response(await http_exchange(server.port, head))[0] == 200
    assert (
        parse_response(await http_exchange(server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == 404
    )
    found = by_name(spans)
    (routed,) = found["GET /orders/{id}"]
    assert routed.kind is SpanKind.SERVER
    assert joined_to_caller(routed)
    assert dict(routed.attributes or {}) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/orders/7",
        "url.query": "x=1",
        "network.protocol.version": "1.1",
        "http.route": "/orders/{id}",
        "http.response.status_code": 200,
    }
    (unrouted,) = found["GET"]  # no route: the method alone names it, as the conventions say
    assert unrouted.parent is None  # no traceparent: a trace of its own
    assert (unrouted.attributes or {})["http.response.status_code"] == 404


async def test_hub_call_spans_join_the_callers_trace(
    nursery: trio.Nursery, spans: InMemorySpanExporter
) -> None:
    server = await start_server(nursery, shop_app())
    async with open_hub_client(f"{server.url}shop", headers=[("traceparent", TRACEPARENT)]) as hub:
        assert await hub.invoke("Buy", "tea") == "bought tea"
        with pytest.raises(InvocationError, match="no refunds"):
            await hub.invoke("Refund")
        async with hub.stream("Prices") as items:
            assert [price async for price in items] == [1, 2]
        await trio.testing.wait_all_tasks_blocked(0.05)
    found = by_name(spans)
    (call,) = found["Shop/Buy"]
    assert call.kind is SpanKind.SERVER
    assert joined_to_caller(call)
    attributes = dict(call.attributes or {})
    assert attributes["rpc.system"] == "signalr"
    assert attributes["rpc.service"] == "Shop"
    assert attributes["rpc.method"] == "Buy"
    assert call.status.status_code is StatusCode.UNSET
    (failed,) = found["Shop/Refund"]
    assert failed.status.status_code is StatusCode.ERROR
    assert joined_to_caller(failed)
    (stream,) = found["Shop/Prices"]
    assert (stream.attributes or {})["trio_ws.hub.outcome"] == "ok"
    # The negotiate and the upgrade are HTTP spans of the same trace.
    (negotiate,) = found["POST /shop/negotiate"]
    (upgrade,) = found["GET /shop"]
    assert joined_to_caller(negotiate) and joined_to_caller(upgrade)
    assert (upgrade.attributes or {})["http.response.status_code"] == 101


async def test_without_a_provider_nothing_is_traced(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, shop_app())
    assert server.tracer is None


def test_the_command_line_traces_from_otel_variables() -> None:
    """``OTEL_TRACES_EXPORTER=console``: the CLI sets the SDK up, and a call's span is printed."""
    script = f"""
import subprocess, sys, time, trio
from trio_ws.signalr import open_hub_client
proc = subprocess.Popen([sys.executable, "-m", "trio_ws", "examples.signalr.testhub:app", "--port", "0",
                         "--host", "127.0.0.1"], stdout=subprocess.PIPE, text=True)
url = None
for line in proc.stdout:
    if "listening on" in line:
        url = line.split("listening on ")[1].strip()
        break
async def main():
    async with open_hub_client(url + "testhub", headers=[("traceparent", "{TRACEPARENT}")]) as hub:
        assert await hub.invoke("Echo", "hi") == "hi"
trio.run(main)
proc.terminate()
print(proc.communicate(timeout=15)[0])
"""
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "shop-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=18, env=env, check=True
    )
    printed = _json_objects(done.stdout)
    (call,) = [span for span in printed if span.get("name") == "TestHub/Echo"]
    assert call["kind"] == "SpanKind.SERVER"
    assert call["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert call["parent_id"] == f"0x{CALLER_SPAN}"
    assert call["attributes"]["rpc.system"] == "signalr"
    assert call["resource"]["attributes"]["service.name"] == "shop-test"


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object printed in ``text`` (the console exporter prints them indented)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    index = text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        index = text.find("{", end)
    return found


async def negotiate(port: int, headers: dict[str, str]) -> str:
    """``POST /shop/negotiate`` with ``headers``: the connection's token."""
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://127.0.0.1:{port}/shop/negotiate?negotiateVersion=1", headers=headers
        )
    assert answer.status_code == 200
    token: str = answer.json()["connectionToken"]
    return token


async def buy_over_websocket(port: int, token: str, headers: dict[str, str] | None = None) -> None:
    """The connection's WebSocket (with ``headers`` on its upgrade, as a browser cannot), and one call."""
    async with open_hub_websocket(f"ws://127.0.0.1:{port}/shop?id={token}", headers=headers) as hub:
        assert await hub.call("Buy", "tea") == "bought tea"


async def test_calls_join_the_negotiates_trace_when_the_upgrade_names_none(
    nursery: trio.Nursery, spans: InMemorySpanExporter
) -> None:
    """A browser sends ``traceparent`` on negotiate only: the calls are children of that caller."""
    server = await start_server(nursery, shop_app())
    token = await negotiate(server.port, {"traceparent": TRACEPARENT, "tracestate": "shop=1, cart=tea"})
    await buy_over_websocket(server.port, token)
    found = by_name(spans)
    (call,) = found["Shop/Buy"]
    assert joined_to_caller(call)
    assert call.context is not None
    assert dict(call.context.trace_state) == {"shop": "1", "cart": "tea"}
    (upgrade,) = found["GET /shop"]
    assert upgrade.parent is None  # the upgrade itself named no caller


async def test_an_upgrades_own_traceparent_wins_over_the_negotiates(
    nursery: trio.Nursery, spans: InMemorySpanExporter
) -> None:
    server = await start_server(nursery, shop_app())
    token = await negotiate(server.port, {"traceparent": TRACEPARENT})
    await buy_over_websocket(server.port, token, {"traceparent": f"00-{OTHER_TRACE_ID}-{OTHER_SPAN}-01"})
    (call,) = by_name(spans)["Shop/Buy"]
    assert joined_to_caller(call, OTHER_TRACE_ID, OTHER_SPAN)


MALFORMED = [
    f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",  # upper-case hex
    f"00-{'0' * 32}-{CALLER_SPAN}-01",  # an all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # an all-zero parent id
    f"ff-{TRACE_ID}-{CALLER_SPAN}-01",  # the version that is never valid
    f"00-{TRACE_ID}-{CALLER_SPAN}-01-extra",  # version 00 has no more fields
    f"00-{TRACE_ID}-{CALLER_SPAN}",  # no flags
    f"01-{TRACE_ID}-{CALLER_SPAN}-01-{'x' * 300}",  # a later version, but far too long
    "not a traceparent",
]


@pytest.mark.parametrize("traceparent", MALFORMED)
async def test_a_malformed_traceparent_on_negotiate_is_ignored(
    nursery: trio.Nursery, spans: InMemorySpanExporter, traceparent: str
) -> None:
    server = await start_server(nursery, shop_app())
    token = await negotiate(server.port, {"traceparent": traceparent, "tracestate": "shop=1"})
    await buy_over_websocket(server.port, token)
    (call,) = by_name(spans)["Shop/Buy"]
    assert call.parent is None  # a trace of its own


def test_only_a_valid_bounded_trace_context_is_kept() -> None:
    def kept(*headers: tuple[str, str]) -> tuple[str, str] | None:
        return kept_trace(tuple((name.encode(), value.encode("latin-1")) for name, value in headers))

    assert kept(("traceparent", TRACEPARENT)) == (TRACEPARENT, "")
    assert kept(("traceparent", TRACEPARENT), ("tracestate", "a=1,b=2"), ("tracestate", " c@d=3 ")) == (
        TRACEPARENT,
        "a=1,b=2,c@d=3",
    )
    # A later version keeps the fields this version knows.
    assert kept(("traceparent", f"01-{TRACE_ID}-{CALLER_SPAN}-01-more")) == (
        f"01-{TRACE_ID}-{CALLER_SPAN}-01",
        "",
    )
    for traceparent in MALFORMED:
        assert kept(("traceparent", traceparent), ("tracestate", "a=1")) is None
    assert kept(("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)) is None  # which one?
    assert kept(("tracestate", "a=1")) is None
    # A tracestate that is malformed, repeats a key, has too many members or is too long: dropped.
    for tracestate in (
        "A=1",
        "a=1,a=2",
        "a=b=c d\x7f",
        "a=\u00e9",
        ",".join(f"k{number}=v" for number in range(33)),
        f"a={'v' * 255},b={'v' * 255},c=1",
    ):
        assert kept(("traceparent", TRACEPARENT), ("tracestate", tracestate)) == (TRACEPARENT, "")


async def test_the_negotiates_trace_reaches_the_worker_that_opens_the_connection(
    nursery: trio.Nursery, spans: InMemorySpanExporter, redis: RedisServer
) -> None:
    """Negotiate on one server, the WebSocket on another sharing a Redis backplane: the calls there
    join the negotiate's trace."""
    prefix = f"test:{secrets.token_hex(4)}"
    backplanes = [RedisBackplane(redis.url, prefix=prefix) for _ in range(2)]
    first, second = [await start_server(nursery, shop_app(backplane)) for backplane in backplanes]
    for backplane in backplanes:
        await backplane.wait_connected()
    token = await negotiate(first.port, {"traceparent": TRACEPARENT, "tracestate": "shop=1"})
    await buy_over_websocket(second.port, token)
    (call,) = by_name(spans)["Shop/Buy"]
    assert joined_to_caller(call)
    assert call.context is not None
    assert dict(call.context.trace_state) == {"shop": "1"}
