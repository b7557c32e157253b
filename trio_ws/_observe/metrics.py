"""Metrics in the Prometheus text format, served at ``GET /metrics`` with ``--metrics``.

The names are the ones the OpenTelemetry Prometheus exporter gives ASP.NET
Core's built-in metrics (``signalr_server_active_connections``,
``http_server_request_duration_seconds``...), so the dashboards and alerts
written for those work on a trio_ws deployment; trio_ws's own are named
``trio_ws_*``. docs/operating.md says what each one means.

Rules of this module:

* prometheus_client is imported only when metrics are on (it is an extra,
  ``trio_ws[metrics]``); with metrics off the server holds ``None`` where a
  ``Metrics`` would be, and each instrumented place costs one ``None`` check.
* One call per event: the server's code says what happened
  (``request_done``, ``websocket_closed``...), this module knows the names,
  labels and buckets.
* Label values are bounded, whatever peers send: a route label only for a
  route the app declared, a method label only for a method the hub has, HTTP
  methods outside the standard ones become ``_OTHER`` (as OpenTelemetry
  does), close codes outside RFC 6455's registry become their range.
* Under workers, every worker writes its figures to memory-mapped files in a
  directory the supervisor made (prometheus_client's multiprocess mode), and
  the worker that answers a scrape reads them all: counts are summed,
  histograms merged, gauges summed over the living workers.
* No ``*_created`` series are written (prometheus_client's
  ``disable_created_metrics``, which holds for the whole process), so a
  single process reads as a multi-worker one and as ASP.NET Core's.
* The busiest figures (WebSocket messages and bytes, hub calls) are counted
  in plain integers (``WebSocketTally``, ``HubMetrics``) and added to the
  shared counters once a second and before every scrape: a message costs
  an addition, not a write to a memory map under a lock. A histogram has no
  such bulk form, so a call's duration is observed as it ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.registry import CollectorRegistry


__all__ = [
    "CONTENT_TYPE",
    "METRICS_PATH",
    "MULTIPROCESS_ENV",
    "BackplaneMetrics",
    "HubMetrics",
    "Metrics",
    "WebSocketTally",
    "close_code_label",
    "forget_worker",
    "make_metrics",
    "metrics_path_taken",
    "server_route",
    "shared_metrics_dir",
]

#: Where prometheus_client's multiprocess mode keeps each worker's files.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The bucket boundaries OpenTelemetry's semantic conventions advise (and ASP.NET Core uses).
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
_CONNECTION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
# Backplane publishes are round trips to Redis on a local network: finer at the low end.
_BACKPLANE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_HTTP_LABELS = (
    "http_request_method",
    "http_response_status_code",
    "http_route",
    "network_protocol_version",
    "url_scheme",
)
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
# The close codes RFC 6455's registry defines; others are reported by range.
_CLOSE_CODES = frozenset(range(1000, 1016))

#: SignalR's transport names as ASP.NET's metrics spell them.
TRANSPORT_LABELS = {"WebSockets": "web_sockets", "ServerSentEvents": "server_sent_events"}
TRANSPORT_LABELS["LongPolling"] = "long_polling"

# How often the tally and the backplane's state are written to the shared figures.
_FLUSH_INTERVAL = 1.0


def close_code_label(code: int) -> str:
    """A close code as a label value: RFC 6455's own codes as themselves, the rest by range."""
    if code in _CLOSE_CODES:
        return str(code)
    if 3000 <= code <= 3999:
        return "3xxx"
    if 4000 <= code <= 4999:
        return "4xxx"
    return "other"


class WebSocketTally:
    """WebSocket traffic counted in plain integers, shared by every connection of a server."""

    __slots__ = ("bytes_in", "bytes_out", "messages_in", "messages_out")

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0


class Metrics:
    """Every instrument of one server, and the answer to a scrape.

    Made by ``make_metrics`` (which imports prometheus_client); the server
    keeps it as ``Server.metrics``, ``None`` when metrics are off.
    """

    def __init__(self, multiprocess_dir: str | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        # No *_created series: OpenTelemetry's exporter writes none, and under workers there are none.
        disable_created_metrics()  # type: ignore[no-untyped-call]

        self.multiprocess_dir = multiprocess_dir
        # Under workers the figures live in the files, and a scrape reads them all; a private
        # registry otherwise, so that two servers in one process don't mix their figures.
        registry = None if multiprocess_dir is not None else CollectorRegistry(auto_describe=True)
        self._registry = registry
        self.tally = WebSocketTally()
        self._flushed = WebSocketTally()
        self._probes: list[Callable[[], None]] = []
        self._hubs: list[HubMetrics] = []

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode="livesum")

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        # -- ASP.NET Core's names (meters Microsoft.AspNetCore.Hosting and ...Http.Connections)
        self.http_duration = histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            _HTTP_LABELS,
            _HTTP_BUCKETS,
        )
        self.http_active = gauge(
            "http_server_active_requests",
            "Number of active HTTP server requests.",
            ("http_request_method", "url_scheme"),
        )
        self.signalr_active = gauge(
            "signalr_server_active_connections",
            "Number of connections that are currently active on the server.",
            ("signalr_transport",),
        )
        self.signalr_duration = histogram(
            "signalr_server_connection_duration_seconds",
            "The duration of connections on the server.",
            ("signalr_connection_status", "signalr_transport"),
            _CONNECTION_BUCKETS,
        )
        # -- trio_ws's own: hubs
        self.invocations = counter(
            "trio_ws_hub_invocations",
            "Hub method invocations, by hub, method and outcome.",
            ("hub", "method", "outcome"),
        )
        self.invocation_duration = histogram(
            "trio_ws_hub_invocation_duration_seconds",
            "Duration of hub method invocations, from the call's arrival to its completion.",
            ("hub", "method"),
            _HTTP_BUCKETS,
        )
        self.slow_clients = counter(
            "trio_ws_hub_slow_client_closes",
            "Hub connections closed because the client did not read what was sent to it.",
            ("hub",),
        )
        # -- trio_ws's own: raw WebSockets
        self.ws_opened = counter("trio_ws_websocket_connections", "WebSocket connections opened.")
        self.ws_active = gauge("trio_ws_websocket_active_connections", "WebSocket connections open now.")
        self.ws_closes = counter(
            "trio_ws_websocket_closes", "WebSocket connections closed, by close code.", ("code",)
        )
        self._ws_messages_in = counter("trio_ws_websocket_received_messages", "WebSocket messages received.")
        self._ws_messages_out = counter("trio_ws_websocket_sent_messages", "WebSocket messages sent.")
        self._ws_bytes_in = counter("trio_ws_websocket_received_bytes", "Bytes received on WebSockets.")
        self._ws_bytes_out = counter("trio_ws_websocket_sent_bytes", "Bytes sent on WebSockets.")
        # -- trio_ws's own: the backplane
        self.backplane_connected = gauge(
            "trio_ws_backplane_connected",
            "Workers whose link to the hub's backplane (Redis) is up.",
            ("hub",),
        )
        self.backplane_publish = histogram(
            "trio_ws_backplane_publish_duration_seconds",
            "Time Redis took to take a batch of the hub's publishes.",
            ("hub",),
            _BACKPLANE_BUCKETS,
        )
        self.backplane_relayed = counter(
            "trio_ws_backplane_relayed_requests",
            "Requests relayed through the backplane to the worker holding a connection, by direction.",
            ("hub", "direction"),
        )

    # -- events ------------------------------------------------------------------------

    def request_started(self, method: str, scheme: str) -> None:
        self.http_active.labels(_http_method(method), scheme).inc()

    def request_done(
        self, method: str, scheme: str, status: int, route: str, version: str, seconds: float
    ) -> None:
        """A request answered (or upgraded, status 101); ``route`` is a declared route's path or ``""``."""
        method = _http_method(method)
        self.http_active.labels(method, scheme).dec()
        if status:
            self.http_duration.labels(method, str(status), route, version, scheme).observe(seconds)

    def websocket_opened(self) -> None:
        self.ws_opened.inc()
        self.ws_active.inc()

    def websocket_closed(self, code: int) -> None:
        self.ws_active.dec()
        self.ws_closes.labels(close_code_label(code)).inc()

    def hub(self, name: str, methods: frozenset[str]) -> HubMetrics:
        """The instruments of one hub, its label values fixed (its counts flushed with the tally's)."""
        hub = HubMetrics(self, name, methods)
        self._hubs.append(hub)
        return hub

    def forget_hub(self, hub: HubMetrics) -> None:
        hub.flush()
        if hub in self._hubs:
            self._hubs.remove(hub)

    def add_probe(self, probe: Callable[[], None]) -> Callable[[], None]:
        """Run ``probe`` once a second and before each scrape (a state to copy into a gauge)."""
        self._probes.append(probe)
        return probe

    def remove_probe(self, probe: Callable[[], None]) -> None:
        if probe in self._probes:
            self._probes.remove(probe)

    # -- the shared figures ----------------------------------------------------------------

    def flush(self) -> None:
        """Add what the tally counted since the last flush to the counters, and run the probes."""
        tally, flushed = self.tally, self._flushed
        for name, counter in (
            ("messages_in", self._ws_messages_in),
            ("messages_out", self._ws_messages_out),
            ("bytes_in", self._ws_bytes_in),
            ("bytes_out", self._ws_bytes_out),
        ):
            now = getattr(tally, name)
            added = now - getattr(flushed, name)
            if added:
                counter.inc(added)
                setattr(flushed, name, now)
        for hub in self._hubs:
            hub.flush()
        for probe in self._probes:
            probe()

    async def run(self) -> None:
        """Flush once a second, for as long as the server runs (a task of the server's)."""
        try:
            while True:
                await trio.sleep(_FLUSH_INTERVAL)
                self.flush()
        finally:
            self.flush()

    def render(self) -> bytes:
        """The answer to ``GET /metrics``: every worker's figures, in the Prometheus text format."""
        from prometheus_client import generate_latest

        self.flush()
        return generate_latest(self._scrape_registry())

    def _scrape_registry(self) -> CollectorRegistry:
        if self._registry is not None:
            return self._registry
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        # prometheus_client leaves this one untyped.
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return registry


class HubMetrics:
    """One hub's instruments: invocations, slow clients, connections and its backplane."""

    __slots__ = ("_calls", "_metrics", "_slow", "durations", "methods", "name")

    def __init__(self, metrics: Metrics, name: str, methods: frozenset[str]) -> None:
        self._metrics = metrics
        self.name = name
        self.methods = methods
        self._slow = metrics.slow_clients.labels(name)
        # Calls counted here since the last flush, by (method, outcome): an addition per call.
        self._calls: dict[tuple[str, str], int] = {}
        # Children made on first use and kept: labels() takes a lock and builds a tuple.
        self.durations: dict[str, Histogram] = {}

    def invoked(self, method: str, outcome: str, seconds: float) -> None:
        """A call of ``method`` ended: ``outcome`` is ok, error, unauthorized, rate_limited or cancelled."""
        if method not in self.methods:
            method = "_unknown"
        key = (method, outcome)
        calls = self._calls
        calls[key] = calls.get(key, 0) + 1
        duration = self.durations.get(method)
        if duration is None:
            duration = self.durations[method] = self._metrics.invocation_duration.labels(self.name, method)
        duration.observe(seconds)

    def flush(self) -> None:
        """Add the calls counted since the last flush to ``trio_ws_hub_invocations_total``."""
        calls, self._calls = self._calls, {}
        for (method, outcome), count in calls.items():
            self._metrics.invocations.labels(self.name, method, outcome).inc(count)

    def connection_started(self, transport: str) -> None:
        self._metrics.signalr_active.labels(TRANSPORT_LABELS.get(transport, "unknown")).inc()

    def connection_ended(self, transport: str, status: str, seconds: float) -> None:
        """A connection that had a transport ended: ``status`` is normal_closure, timeout or app_shutdown."""
        label = TRANSPORT_LABELS.get(transport, "unknown")
        self._metrics.signalr_active.labels(label).dec()
        self._metrics.signalr_duration.labels(status, label).observe(seconds)

    def slow_client_closed(self) -> None:
        self._slow.inc()

    def backplane(self) -> BackplaneMetrics:
        return BackplaneMetrics(self._metrics, self.name)


class BackplaneMetrics:
    """One hub's backplane instruments."""

    __slots__ = ("_connected", "_publish", "_received", "_sent")

    def __init__(self, metrics: Metrics, hub: str) -> None:
        self._connected = metrics.backplane_connected.labels(hub)
        self._publish = metrics.backplane_publish.labels(hub)
        self._sent = metrics.backplane_relayed.labels(hub, "sent")
        self._received = metrics.backplane_relayed.labels(hub, "received")

    def connected(self, up: bool) -> None:
        self._connected.set(1 if up else 0)

    def published(self, seconds: float) -> None:
        self._publish.observe(seconds)

    def relayed(self, *, sent: bool) -> None:
        (self._sent if sent else self._received).inc()


def _http_method(method: str) -> str:
    return method if method in _HTTP_METHODS else "_OTHER"


class RoutedApp(Protocol):
    """What the metrics ask of an app: where its health check is, and whether it routes a path.

    ``App`` has both; naming only these keeps observation below the app layer.
    """

    @property
    def health_path(self) -> str | None: ...  # pragma: no cover (a signature)

    def resolve(self, target: str, /) -> object | None: ...  # pragma: no cover (a signature)


def server_route(app: RoutedApp, path: str) -> str:
    """The route label of a request the server answers itself: its own paths, else none (``""``)."""
    return path if path == METRICS_PATH or path == app.health_path else ""


def metrics_path_taken(app: RoutedApp) -> str | None:
    """Why metrics cannot be served for ``app`` (it routes ``/metrics`` itself), or ``None``."""
    if app.resolve(METRICS_PATH) is None and app.health_path != METRICS_PATH:
        return None
    return f"the app routes {METRICS_PATH} itself, where --metrics serves the metrics; move that route"


def shared_metrics_dir() -> str:
    """A new directory for the workers' figures (the supervisor removes it when they have stopped)."""
    return tempfile.mkdtemp(prefix="trio_ws-metrics-")


def forget_worker(directory: str | None, pid: int) -> None:
    """A worker has ended: its gauges (connections open...) no longer count; its counts still do."""
    if directory is not None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def make_metrics() -> Metrics:
    """The instruments for a server with metrics on: shared with the other workers when under a
    supervisor (``MULTIPROCESS_ENV`` names their directory), private otherwise.

    Raises:
        ImportError: prometheus_client is not installed, with the command that installs it.
    """
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ImportError("metrics need prometheus_client: pip install 'trio_ws[metrics]'") from None
    return Metrics(os.environ.get(MULTIPROCESS_ENV) or None)
