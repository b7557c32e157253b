"""``GET /metrics``: the names, labels and values a Prometheus server scrapes, in one process.

The exposition is parsed with prometheus_client's own parser, so what is
checked is what Prometheus reads. The multi-worker server, scraped by a real
Prometheus, is in tests/observe/test_metrics_prometheus.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

import trio_ws
from trio_ws._observe.metrics import Metrics, close_code_label
from trio_ws.signalr import (
    DisconnectReason,
    HttpTransportType,
    Hub,
    HubError,
    HubOptions,
    HubServer,
    InvocationError,
    authorize,
    map_hub,
    open_hub_client,
    rate_limit,
)
from trio_ws.signalr._protocol.messages import StreamInvocation

from ..helpers import start_server
from ..raw import http_exchange, parse_response
from ..signalr.helpers import connect

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> tuple[dict[str, str], Samples]:
    """The server's metrics: the response headers, and every sample by name and labels."""
    raw = await http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse_response(raw)
    assert status == 200, body
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return headers, samples


async def scrape_when(port: int, ready: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``ready`` holds: the server has caught up with what the client did (a close, a
    connection's end), which a client cannot otherwise see happen."""
    with trio.fail_after(10):
        while True:
            _, samples = await scrape(port)
            if ready(samples):
                return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (summed over the others); 0 if none."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for n, ls in samples if n == name and label in dict(ls)}


class Counter(Hub):
    async def add(self, a: int, b: int) -> int:
        return a + b

    async def fail(self) -> None:
        raise HubError("no")

    @authorize(roles=["admin"])
    async def purge(self) -> None:
        pass

    @rate_limit(1, per=60.0)
    async def once(self) -> str:
        return "ok"

    async def count(self, n: int) -> AsyncIterator[int]:
        for number in range(n):
            yield number

    async def forever(self) -> AsyncIterator[int]:
        while True:
            yield 1
            await trio.sleep(0.01)


def hub_app() -> trio_ws.App:
    app = trio_ws.App()
    map_hub(app, "/counter", Counter(), auth=None)

    @app.route("/items/{id}")
    async def item(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, request.path_params["id"])

    return app


async def test_without_the_option_metrics_are_not_served(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, trio_ws.echo_app())
    assert server.metrics is None
    raw = await http_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert parse_response(raw)[0] == 404


async def test_http_requests_by_declared_route_method_and_status(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, hub_app(), metrics=True)
    for target in (b"/items/1", b"/items/2", b"/no/such/thing", b"/%ff%fe-unknown", b"/healthz"):
        await http_exchange(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    await http_exchange(server.port, b"BREW /items/3 HTTP/1.1\r\nHost: x\r\n\r\n")
    headers, samples = await scrape(server.port)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    count = "http_server_request_duration_seconds_count"
    assert value(samples, count, http_route="/items/{id}", http_response_status_code="200") == 2
    assert value(samples, count, http_route="/healthz", http_response_status_code="200") == 1
    # Paths nobody declared share one empty route label, whatever they were.
    assert value(samples, count, http_route="", http_response_status_code="404") == 2
    assert label_values(samples, count, "http_route") == {"/items/{id}", "", "/healthz"}
    # A method outside the standard ones is _OTHER, as OpenTelemetry names it.
    assert value(samples, count, http_request_method="_OTHER", http_response_status_code="405") == 1
    assert value(samples, count, http_request_method="GET", network_protocol_version="1.1", url_scheme="http")
    buckets = "http_server_request_duration_seconds_bucket"
    assert value(samples, buckets, http_route="/items/{id}", le="10.0") == 2
    # The scrape itself is the only request in flight.
    assert value(samples, "http_server_active_requests", http_request_method="GET") == 1
    assert value(samples, "http_server_active_requests", http_request_method="_OTHER") == 0


async def test_raw_websockets_messages_bytes_and_closes(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, trio_ws.echo_app(), metrics=True)
    async with open_websocket_url(server.ws_url("/ws")) as ws:
        for text in ("one", "two", "three"):
            await ws.send_message(text)
            assert await ws.get_message() == text
        _, samples = await scrape(server.port)
        assert value(samples, "trio_ws_websocket_active_connections") == 1
    async with open_websocket_url(server.ws_url("/ws")) as ws:
        await ws.aclose(4001, "bye")
    samples = await scrape_when(
        server.port, lambda samples: value(samples, "trio_ws_websocket_active_connections") == 0
    )
    assert value(samples, "trio_ws_websocket_connections_total") == 2
    assert value(samples, "trio_ws_websocket_active_connections") == 0
    assert value(samples, "trio_ws_websocket_received_messages_total") == 3
    assert value(samples, "trio_ws_websocket_sent_messages_total") == 3
    # Masked frames in, plain ones out, each with its header; the closes too.
    assert value(samples, "trio_ws_websocket_received_bytes_total") >= 3 + 3 + 5 + 3 * 6
    assert value(samples, "trio_ws_websocket_sent_bytes_total") >= 3 + 3 + 5 + 3 * 2
    assert value(samples, "trio_ws_websocket_closes_total", code="1000") == 1
    assert value(samples, "trio_ws_websocket_closes_total", code="4xxx") == 1
    count = "http_server_request_duration_seconds_count"
    assert value(samples, count, http_route="/ws", http_response_status_code="101") == 2


def test_close_codes_are_bounded() -> None:
    labels = {close_code_label(code) for code in range(0, 70000)}
    assert labels == {str(code) for code in range(1000, 1016)} | {"3xxx", "4xxx", "other"}


async def _hub_calls(url: str, transport: HttpTransportType) -> None:
    async with open_hub_client(url, transport=transport) as hub:
        assert await hub.invoke("Add", 2, 3) == 5


async def test_hub_connections_by_transport_and_status(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, hub_app(), metrics=True)
    url = f"{server.url}counter"
    async with open_hub_client(url, transport=HttpTransportType.WEBSOCKETS) as hub:
        assert await hub.invoke("Add", 1, 1) == 2
        _, samples = await scrape(server.port)
        active = "signalr_server_active_connections"
        assert value(samples, active, signalr_transport="web_sockets") == 1
    for transport in (HttpTransportType.SERVER_SENT_EVENTS, HttpTransportType.LONG_POLLING):
        await _hub_calls(url, transport)
    samples = await scrape_when(
        server.port, lambda samples: value(samples, "signalr_server_active_connections") == 0
    )
    assert value(samples, "signalr_server_active_connections") == 0
    duration = "signalr_server_connection_duration_seconds_count"
    for label in ("web_sockets", "server_sent_events", "long_polling"):
        ended = {"signalr_transport": label, "signalr_connection_status": "normal_closure"}
        assert value(samples, duration, **ended) == 1
    assert label_values(samples, duration, "signalr_transport") <= {
        "web_sockets",
        "server_sent_events",
        "long_polling",
    }
    bucket = "signalr_server_connection_duration_seconds_bucket"
    assert label_values(samples, bucket, "le") == {
        *("0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0", "2.0", "5.0", "10.0"),
        *("30.0", "60.0", "120.0", "300.0", "+Inf"),
    }


async def test_hub_connections_open_at_shutdown_end_as_app_shutdown(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, hub_app(), metrics=True)
    assert server.metrics is not None
    async with open_hub_client(f"{server.url}counter") as hub:
        assert await hub.invoke("Add", 1, 1) == 2
        await server.aclose()
    text = server.metrics.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    statuses = {
        s.labels["signalr_connection_status"]
        for s in families["signalr_server_connection_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert statuses == {"app_shutdown"}


def test_metrics_need_the_path_free() -> None:
    app = trio_ws.App()

    @app.route("/metrics")
    async def mine(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, "mine")

    with pytest.raises(ValueError, match="routes /metrics itself"):
        trio_ws.Server(app, [], trio_ws.Options(metrics=True))
    trio_ws.Server(app, [], trio_ws.Options())  # without metrics the app's route is the app's


def test_options_refuse_a_metrics_value_that_is_not_a_bool() -> None:
    with pytest.raises(ValueError, match="metrics must be True or False"):
        trio_ws.Options(metrics="yes")  # type: ignore[arg-type]


async def test_hub_invocations_by_method_and_outcome(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, hub_app(), metrics=True)
    async with open_hub_client(f"{server.url}counter") as hub:
        for _ in range(3):
            assert await hub.invoke("Add", 1, 2) == 3
        with pytest.raises(InvocationError, match="no"):
            await hub.invoke("Fail")
        with pytest.raises(InvocationError, match="unauthorized"):
            await hub.invoke("Purge")
        assert await hub.invoke("Once") == "ok"
        with pytest.raises(InvocationError):
            await hub.invoke("Once")
        with pytest.raises(InvocationError):
            await hub.invoke("NoSuchMethod")  # answered before any filter: not counted
        async with hub.stream("Count", 3) as items:
            assert [item async for item in items] == [0, 1, 2]
        async with hub.stream("Forever") as items:
            async for _ in items:
                break  # leaving the block cancels the stream
        # The stream left early ends on the server once its CancelInvocation arrives.
        cancelled = {"method": "Forever", "outcome": "cancelled"}
        samples = await scrape_when(
            server.port, lambda samples: value(samples, "trio_ws_hub_invocations_total", **cancelled) == 1
        )
    total = "trio_ws_hub_invocations_total"
    assert value(samples, total, hub="Counter", method="Add", outcome="ok") == 3
    assert value(samples, total, method="Fail", outcome="error") == 1
    assert value(samples, total, method="Purge", outcome="unauthorized") == 1
    assert value(samples, total, method="Once", outcome="ok") == 1
    assert value(samples, total, method="Once", outcome="rate_limited") == 1
    assert value(samples, total, method="Count", outcome="ok") == 1
    assert value(samples, total, method="Forever", outcome="cancelled") == 1
    assert label_values(samples, total, "method") == {"Add", "Fail", "Purge", "Once", "Count", "Forever"}
    duration = "trio_ws_hub_invocation_duration_seconds_count"
    assert value(samples, duration, hub="Counter", method="Add") == 3
    assert value(samples, duration) == 9


class Feed(Hub):
    def __init__(self) -> None:
        self.gone = trio.Event()

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.gone.set()

    async def items(self, count: int) -> AsyncIterator[str]:
        for _ in range(count):
            yield "x" * 4096


async def test_a_client_closed_as_too_slow_is_counted(autojump_clock: trio.testing.MockClock) -> None:
    metrics = Metrics(None)
    hub = Feed()
    server = HubServer(hub, options=HubOptions(close_timeout=1))
    server.instrument(metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server, stream_pair=trio.testing.lockstep_stream_pair) as client:
            await client.send(StreamInvocation("s", "Items", (10_000,)))  # and never read
            await hub.gone.wait()
        await server.aclose()
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    (closed,) = families["trio_ws_hub_slow_client_closes"].samples
    assert closed.labels == {"hub": "Feed"} and closed.value == 1
    (stream,) = [s for s in families["trio_ws_hub_invocations"].samples if s.labels["method"] == "Items"]
    assert stream.labels["outcome"] == "cancelled"
