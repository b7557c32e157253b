"""What a handler is told about a request: :class:`Request`, its body, and who sent it.

The same ``Request`` reaches an HTTP handler as its argument and a WebSocket
handler as ``ws.request``, so both see one description of the client: method,
path, query, headers, cookies, path parameters, the identity an auth hook
found, the peer's address, and a way to learn that the server is shutting
down. Rules of this module:

* No I/O here except the body stream, which reads only through the
  connection it was given (``_body.py``), and the shutdown signal.
* Parsed views (``query_params``, ``cookies``) are computed from the raw
  values when asked for, once, so a request that never looks costs nothing:
  a WebSocket keeps its ``Request`` for its whole life.
* Everything a peer sent stays as it was sent (``headers`` as bytes, ``query``
  still percent-encoded) next to the decoded views, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol
from urllib.parse import parse_qs

import trio

from .._errors import TrioWsError

__all__ = ["Identity", "Request", "RequestBody", "RequestBodyError", "ShutdownSignal", "parse_cookies"]


class ShutdownSignal(Protocol):
    """What a request knows of the server: whether, and when, graceful shutdown begins.

    The server passes itself; the app layer names only these two members, so it
    never imports the server (which sits above it).
    """

    @property
    def closing(self) -> bool: ...  # pragma: no cover (a signature)

    async def wait_closing(self) -> None: ...  # pragma: no cover (a signature)


# A query longer than the head limit can't arrive, but its field count is bounded separately.
_MAX_QUERY_FIELDS = 1000
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Identity:
    """Who a request comes from, as an auth hook established it.

    Attributes:
        user_id: The user's stable id (a name, a number as text, a subject claim).
        claims: Anything else the hook learned (scopes, the token's expiry);
            handlers read it, trio_ws never does.
        roles: The user's roles, which hubs' ``authorize(roles=...)`` checks
            (any collection of names; kept as a frozenset).
    """

    user_id: str
    claims: Mapping[str, object] = field(default_factory=dict)
    roles: Collection[str] = frozenset()

    def __post_init__(self) -> None:
        if isinstance(self.roles, str):
            raise TypeError(f"roles is a collection of role names, not the string {self.roles!r}")
        if not isinstance(self.roles, frozenset):
            object.__setattr__(self, "roles", frozenset(self.roles))


class RequestBodyError(TrioWsError):
    """The request body broke a limit or was malformed; the server answers with ``status``.

    Raised while reading ``request.body_stream`` (iterating it or ``read()``):
    past ``max_request_body`` (413), past ``request_body_timeout`` (408), or
    for a malformed chunked body (400).

    A handler reading ``request.body_stream`` may let this escape: the
    server then answers with ``status`` (413, 408 or 400) and closes the
    connection, without logging a traceback, since the peer is at fault.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class _BodySource(Protocol):
    """Where a streamed body comes from: the connection's body reader (``_body.py``)."""

    async def next_chunk(self) -> bytes | None: ...


class RequestBody:
    """The request body as a stream of byte chunks: ``async for chunk in request.body_stream``.

    The whole body is at most ``max_request_body`` bytes and must arrive
    within ``request_body_timeout``; past either, iterating raises
    :class:`RequestBodyError` (413 or 408). A body can be read once.
    """

    __slots__ = ("_source", "_used")

    def __init__(self, source: _BodySource) -> None:
        self._source = source
        self._used = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._used:
            raise RuntimeError("the request body has been read already; it can be read once")
        self._used = True
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._source.next_chunk()) is not None:
            yield chunk

    async def read(self) -> bytes:
        """The whole body (still bounded by ``max_request_body``)."""
        return b"".join([chunk async for chunk in self])


class _Buffered:
    """A body already read into memory, served as a one-chunk stream."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body

    async def next_chunk(self) -> bytes | None:
        await trio.lowlevel.checkpoint()
        body, self._body = self._body, None
        return body or None


class Request:
    """One HTTP request, as an HTTP handler gets it and a WebSocket handler sees it (``ws.request``).

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: The path, percent-decoded, for display and logs; route on
            ``path_params`` instead (a decoded ``%2F`` looks like ``/`` here).
        query: The query string as sent (after ``?``, still percent-encoded).
        headers: Every header as ``(name, value)`` bytes, names lower-case, in
            the order sent; :meth:`header` looks one up.
        raw_path: The path as sent, still percent-encoded.
        path_params: The values of the route's ``{name}`` segments, decoded.
        identity: What the route's auth hook returned, or ``None`` without one.
        client: The peer's ``(host, port)``, or ``None`` when not over TCP.
        scheme: ``"https"`` over TLS, else ``"http"``.
        http_version: ``"1.1"`` or ``"1.0"``.
    """

    __slots__ = (
        "_body",
        "_body_stream",
        "_cookies",
        "_headers",
        "_host",
        "_query_params",
        "_server",
        "_watches_closing",
        "client",
        "http_version",
        "identity",
        "method",
        "path",
        "path_params",
        "query",
        "raw_path",
        "scheme",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str = "",
        headers: Iterable[tuple[bytes, bytes]] = (),
        *,
        raw_path: str | None = None,
        path_params: Mapping[str, str] = _EMPTY,
        body: bytes = b"",
        body_stream: RequestBody | None = None,
        identity: Identity | None = None,
        client: tuple[str, int] | None = None,
        scheme: str = "http",
        http_version: str = "1.1",
        host: str | None = None,
        server: ShutdownSignal | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        # Every header in one bytes, as ``\nname:value`` lines: an open WebSocket keeps its request
        # (``ws.request``) all its life, and two bytes objects per header would cost 70 bytes more
        # than their text. A name holds no colon and no value a line break (h11 checks both).
        pairs = [(name.lower(), value) for name, value in headers]
        self._headers = b"".join([b"\n" + name + b":" + value for name, value in pairs])
        if self._headers.count(b"\n") != len(pairs) or any(b":" in name for name, _ in pairs):
            raise ValueError("a header name holds a colon or a line break, or a value a line break")
        self.raw_path = path if raw_path is None else raw_path
        self.path_params = path_params
        self.identity = identity
        self.client = client
        self.scheme = scheme
        self.http_version = http_version
        self._host = host
        self._body = body
        self._body_stream = body_stream
        self._server = server
        self._watches_closing = False
        self._query_params: dict[str, list[str]] | None = None
        self._cookies: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path!r}>"

    # -- headers, query, cookies --------------------------------------------------

    @property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """Every header as a ``(name, value)`` pair of bytes, names lower-case, in the order sent."""
        if not self._headers:
            return ()
        lines = self._headers[1:].split(b"\n")
        return tuple((name, value) for name, _, value in (line.partition(b":") for line in lines))

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``; several are joined with ``, ``."""
        text, key = self._headers, b"\n" + name.lower().encode("ascii") + b":"
        values = []
        start = text.find(key)
        while start != -1:
            start += len(key)
            end = text.find(b"\n", start)
            end = len(text) if end == -1 else end
            values.append(text[start:end].decode("latin-1"))
            start = text.find(key, end)
        return ", ".join(values) if values else None

    @property
    def host(self) -> str | None:
        """The host the client asked for: the ``Host`` header, or an absolute-form target's host."""
        return self._host if self._host is not None else self.header("host")

    @property
    def query_params(self) -> Mapping[str, list[str]]:
        """The query parsed: each name with every value it was given, decoded (``?a=1&a=2&b=``)."""
        if self._query_params is None:
            fields = self.query.split("&", _MAX_QUERY_FIELDS)[:_MAX_QUERY_FIELDS]  # the rest is ignored
            self._query_params = parse_qs("&".join(fields), keep_blank_values=True)
        return self._query_params

    def query_param(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``, or ``default``."""
        values = self.query_params.get(name)
        return values[0] if values else default

    @property
    def cookies(self) -> Mapping[str, str]:
        """The cookies the client sent, by name (``Cookie: a=1; b=2``)."""
        if self._cookies is None:
            self._cookies = parse_cookies(value for key, value in self.headers if key == b"cookie")
        return self._cookies

    # -- body -----------------------------------------------------------------------

    @property
    def body(self) -> bytes:
        """The whole request body (``b""`` if there is none).

        Raises:
            RuntimeError: the route streams its body (``stream_body=True``);
                read :attr:`body_stream` instead.
        """
        if self._body_stream is not None and not isinstance(self._body_stream._source, _Buffered):
            raise RuntimeError(
                f"the route for {self.path} streams its request body (stream_body=True): "
                "read request.body_stream instead of request.body"
            )
        return self._body

    @property
    def body_stream(self) -> RequestBody:
        """The request body as a stream of chunks; for a route that buffers it, one chunk."""
        if self._body_stream is None:
            self._body_stream = RequestBody(_Buffered(self._body))
        return self._body_stream

    def _attach_body(self, body: bytes | RequestBody) -> None:
        """Give the request its body (the server does, before the handler runs)."""
        if isinstance(body, RequestBody):
            self._body_stream = body
        else:
            self._body = body

    # -- shutdown -------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Whether the server has begun a graceful shutdown.

        Reading it, like calling :meth:`wait_closing`, tells the server that
        this request's handler says its own goodbye (see :meth:`wait_closing`).
        """
        self._watches_closing = True
        return self._server is not None and self._server.closing

    async def wait_closing(self) -> None:
        """Wait until the server begins a graceful shutdown.

        A handler that waits here is taken to end its connection itself when
        told: for a WebSocket, the server sends its Close 1001 only when the
        handler has returned, or after half of ``shutdown_timeout``; a
        streaming response is given as long to end before the server ends it.
        Handlers that never ask get the server's goodbye at once.
        """
        self._watches_closing = True
        if self._server is None:
            await trio.sleep_forever()
        await self._server.wait_closing()

    @property
    def watches_closing(self) -> bool:
        """Whether the handler asked about shutdown (``closing`` or ``wait_closing()``)."""
        return self._watches_closing


def parse_cookies(values: Iterable[bytes]) -> dict[str, str]:
    """The cookies in ``Cookie`` header values, the first of each name kept.

    RFC 6265 section 4.2.1: ``name=value`` pairs separated by ``;``. This is
    written out rather than left to ``http.cookies.SimpleCookie``, which stops
    at the first pair it can't parse and drops every cookie after it (a
    browser sends whatever other sites on the domain set, JSON and all).
    Values are not unquoted or decoded: what the server set comes back.
    """
    cookies: dict[str, str] = {}
    for value in values:
        for pair in value.decode("latin-1").split(";"):
            name, sep, cookie = pair.partition("=")
            name = name.strip()
            if sep and name and name not in cookies:
                cookies[name] = cookie.strip()
    return cookies
