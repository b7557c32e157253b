"""Server-Sent Events (the ``text/event-stream`` format browsers read with ``EventSource``).

Rules of this module:

* :meth:`ServerSentEvent.encode` is the whole format (HTML Living Standard,
  "Server-sent events", section 9.2.5): each line of the data becomes its
  own ``data:`` line, whatever line break it ended with (CRLF, LF or CR),
  so a multi-line payload arrives as it was sent; a blank line ends the
  event. It is pure and usable on its own, for a transport that writes
  events itself.
* :func:`sse_response` turns a receive channel of events into a streamed
  :class:`~trio_ws.Response` with the headers that keep proxies and caches
  from holding events back. Each event is one chunk, and each chunk is sent
  (flushed) as soon as it is made.
* While no event comes for ``heartbeat`` seconds, a comment line goes out,
  so proxies don't take the stream for dead and a vanished client is
  noticed. Comments are ignored by every client.
* The stream ends when the channel is closed by its sender (the response
  then ends cleanly), when the client leaves (the response is cancelled and
  the channel closed), or when the server shuts down (see
  ``Request.wait_closing``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import trio

from .response import Response

__all__ = ["SSE_HEADERS", "ServerSentEvent", "sse_response"]

SSE_HEADERS = (
    ("cache-control", "no-cache"),
    # nginx buffers responses unless told not to; events must not wait in a buffer.
    ("x-accel-buffering", "no"),
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_HEARTBEAT = b": heartbeat\n\n"


@dataclass(frozen=True)
class ServerSentEvent:
    """One event.

    Attributes:
        data: The payload; line breaks in it are kept (each line is sent as
            its own ``data:`` line and joined again by the client with ``\\n``).
        event: The event type (``EventSource.addEventListener(type, ...)``);
            ``None`` means ``message``.
        id: The event id, which the client sends back as ``Last-Event-ID``
            when it reconnects.
        retry: How long the client should wait before reconnecting, in milliseconds.
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        for name in ("event", "id"):
            value = getattr(self, name)
            if value is not None and _LINE_BREAK.search(value):
                raise ValueError(f"a server-sent event's {name} can't contain a line break: {value!r}")
        if self.id is not None and "\0" in self.id:
            raise ValueError("a server-sent event's id can't contain NUL (clients ignore such an id)")
        if self.retry is not None and (not isinstance(self.retry, int) or self.retry < 0):
            raise ValueError(f"retry must be a whole number of milliseconds, got {self.retry!r}")

    def encode(self, *, line_break: str = "\n") -> bytes:
        """The event in the ``text/event-stream`` format, UTF-8, ending with the blank line.

        Args:
            line_break: What ends each line: ``"\n"``, or ``"\r\n"`` for a
                peer that expects it (SignalR's Server-Sent Events transport).
        """
        if line_break not in ("\n", "\r\n", "\r"):
            raise ValueError(f"a server-sent event's lines end with \\n, \\r\\n or \\r, not {line_break!r}")
        lines = []
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        lines += [f"data: {line}" for line in _LINE_BREAK.split(self.data)]
        return (line_break.join(lines) + line_break * 2).encode()


def sse_response(
    events: trio.abc.ReceiveChannel[str | ServerSentEvent],
    *,
    heartbeat: float | None = 15.0,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """A ``200 text/event-stream`` response that sends each event from ``events`` as it arrives.

    Example, with a service that publishes to every subscriber (and drops
    one whose channel is closed, when its client has left)::

        subscribers: set[trio.MemorySendChannel[str]] = set()

        @app.route("/events")
        async def events(request: trio_ws.Request) -> trio_ws.Response:
            send, receive = trio.open_memory_channel[str](16)
            subscribers.add(send)
            return trio_ws.sse_response(receive)

    Args:
        events: Where the events come from: a ``str`` is sent as the data of
            a ``message`` event. Closing its send side ends the response
            cleanly. The channel is closed when the response ends.
        heartbeat: Seconds of silence after which a comment is sent, to keep
            proxies from closing the stream; ``None`` sends none.
        headers: More response headers; one named like a default
            (``Cache-Control: no-cache``, ``X-Accel-Buffering: no``) replaces it.
    """
    extra = tuple(headers)
    given = {name.lower() for name, _ in extra}
    defaults = tuple(header for header in SSE_HEADERS if header[0] not in given)
    return Response(200, _event_stream(events, heartbeat), "text/event-stream", (*defaults, *extra))


async def _event_stream(
    events: trio.abc.ReceiveChannel[str | ServerSentEvent], heartbeat: float | None
) -> AsyncIterator[bytes]:
    async with events:
        while True:
            # The wait is a cancel scope of its own, and the yield is outside it: an async
            # generator must never yield inside a cancel scope (trio's rule for generators).
            with trio.move_on_after(float("inf") if heartbeat is None else heartbeat) as silent:
                try:
                    event = await events.receive()
                except trio.EndOfChannel:
                    return
            if silent.cancelled_caught:
                yield _HEARTBEAT
            else:
                yield (ServerSentEvent(event) if isinstance(event, str) else event).encode()
