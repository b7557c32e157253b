"""One HTTP/1.1 connection on the wire: h11 and the stream, read and written with bounds.

h11 parses and frames every byte (``_http/connection.py`` decides what to answer);
this module moves the bytes. Rules of this module:

* Every read is bounded by its caller's deadline, and by what it asks h11
  to hold: a request head by ``max_request_head_size`` (h11's own limit, and
  a check for a head that arrived whole), a body by ``max_request_body``
  (413: a ``Content-Length`` over it is refused before a byte of the body is
  read) and ``request_body_timeout`` (408).
* Every write is bounded too: a peer that stops reading holds a send at
  most ``_SEND_TIMEOUT``, then the connection is given up (:class:`Stalled`).
* A streamed response body is sent chunk by chunk, each chunk as it comes
  (``Transfer-Encoding: chunked`` for HTTP/1.1; for HTTP/1.0 the end of the
  body is the end of the connection, which h11 arranges). Its iteration can
  be stopped from outside (the server's shutdown), after which the body
  still ends cleanly; ``aclose()`` is called on it either way.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

import h11
import trio

from .._app.request import RequestBodyError
from .._app.response import Response

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BodyReader", "Stalled", "Wire", "declared_length", "phrase"]

_READ_SIZE = 16 * 1024
# How long one write may wait for a peer that does not read.
_SEND_TIMEOUT = 10.0
_SECURITY_HEADERS = (("x-content-type-options", "nosniff"),)
# Framing is the server's (h11's) to say; a handler's Connection tokens are merged into ours.
_SERVERS_HEADERS = {"connection", "content-length", "transfer-encoding"}
_PAGE_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)


class Stalled(Exception):
    """The peer did not take our bytes within ``_SEND_TIMEOUT``: it stopped reading."""


class Wire:
    """h11's server-side state machine over one stream."""

    def __init__(self, stream: trio.abc.Stream, max_head_size: int) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        self._max_head_size = max_head_size

    async def read_request(self) -> h11.Request | None:
        """Read until h11 has a whole request head; ``None`` if the client hung up first.

        Raises:
            h11.RemoteProtocolError: a malformed head, or one over
                ``max_request_head_size`` (``error_status_hint`` 431). h11's own
                limit only counts a head still incomplete, so a larger one
                that arrives in a single read is measured here.
        """
        buffered = len(self.conn.trailing_data[0])  # pipelined bytes read with the last request
        received = 0
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self._receive()
                received += len(data)
                self.conn.receive_data(data)
            elif isinstance(event, h11.Request):
                size = buffered + received - len(self.conn.trailing_data[0])
                if size > self._max_head_size:
                    raise h11.RemoteProtocolError(
                        f"request head of {size} bytes is over max_request_head_size ({self._max_head_size})",
                        error_status_hint=431,
                    )
                return event
            else:
                return None  # ConnectionClosed: EOF before any request

    async def next_body_event(self) -> h11.Data | h11.EndOfMessage:
        """The next piece of the request body.

        Raises:
            h11.RemoteProtocolError: malformed framing (a bad chunk, say).
            RequestBodyError: the client hung up in the middle (400).
        """
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self._receive())
            elif isinstance(event, h11.Data | h11.EndOfMessage):
                return event
            else:
                raise RequestBodyError(400, "Bad Request: the client closed the connection during the body")

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(_READ_SIZE))
        except trio.BrokenResourceError:
            return b""  # a reset is an end of input like any other

    async def send(self, *events: h11.Event) -> None:
        """Frame ``events`` with h11 and send them in one write.

        Raises:
            Stalled: the peer took nothing for ``_SEND_TIMEOUT`` seconds.
        """
        data = b"".join(self.conn.send(event) or b"" for event in events)
        try:
            with trio.fail_after(_SEND_TIMEOUT):
                await self.stream.send_all(data)
        except trio.TooSlowError:
            self.conn.send_failed()
            raise Stalled(f"the peer took no bytes for {_SEND_TIMEOUT} s") from None
        except BaseException:
            self.conn.send_failed()
            raise

    async def send_continue(self) -> None:
        """Send ``100 Continue`` if the client waits for it before sending its body (RFC 9110 10.1.1)."""
        if self.conn.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))

    @property
    def reusable(self) -> bool:
        """Whether both sides finished their message and may start another on this connection."""
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    async def write_response(
        self,
        response: Response,
        *,
        head_only: bool = False,
        close: bool = False,
        extra_headers: list[tuple[str, str]] | None = None,
        stop: trio.CancelScope | None = None,
    ) -> None:
        """Send ``response``: its head at once, then its body, whole or chunk by chunk.

        Args:
            head_only: Answer a ``HEAD``: no body (a streamed one is closed unread).
            close: Say ``Connection: close``: this is the last response.
            extra_headers: Headers the server adds (CORS, say).
            stop: A cancel scope that, when cancelled, stops a streamed body
                early; the body then still ends cleanly.

        Raises:
            Stalled: the peer stopped reading.
        """
        head = h11.Response(
            status_code=response.status,
            headers=_headers(response, close, extra_headers or []),
            reason=phrase(response.status),
        )
        body = response.body
        head_only = head_only or response.status in (204, 304)  # these never have a body (RFC 9110 6.4.1)
        if isinstance(body, bytes):
            events: list[h11.Event] = [head]
            if body and not head_only:
                events.append(h11.Data(data=body))
            await self.send(*events, h11.EndOfMessage())
            return
        iterator = aiter(body)
        try:
            await self.send(head)
            if not head_only:
                with stop or trio.CancelScope():
                    async for chunk in iterator:
                        if chunk:
                            await self.send(h11.Data(data=chunk))
        finally:
            # Outside the stop scope, so that a generator's cleanup can still await.
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        await self.send(h11.EndOfMessage())


class BodyReader:
    """A request body read through h11, bounded by a size limit and a deadline.

    It serves ``Request.body_stream`` for routes that stream, and
    :meth:`read_all` for those that don't.
    """

    def __init__(
        self, wire: Wire, limit: int, deadline: float, on_complete: Callable[[], None] | None = None
    ) -> None:
        self._wire = wire
        self._limit = limit
        self._deadline = deadline
        self._on_complete = on_complete
        self._received = 0
        self.complete = wire.conn.their_state is not h11.SEND_BODY

    async def next_chunk(self) -> bytes | None:
        """The next chunk of the body, or ``None`` at its end.

        Raises:
            RequestBodyError: 413 over the limit, 408 past the deadline, 400
                for malformed framing or a client that hung up.
        """
        if self.complete:
            return None
        await self._wire.send_continue()
        with trio.move_on_at(self._deadline) as timer:
            try:
                event = await self._wire.next_body_event()
            except h11.RemoteProtocolError as exc:
                raise RequestBodyError(exc.error_status_hint, f"Bad Request: {exc}") from None
        if timer.cancelled_caught:
            raise RequestBodyError(
                408, "Request Timeout: the body did not arrive within request_body_timeout"
            )
        if isinstance(event, h11.EndOfMessage):
            self.complete = True
            if self._on_complete is not None:
                self._on_complete()
            return None
        self._received += len(event.data)
        if self._received > self._limit:
            raise RequestBodyError(
                413, f"Content Too Large: the body is over max_request_body ({self._limit} bytes)"
            )
        return bytes(event.data)

    async def read_all(self) -> bytes:
        """The whole body."""
        chunks = []
        while (chunk := await self.next_chunk()) is not None:
            chunks.append(chunk)
        return b"".join(chunks)


def phrase(status: int) -> str:
    """The reason phrase of ``status`` (``""`` for a code HTTP does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def declared_length(request: h11.Request) -> int | None:
    """The request's ``Content-Length``, if it has one (h11 has checked it is one whole number)."""
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return None


def _headers(response: Response, close: bool, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    connection = ["close"] if close else []
    connection += [v for k, v in response.headers if k.lower() == "connection"]
    headers: list[tuple[str, str]] = []
    if response.content_type is not None:
        headers.append(("content-type", response.content_type))
    if isinstance(response.body, bytes) and response.status >= 200 and response.status not in (204, 304):
        headers.append(("content-length", str(len(response.body))))
    if connection:
        headers.append(("connection", ", ".join(connection)))
    headers += _SECURITY_HEADERS
    headers += [(k, v) for k, v in response.headers if k.lower() not in _SERVERS_HEADERS]
    headers += extra
    own_policy = any(k.lower() == "content-security-policy" for k, _ in response.headers)
    if response.content_type is not None and response.content_type.startswith("text/html") and not own_policy:
        headers.append(("content-security-policy", _PAGE_CSP))
    return headers
