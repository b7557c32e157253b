"""HTTP/1.1 for the trio client (h11 over trio streams): negotiate, POSTs, long polls, event streams.

The client's HTTP transports are requests: Long Polling is a GET held by the
server, then another; Server-Sent Events is one GET whose body never ends;
both send with POSTs. This module is the one place the client speaks HTTP.

Rules of this module:

* One ``HttpChannel`` is one keep-alive connection, used by one request at
  a time (its caller takes turns: a hub answers 409 to concurrent POSTs
  anyway). When the server closes it, or a request fails or is cancelled
  half-way, the next request opens a fresh connection.
* Every body read is bounded (``max_body``); a streaming response hands out
  its chunks as they come, so the caller bounds what it keeps.
* The connection is plain TCP for ``http://``, TLS for ``https://``.
  Failures to reach or read the server become ``HubClientError`` naming the
  URL; this module imposes no timeout (the caller's cancel scopes do).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import SplitResult, urlsplit

import h11
import trio

from ..._errors import TrioWsError
from ..._version import __version__

__all__ = ["USER_AGENT", "HttpChannel", "HubClientError", "open_tcp_or_tls"]

USER_AGENT = f"trio_ws/{__version__} (SignalR client)"
_RECEIVE_SIZE = 65536
_FAILURES = (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, OSError)


class HubClientError(TrioWsError):
    """The client could not connect, or lost its connection: the text says why.

    Raised by :func:`open_hub_client` when negotiate, the handshake or every
    transport fails; by a call made while the client is not connected; and
    by calls still waiting when the connection is lost or times out.

    Attributes:
        status: The HTTP status that refused it (401, 404...), or ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def open_tcp_or_tls(target: SplitResult, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """A stream to ``target``'s host: TLS for ``https``/``wss``, plain TCP otherwise.

    Raises:
        HubClientError: the host could not be reached.
    """
    secure = target.scheme in ("https", "wss")
    port = target.port or (443 if secure else 80)
    if target.hostname is None:
        raise HubClientError(f"a hub URL needs a host: {target.geturl()!r}")
    try:
        if secure:
            return await trio.open_ssl_over_tcp_stream(
                target.hostname,
                port,
                ssl_context=ssl_context or ssl.create_default_context(),
                https_compatible=True,
            )
        return await trio.open_tcp_stream(target.hostname, port)
    except OSError as exc:
        raise HubClientError(f"could not reach {target.netloc}: {exc}") from None


class HttpChannel:
    """Requests to one origin over one keep-alive connection, one at a time."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self._origin = urlsplit(url)
        if self._origin.scheme not in ("http", "https") or self._origin.hostname is None:
            raise HubClientError(f"a hub URL starts with http:// or https://, not {url!r}")
        self._ssl_context = ssl_context
        self._stream: trio.abc.Stream | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        max_body: int = 1024 * 1024,
    ) -> tuple[int, bytes]:
        """Send a request and read its whole answer: the status and the body.

        Raises:
            HubClientError: the server could not be reached, broke the connection,
                or answered more than ``max_body`` bytes.
        """
        async with self.stream(method, target, headers, body) as (status, chunks):
            data = bytearray()
            async for chunk in chunks:
                data += chunk
                if len(data) > max_body:
                    raise HubClientError(f"{method} {target} answered more than {max_body} bytes")
            return status, bytes(data)

    @asynccontextmanager
    async def stream(
        self, method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """Send a request; yield its status and its body's chunks as they arrive.

        Leaving the block before the body has ended drops the connection (the
        next request opens a new one): that is how a client ends an event stream.
        """
        finished = False
        where = self._origin.netloc + target.split("?")[0]
        fields = [("Host", self._origin.netloc), ("Content-Length", str(len(body))), *headers]
        if not any(name.lower() == "user-agent" for name, _ in fields):
            fields.append(("User-Agent", USER_AGENT))
        try:
            status = 0
            while status == 0:
                # A kept-alive connection the server closed meanwhile fails before any answer:
                # the request was not read, so it goes again, once, on a new connection.
                reused = self._stream is not None and self._h11.our_state is h11.IDLE
                if not reused:
                    await self._reopen()
                assert self._stream is not None
                stream: trio.abc.Stream = self._stream  # aclose() may let go of it meanwhile
                connection = self._h11
                try:
                    status = await _start(stream, connection, method, target, fields, body)
                except _FAILURES:
                    if not reused:
                        raise
                    await self._drop()

            async def chunks() -> AsyncIterator[bytes]:
                nonlocal finished
                while True:
                    try:
                        event = await _next_event(stream, connection)
                    except _FAILURES as exc:
                        raise HubClientError(f"{method} {where} failed: {exc}") from None
                    if isinstance(event, h11.Data):
                        yield bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        finished = True
                        return

            yield status, chunks()
        except _FAILURES as exc:
            raise HubClientError(f"{method} {where} failed: {exc}") from None
        finally:
            if finished and self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                self._h11.start_next_cycle()
            else:
                await self._drop()

    async def _reopen(self) -> None:
        await self._drop()
        self._stream = await open_tcp_or_tls(self._origin, self._ssl_context)
        self._h11 = h11.Connection(h11.CLIENT)

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def aclose(self) -> None:
        """Close the connection (a request in flight fails)."""
        await self._drop()


async def _start(
    stream: trio.abc.Stream,
    connection: h11.Connection,
    method: str,
    target: str,
    fields: list[tuple[str, str]],
    body: bytes,
) -> int:
    """Send the request; the answer's status."""
    data = connection.send(h11.Request(method=method, target=target, headers=fields))
    if body:
        data += connection.send(h11.Data(data=body))
    await stream.send_all(data + connection.send(h11.EndOfMessage()))
    while True:
        event = await _next_event(stream, connection)
        if isinstance(event, h11.Response):
            return event.status_code


async def _next_event(stream: trio.abc.Stream, connection: h11.Connection) -> h11.Event:
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(bytes(await stream.receive_some(_RECEIVE_SIZE)))
            continue
        if isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError("the server closed the connection")
        assert not isinstance(event, type)  # PAUSED: never, one request at a time
        return event
