"""The hub filter that counts and traces calls: outermost of all, when metrics or tracing is on.

It is an ordinary ``HubFilter``, the mechanism users have, so it sees each
call as they do: after the hub has matched the method and bound the
arguments, around every other filter (authorization and rate limits too, so
their refusals are counted as ``unauthorized`` and ``rate_limited``).

Rules of this module:

* One outcome per call: ``ok``, ``error`` (the method or a filter raised),
  ``unauthorized`` and ``rate_limited`` (a ``CallRefused`` says which),
  ``cancelled`` (the caller cancelled a stream, or the connection ended
  first). A refusal with another reason of its own counts as ``error``.
* A streaming call lasts until its last item (or its end): the stream the
  rest of the pipeline returns is wrapped, and counted when it finishes.
* The span's parent is the caller's trace, from the ``traceparent`` of the
  request that opened the transport, or, if that one has no valid
  ``traceparent`` (a browser's WebSocket or EventSource), from the
  negotiate's, kept with the connection (``trio_ws/_tracing.py``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .filters import CallRefused, HubFilter, HubInvocationContext, NextInvoke

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from ..._observe.metrics import HubMetrics

__all__ = ["CallObserver"]

_OUTCOMES = frozenset({"ok", "error", "unauthorized", "rate_limited", "cancelled"})


class Observed(Protocol):
    """Where the instruments are (the hub server's, set when it runs)."""

    metrics: HubMetrics | None
    tracer: Tracer | None


class CallObserver(HubFilter):
    """Counts each call in ``trio_ws_hub_invocations_total`` and its duration, and traces it."""

    def __init__(self, observed: Observed) -> None:
        self._observed = observed

    async def invoke(self, invocation: HubInvocationContext, next: NextInvoke) -> Any:
        started = time.perf_counter()
        tracer = self._observed.tracer
        span = None if tracer is None else _call_span(tracer, invocation)
        outcome = "error"
        try:
            if span is None:
                result = await next(invocation)
            else:
                from opentelemetry.trace import use_span

                with use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                    result = await next(invocation)
            outcome = "ok"
        except CallRefused as exc:
            outcome = exc.outcome if exc.outcome in _OUTCOMES else "error"
            raise
        except trio.Cancelled:
            outcome = "cancelled"
            raise
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            if outcome != "ok" or not invocation.streaming:
                self._done(invocation, outcome, started, span)
        return self._watched(invocation, result, started, span)

    def _watched(
        self, invocation: HubInvocationContext, result: Any, started: float, span: Span | None
    ) -> Any:
        """The call's result; for a stream, one that counts the call when the stream ends."""
        if not invocation.streaming or not hasattr(result, "__aiter__"):
            if invocation.streaming:
                self._done(invocation, "error", started, span)
            return result
        return self._stream(invocation, result, started, span)

    async def _stream(
        self, invocation: HubInvocationContext, items: AsyncIterator[Any], started: float, span: Span | None
    ) -> AsyncIterator[Any]:
        outcome = "error"
        try:
            async for item in items:
                yield item
            outcome = "ok"
        except trio.Cancelled:
            outcome = "cancelled"
            raise
        except GeneratorExit:
            outcome = "cancelled"  # the dispatcher stopped reading it: the caller cancelled
            raise
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
            self._done(invocation, outcome, started, span)

    def _done(
        self, invocation: HubInvocationContext, outcome: str, started: float, span: Span | None
    ) -> None:
        metrics = self._observed.metrics
        if metrics is not None:
            metrics.invoked(invocation.method_name, outcome, time.perf_counter() - started)
        if span is not None:
            _end_call_span(span, outcome)


def _call_span(tracer: Tracer, invocation: HubInvocationContext) -> Span:
    """A server span for one call, child of the caller's trace, as ASP.NET Core names its own."""
    from opentelemetry.trace import SpanKind

    from ..._observe.tracing import kept_trace, parent_context, trace_headers

    request = invocation.caller.request
    headers = () if request is None else request.headers
    negotiated = invocation.caller._connection.negotiate_trace
    if negotiated is not None and kept_trace(headers) is None:
        headers = trace_headers(negotiated)  # the transport's request names no caller: the negotiate's
    context = parent_context(headers) if headers else None
    service = invocation.hub_name
    return tracer.start_span(
        f"{service}/{invocation.method_name}",
        context=context,
        kind=SpanKind.SERVER,
        attributes={
            "rpc.system": "signalr",
            "rpc.service": service,
            "rpc.method": invocation.method_name,
            "signalr.connection.id": invocation.caller.connection_id,
        },
    )


def _end_call_span(span: Span, outcome: str) -> None:
    from opentelemetry.trace import StatusCode

    span.set_attribute("trio_ws.hub.outcome", outcome)
    if outcome not in ("ok", "cancelled"):
        span.set_attribute("error.type", outcome)
        span.set_status(StatusCode.ERROR)
    span.end()
