"""Traces through OpenTelemetry: a span per HTTP request and per hub call, joined to the caller's trace.

Tracing is on when an OpenTelemetry SDK tracer provider is set in the
process: by ``configure_from_environment()`` (the CLI and every worker call
it; it reads the standard ``OTEL_*`` variables, with ``pip install
'trio_ws[otel]'``), by ``opentelemetry-instrument``, or by the program that
calls ``serve()``. docs/operating.md shows how.

Rules of this module:

* Only OpenTelemetry's API is used to make spans, and only when tracing is
  on: with no provider set, a server holds ``None`` where a tracer would be,
  and each traced place costs one ``None`` check. OpenTelemetry is not even
  imported unless something in the process has imported it already.
* The caller's trace comes from the W3C ``traceparent`` (and ``tracestate``)
  headers, through the propagators OpenTelemetry is configured with: an HTTP
  request's span is a child of its caller's span, and a hub call's span is a
  child of the span that sent the request that opened its transport, or,
  when that request carries no ``traceparent`` (a browser cannot add one to a
  WebSocket or an EventSource), of the one that sent its negotiate.
* A negotiate's trace context is kept with its connection (in the backplane,
  for any worker to read): ``kept_trace`` takes only a valid W3C
  ``traceparent`` and ``tracestate``, bounded in length, so a hostile header
  costs nothing and stores nothing.
* Attributes follow OpenTelemetry's semantic conventions: HTTP server spans
  (``http.request.method``, ``http.route``, ``http.response.status_code``...)
  and RPC spans (``rpc.system = signalr``, ``rpc.service``, ``rpc.method``),
  as ASP.NET Core names its own.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import sys
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from .._version import __version__

if TYPE_CHECKING:
    import h11
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "configure_from_environment",
    "end_http_span",
    "http_span",
    "kept_trace",
    "parent_context",
    "trace_headers",
    "tracer",
    "use_span",
]

logger = logging.getLogger("trio_ws.tracing")

_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
_LONGEST_AGENT = 256

# W3C Trace Context: version-traceid-parentid-flags, lower-case hex; a later version may add fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?")
_LONGEST_TRACEPARENT = 256
# tracestate: at most 32 key=value members; a receiver should keep at least 512 characters of them.
_TRACESTATE_MEMBER = re.compile(
    r"(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_LONGEST_TRACESTATE = 512
_MOST_TRACESTATE_MEMBERS = 32

# The variables that ask for traces to be exported; without one of them, nothing is set up.
_ASKING = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracer() -> Tracer | None:
    """The tracer for a server starting now, or ``None`` when no SDK tracer provider is set."""
    if "opentelemetry.trace" not in sys.modules:
        return None  # nothing set a provider up, and importing the API to learn that costs time
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("trio_ws", __version__)


def parent_context(headers: tuple[tuple[bytes, bytes], ...]) -> Context:
    """The caller's trace context, from the ``traceparent`` and ``tracestate`` headers of a request."""
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    for name, value in headers:
        if name in (b"traceparent", b"tracestate", b"baggage"):
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    return propagate.extract(carrier)


def kept_trace(headers: tuple[tuple[bytes, bytes], ...]) -> tuple[str, str] | None:
    """A request's W3C ``traceparent`` and ``tracestate`` (``""`` for none), checked as the W3C
    says, to be kept beyond the request; ``None`` when it has no valid ``traceparent``.

    What is kept is bounded: a ``traceparent`` of a later version keeps the
    fields this version defines, and a ``tracestate`` that is malformed, has
    more than 32 members or is longer than 512 characters is dropped.
    """
    traceparent: str | None = None
    states: list[str] = []
    for name, value in headers:
        if name == b"traceparent":
            if traceparent is not None:
                return None  # several: which one names the caller is anyone's guess
            traceparent = _valid_traceparent(value)
            if traceparent is None:
                return None
        elif name == b"tracestate":
            states.append(value.decode("latin-1"))
    if traceparent is None:
        return None
    return traceparent, _valid_tracestate(",".join(states))


def _valid_traceparent(value: bytes) -> str | None:
    if len(value) > _LONGEST_TRACEPARENT:
        return None
    found = _TRACEPARENT.fullmatch(value.decode("latin-1"))
    if found is None:
        return None
    version, trace_id, parent_id, _, more = found.groups()
    if version == "ff" or (version == "00" and more) or not int(trace_id, 16) or not int(parent_id, 16):
        return None
    return found.group(0)[:55]  # version, ids and flags: the fields this version knows


def _valid_tracestate(value: str) -> str:
    if len(value) > _LONGEST_TRACESTATE:
        return ""
    members = [member.strip(" \t") for member in value.split(",")]
    members = [member for member in members if member]
    keys = {member.partition("=")[0] for member in members}
    if len(members) > _MOST_TRACESTATE_MEMBERS or len(keys) != len(members):
        return ""
    if not all(_TRACESTATE_MEMBER.fullmatch(member) for member in members):
        return ""
    return ",".join(members)


def trace_headers(kept: tuple[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    """``kept_trace``'s answer as request headers again, for ``parent_context``."""
    traceparent, tracestate = kept
    headers = ((b"traceparent", traceparent.encode("ascii", "replace")),)
    return (*headers, (b"tracestate", tracestate.encode("ascii", "replace"))) if tracestate else headers


def http_span(tracer: Tracer, request: h11.Request, scheme: str) -> Span:
    """A server span for an HTTP request, child of the caller's (``traceparent``), started now."""
    from opentelemetry.trace import SpanKind

    method = request.method.decode("ascii", "replace")
    target = request.target.decode("ascii", "replace")
    path, _, query = target.partition("?")
    attributes: dict[str, str | int] = {
        "http.request.method": method if method in _HTTP_METHODS else "_OTHER",
        "url.scheme": scheme,
        "url.path": path,
        "network.protocol.version": request.http_version.decode("ascii", "replace"),
    }
    if query:
        attributes["url.query"] = query
    for name, value in request.headers:
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")[:_LONGEST_AGENT]
    return tracer.start_span(
        method if method in _HTTP_METHODS else "HTTP",
        context=parent_context(tuple(request.headers)),
        kind=SpanKind.SERVER,
        attributes=attributes,
    )


def end_http_span(span: Span, method: str, route: str, status: int) -> None:
    """End a request's span: its route (once known), its status (0: no answer was sent)."""
    from opentelemetry.trace import StatusCode

    if route:
        span.set_attribute("http.route", route)
        span.update_name(f"{method if method in _HTTP_METHODS else 'HTTP'} {route}")
    if status:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(StatusCode.ERROR)
    span.end()


def use_span(span: Span) -> AbstractContextManager[object]:
    """``span`` as the current span while the block runs (it is ended elsewhere)."""
    from opentelemetry import trace

    return trace.use_span(span, end_on_exit=False)


def configure_from_environment() -> bool:
    """Set up OpenTelemetry's SDK from the ``OTEL_*`` variables, if they ask for traces; whether it did.

    ``OTEL_TRACES_EXPORTER`` names the exporter (``otlp`` by default, ``console``,
    or any installed under the ``opentelemetry_traces_exporter`` entry point);
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` describe the service;
    the exporter reads its own (``OTEL_EXPORTER_OTLP_ENDPOINT``...). Nothing is
    done when none of them is set, when ``OTEL_SDK_DISABLED`` is true, or when
    a provider is set already (``opentelemetry-instrument`` did it).

    Raises:
        RuntimeError: traces are asked for but cannot be exported; the message says what to install.
    """
    if not any(os.environ.get(name) for name in _ASKING):
        return False
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter_name == "none":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    except ImportError:
        raise RuntimeError(
            "OTEL_* variables ask for traces, which need OpenTelemetry's SDK: pip install 'trio_ws[otel]'"
        ) from None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False  # someone set one up already
    found = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name=exporter_name)
    if not found and exporter_name == "otlp":  # the extra brings OTLP over HTTP (the gRPC one registers otlp)
        found = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name="otlp_proto_http")
    if not found:
        raise RuntimeError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r}: no such span exporter is installed "
            "(for otlp: pip install 'trio_ws[otel]')"
        )
    exporter_class = next(iter(found)).load()
    exporter = exporter_class()
    if not isinstance(exporter, SpanExporter):
        raise RuntimeError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r} names {exporter_class!r}, not a span exporter"
        )
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logger.info("tracing: spans go to the %s exporter", exporter_name)
    return True
