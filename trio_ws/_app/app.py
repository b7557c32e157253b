"""What the server serves: an ``App`` maps request paths to handlers, and holds its services.

Rules of this module:

* No I/O happens here. Routing is a pure decision (``App.resolve``, backed by
  ``_routing.Router``) that the HTTP front door in ``_http/connection.py`` acts on, so
  it can be tested without trio.
* Paths match segment by segment, each segment percent-decoded on its own
  (``_target.py``): ``/a%20b`` reaches the route ``/a b``, but ``/a%2Fb``
  does not reach ``/a/b``. A ``{name}`` segment is a path parameter. The
  query string is not part of the match.
* One path may have a WebSocket handler and HTTP handlers (one per method);
  giving it a second handler for the same thing is an error.
* Hooks run before a handler, in this order: the auth hook (the route's, or
  the app's), then for a WebSocket the route's ``before_upgrade`` hook.
  Either can answer with any :class:`Response` instead.
* Services are tasks that live as long as the server, not as long as one
  connection; ``serve()`` starts them before it accepts anyone and cancels
  them after the last connection has ended.
* Health checks are plain functions the health path calls (``_health.py``):
  the server answers 503 while any fails.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from .._http.target import Target, parse_target
from .health import HealthCheck
from .request import Request
from .response import Response
from .routing import (
    AuthHook,
    BeforeUpgrade,
    HTTPHandler,
    HTTPRoute,
    InheritAuth,
    Match,
    Router,
    WebSocketHandler,
    WebSocketRoute,
    route_segments,
)

# The route types live in _app/routing.py; they are named here too, where the app is.
__all__ = ["App", "HTTPRoute", "Service", "WebSocketRoute"]

logger = logging.getLogger("trio_ws.app")

_WS = TypeVar("_WS", bound=WebSocketHandler)
_HTTP = TypeVar("_HTTP", bound=HTTPHandler)


class Service(Protocol):
    """A task that lives as long as the server: ``async def service(server, *, task_status)``.

    ``serve()`` starts it with ``nursery.start(service, server)``, so it must
    call ``task_status.started()`` once it is ready; the server accepts
    connections only after every service has. It can learn that graceful
    shutdown has begun with ``await server.wait_closing()``; it is cancelled
    after the last connection has ended. An exception from a service stops
    the whole server (the hard stop) and comes out of ``serve()``.

    ``server`` is the running :class:`~trio_ws.Server`; it is typed ``Any``
    here because the app sits below the server and does not import it, and a
    narrower type would refuse services annotated ``server: trio_ws.Server``.
    """

    def __call__(
        self, server: Any, *, task_status: trio.TaskStatus[None] = ...
    ) -> Awaitable[object]: ...  # pragma: no cover (a signature)


_S = TypeVar("_S", bound=Service)


class App:
    """Routes by path: WebSocket endpoints, HTTP endpoints, static files, and services.

    Example::

        app = trio_ws.App()

        @app.websocket("/ws")
        async def shout(ws: trio_ws.WebSocketConnection) -> None:
            while True:
                message = await ws.get_message()  # ConnectionClosed ends the handler
                await ws.send_message(message.upper())

        @app.route("/rooms/{name}", methods=["GET", "POST"])
        async def room(request: trio_ws.Request) -> trio_ws.Response:
            return trio_ws.Response.text(200, f"room {request.path_params['name']}")

    Args:
        health_path: Path of the built-in health check, which answers 200
            while the server accepts connections, and 503 while it shuts down
            or while a check added with :meth:`add_health_check` fails.
            ``None`` turns it off. It never needs credentials.
        auth: The auth hook for every route that does not name its own
            (``auth=`` on a route; ``auth=None`` there makes that route public).
    """

    def __init__(self, *, health_path: str | None = "/healthz", auth: AuthHook | None = None) -> None:
        if health_path is not None and not health_path.startswith("/"):
            raise ValueError(f"route path {health_path!r} must start with '/'")
        self._router = Router()
        self._services: list[Service] = []
        self._health_checks: dict[str, HealthCheck] = {}
        self.health_path = health_path
        self.auth = auth

    # -- WebSocket routes --------------------------------------------------------

    def websocket(
        self,
        path: str,
        *,
        subprotocols: Iterable[str] = (),
        auth: AuthHook | InheritAuth | None = InheritAuth.APP,
        before_upgrade: BeforeUpgrade | None = None,
        ignore_case: bool = False,
        keep_alive: bool = True,
    ) -> Callable[[_WS], _WS]:
        """Decorator: run the decorated handler for each WebSocket opened on ``path``."""

        def register(handler: _WS) -> _WS:
            self.add_websocket(
                path,
                handler,
                subprotocols=subprotocols,
                auth=auth,
                before_upgrade=before_upgrade,
                ignore_case=ignore_case,
                keep_alive=keep_alive,
            )
            return handler

        return register

    def add_websocket(
        self,
        path: str,
        handler: WebSocketHandler,
        *,
        subprotocols: Iterable[str] = (),
        auth: AuthHook | InheritAuth | None = InheritAuth.APP,
        before_upgrade: BeforeUpgrade | None = None,
        ignore_case: bool = False,
        keep_alive: bool = True,
    ) -> None:
        """Run ``handler`` for each WebSocket opened on ``path``.

        Args:
            path: The request path, starting with ``/``; ``{name}`` segments
                are path parameters (``ws.request.path_params``).
            handler: ``async def handler(ws)``; the connection closes when it
                returns. ``ws.request`` is the :class:`Request` it was opened with.
            subprotocols: Subprotocols this endpoint speaks, in order of
                preference. The first one the client proposes is chosen.
            auth: An auth hook, run before the upgrade; by default the app's;
                ``None`` for none.
            before_upgrade: ``async def hook(request) -> Response | None``, run
                after auth and before the 101: a ``Response`` is sent instead
                of upgrading (404 for an unknown id, 409 for a second socket).
            ignore_case: Match the path's letters in any case.
            keep_alive: Ping this route's connections every
                ``Options.keep_alive_interval`` (the default). ``False`` for a
                protocol that keeps its connections alive itself, with its
                own pings and timeout (SignalR hubs do, and some of their
                clients never answer a WebSocket ping).
        """
        self._add(
            WebSocketRoute(
                path,
                handler,
                tuple(subprotocols),
                auth,
                before_upgrade,
                ignore_case=ignore_case,
                keep_alive=keep_alive,
            )
        )

    # -- HTTP routes -------------------------------------------------------------

    def route(
        self,
        path: str,
        *,
        methods: Iterable[str] = ("GET", "HEAD"),
        auth: AuthHook | InheritAuth | None = InheritAuth.APP,
        stream_body: bool = False,
        ignore_case: bool = False,
    ) -> Callable[[_HTTP], _HTTP]:
        """Decorator: answer plain HTTP requests to ``path`` with the decorated handler."""

        def register(handler: _HTTP) -> _HTTP:
            self.add_route(
                path, handler, methods=methods, auth=auth, stream_body=stream_body, ignore_case=ignore_case
            )
            return handler

        return register

    def add_route(
        self,
        path: str,
        handler: HTTPHandler,
        *,
        methods: Iterable[str] = ("GET", "HEAD"),
        auth: AuthHook | InheritAuth | None = InheritAuth.APP,
        stream_body: bool = False,
        ignore_case: bool = False,
    ) -> None:
        """Answer plain HTTP requests to ``path`` with ``handler``.

        Args:
            path: The request path, starting with ``/``; ``{name}`` segments
                are path parameters (``request.path_params``).
            handler: ``async def handler(request) -> Response``.
            methods: The methods it answers; ``GET`` brings ``HEAD`` along.
                The server answers ``OPTIONS`` (with CORS preflights) itself.
            auth: An auth hook, run before the body is read; by default the
                app's; ``None`` for none.
            stream_body: Call the handler as soon as the head has arrived and
                let it read ``request.body_stream``, instead of reading the
                whole body into ``request.body`` first. Both are bounded by
                ``max_request_body``.
            ignore_case: Match the path's letters in any case.
        """
        allowed = frozenset(m.upper() for m in methods)
        if "CONNECT" in allowed:
            # A 2xx answer to CONNECT turns the connection into a tunnel, which is a proxy's job.
            raise ValueError(f"route {path!r}: CONNECT is for proxies, and trio_ws is not one")
        if "GET" in allowed:
            allowed |= {"HEAD"}
        self._add(HTTPRoute(path, handler, allowed, auth, stream_body, ignore_case))

    def add_static(
        self,
        path: str,
        body: bytes,
        content_type: str | None = None,
        *,
        auth: AuthHook | InheritAuth | None = InheritAuth.APP,
    ) -> None:
        """Serve ``body`` at ``path``. The content type is guessed from the path if not given."""
        response = Response(200, body, content_type or _guess_type(path))

        async def static(request: Request) -> Response:
            return response

        self.add_route(path, static, auth=auth)

    def add_static_directory(
        self, prefix: str, directory: str | Path, *, auth: AuthHook | InheritAuth | None = InheritAuth.APP
    ) -> None:
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
                self.add_static(f"{prefix}/{file.name}", file.read_bytes(), auth=auth)

    # -- services ----------------------------------------------------------------

    def service(self, fn: _S) -> _S:
        """Decorator: run ``fn`` as a service for as long as the server runs (see :meth:`add_service`)."""
        self.add_service(fn)
        return fn

    def add_service(self, fn: Service) -> None:
        """Run ``fn`` as long as the server: started before it accepts, cancelled after the last connection.

        ``fn`` is called as ``await nursery.start(fn, server)``: it gets the
        :class:`~trio_ws.Server`, and must call ``task_status.started()`` when
        it is ready. See :class:`Service`.
        """
        self._services.append(fn)

    @property
    def services(self) -> tuple[Service, ...]:
        """The services, in the order they were added (and are started)."""
        return tuple(self._services)

    # -- health ------------------------------------------------------------------

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """Report ``check()`` on the health path under ``name``; answer 503 while it fails.

        ``check`` is a plain function returning a :class:`~trio_ws.Health`. It
        runs on every health request, so it must answer from what is already
        known (a link's state), without I/O. A check added again under the
        same name replaces the first.
        """
        self._health_checks[name] = check

    def remove_health_check(self, name: str) -> None:
        """Stop reporting the check named ``name`` (nothing happens if there is none)."""
        self._health_checks.pop(name, None)

    @property
    def health_checks(self) -> tuple[tuple[str, HealthCheck], ...]:
        """The health checks, as ``(name, check)`` pairs, in the order they were added."""
        return tuple(self._health_checks.items())

    # -- lookups -----------------------------------------------------------------

    def resolve(self, target: str | Target) -> Match | None:
        """The endpoint for a request target (path, optional query) and its path parameters, or ``None``."""
        if isinstance(target, str):
            parsed = parse_target(target.encode("ascii", "replace"))
            if parsed is None:
                return None
            target = parsed
        return self._router.resolve(target.segments)

    def auth_for(self, route: WebSocketRoute | HTTPRoute) -> AuthHook | None:
        """The auth hook that guards ``route``: its own, or the app's."""
        return self.auth if route.auth is InheritAuth.APP else route.auth

    def is_health_check(self, target: Target) -> bool:
        """Whether ``target`` is the built-in health check."""
        return self.health_path is not None and target.segments == route_segments(self.health_path)

    @property
    def routes(self) -> tuple[WebSocketRoute | HTTPRoute, ...]:
        """Every registered route, in the order it was added."""
        return self._router.routes

    def _add(self, route: WebSocketRoute | HTTPRoute) -> None:
        if self.health_path is not None and route_segments(route.path) == route_segments(self.health_path):
            raise ValueError(f"path {route.path!r} is already routed: it is the health check")
        self._router.add(route)


def _guess_type(path: str) -> str:
    if path.endswith("/"):
        return "text/html; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in {"application/javascript", "application/json"}:
        return f"{guessed}; charset=utf-8"
    return guessed
