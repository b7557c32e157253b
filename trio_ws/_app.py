"""What the server serves: an ``App`` maps request paths to handlers.

Rules of this module:

* No I/O happens here. Routing is a pure decision (``App.resolve``) that the
  HTTP front door in ``_http.py`` acts on, so it can be tested without trio.
* Paths match exactly, segment by segment, each segment percent-decoded on
  its own (``_target.py``): ``/a%20b`` reaches the route ``/a b``, but
  ``/a%2Fb`` does not reach ``/a/b``. The query string is not part of the match.
* One path has one meaning: registering a path twice is an error, because a
  silent override is a bug waiting to be found in production.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from ._target import Target, parse_target

if TYPE_CHECKING:
    from ._websocket import WebSocketConnection

__all__ = [
    "App",
    "HTTPHandler",
    "Request",
    "Response",
    "WebSocketHandler",
    "WebSocketRoute",
    "HTTPRoute",
    "Resolution",
    "route_segments",
]

logger = logging.getLogger("trio_ws.app")

WebSocketHandler: TypeAlias = "Callable[[WebSocketConnection], Awaitable[None]]"
"""A coroutine function that talks to one client, and returns when it is done."""


@dataclass(frozen=True)
class Request:
    """A plain HTTP request, as an HTTP handler sees it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[bytes, bytes], ...]

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower().encode("ascii")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


@dataclass(frozen=True)
class Response:
    """A complete HTTP response. Bodies are small and held in memory."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str, *, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """A plain-text response; a newline is added so ``curl`` output ends cleanly."""
        return cls(status, (text + "\n").encode(), headers=tuple(headers))


HTTPHandler: TypeAlias = Callable[[Request], Awaitable[Response]]
"""A coroutine function that turns a :class:`Request` into a :class:`Response`."""


@dataclass(frozen=True)
class WebSocketRoute:
    """A path that accepts WebSocket upgrades."""

    path: str
    handler: WebSocketHandler
    subprotocols: tuple[str, ...] = ()

    def choose_subprotocol(self, proposed: Iterable[str]) -> str | None:
        """The first of the client's proposals that this route supports, if any."""
        for name in proposed:
            if name in self.subprotocols:
                return name
        return None


@dataclass(frozen=True)
class HTTPRoute:
    """A path that answers plain HTTP requests."""

    path: str
    handler: HTTPHandler
    methods: frozenset[str] = field(default=frozenset({"GET", "HEAD"}))


Resolution: TypeAlias = "WebSocketRoute | HTTPRoute | None"

_WS = TypeVar("_WS", bound="Callable[[WebSocketConnection], Awaitable[None]]")
_HTTP = TypeVar("_HTTP", bound=HTTPHandler)


class App:
    """Routes by path: WebSocket endpoints, HTTP endpoints and static files.

    Example::

        app = trio_ws.App()

        @app.websocket("/ws")
        async def shout(ws: trio_ws.WebSocketConnection) -> None:
            while True:
                message = await ws.get_message()  # ConnectionClosed ends the handler
                await ws.send_message(message.upper())

        @app.route("/hello")
        async def hello(request: trio_ws.Request) -> trio_ws.Response:
            return trio_ws.Response.text(200, "hello")

    Args:
        health_path: Path of the built-in health check, which answers 200
            while the server accepts connections and 503 while it shuts down.
            ``None`` turns it off.
    """

    def __init__(self, *, health_path: str | None = "/healthz") -> None:
        if health_path is not None:
            _check_path(health_path)
        # Keyed by the route's path segments: a request matches by its decoded segments.
        self._routes: dict[tuple[str, ...], WebSocketRoute | HTTPRoute] = {}
        self.health_path = health_path

    def websocket(self, path: str, *, subprotocols: Iterable[str] = ()) -> Callable[[_WS], _WS]:
        """Decorator: run the decorated handler for each WebSocket opened on ``path``."""

        def register(handler: _WS) -> _WS:
            self.add_websocket(path, handler, subprotocols=subprotocols)
            return handler

        return register

    def add_websocket(
        self, path: str, handler: WebSocketHandler, *, subprotocols: Iterable[str] = ()
    ) -> None:
        """Run ``handler`` for each WebSocket opened on ``path``.

        Args:
            path: The exact request path, starting with ``/``.
            handler: ``async def handler(ws)``; the connection closes when it returns.
            subprotocols: Subprotocols this endpoint speaks, in order of
                preference. The first one the client proposes is chosen.
        """
        self._add(WebSocketRoute(path, handler, tuple(subprotocols)))

    def route(self, path: str, *, methods: Iterable[str] = ("GET", "HEAD")) -> Callable[[_HTTP], _HTTP]:
        """Decorator: answer plain HTTP requests to ``path`` with the decorated handler."""

        def register(handler: _HTTP) -> _HTTP:
            self.add_route(path, handler, methods=methods)
            return handler

        return register

    def add_route(self, path: str, handler: HTTPHandler, *, methods: Iterable[str] = ("GET", "HEAD")) -> None:
        """Answer plain HTTP requests to ``path`` with ``handler``."""
        allowed = frozenset(m.upper() for m in methods)
        if "CONNECT" in allowed:
            # A 2xx answer to CONNECT turns the connection into a tunnel, which is a proxy's job.
            raise ValueError(f"route {path!r}: CONNECT is for proxies, and trio_ws is not one")
        if "GET" in allowed:
            allowed |= {"HEAD"}
        self._add(HTTPRoute(path, handler, allowed))

    def add_static(self, path: str, body: bytes, content_type: str | None = None) -> None:
        """Serve ``body`` at ``path``. The content type is guessed from the path if not given."""
        response = Response(200, body, content_type or _guess_type(path))

        async def static(request: Request) -> Response:
            return response

        self.add_route(path, static)

    def add_static_directory(self, prefix: str, directory: str | Path) -> None:
        """Serve the files directly inside ``directory`` under ``prefix/``.

        The files are read once, now: a static directory is part of the app,
        and reading it up front means no request can reach outside it.

        Only regular files are served, not subdirectories, and not a symlink
        that leads out of ``directory`` (it is skipped with a warning): the
        directory is the whole of what a client can read.
        """
        root = Path(directory)
        if not root.is_dir():
            raise ValueError(f"static directory {str(root)!r} does not exist")
        real_root = root.resolve()
        prefix = prefix.rstrip("/")
        for file in sorted(root.iterdir()):
            target = file.resolve()
            if not target.is_relative_to(real_root):
                logger.warning(
                    "static directory %s: not serving %s, a link to %s outside it", root, file.name, target
                )
            elif target.is_file():
                self.add_static(f"{prefix}/{file.name}", file.read_bytes())

    def resolve(self, target: str | Target) -> Resolution:
        """The route for a request target (path plus optional query), or ``None``."""
        if isinstance(target, str):
            parsed = parse_target(target.encode("ascii", "replace"))
            if parsed is None:
                return None
            target = parsed
        return self._routes.get(target.segments)

    @property
    def routes(self) -> tuple[WebSocketRoute | HTTPRoute, ...]:
        """Every registered route, in the order it was added."""
        return tuple(self._routes.values())

    def _add(self, route: WebSocketRoute | HTTPRoute) -> None:
        _check_path(route.path)
        key = route_segments(route.path)
        if key in self._routes or route.path == self.health_path:
            raise ValueError(f"path {route.path!r} is already routed; each path has one handler")
        self._routes[key] = route


def route_segments(path: str) -> tuple[str, ...]:
    """The segments of a route's path, as written (route paths are not percent-encoded)."""
    return tuple(path[1:].split("/"))


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")


def _guess_type(path: str) -> str:
    if path.endswith("/"):
        return "text/html; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in {"application/javascript", "application/json"}:
        return f"{guessed}; charset=utf-8"
    return guessed
