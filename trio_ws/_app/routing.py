"""The route table: which handlers a request path reaches, and with which path parameters.

Rules of this module:

* Pure: no I/O, no trio. ``App`` fills a :class:`Router`; ``_http/connection.py`` asks it.
* A path is matched segment by segment against the request's decoded
  segments (``_target.py``), never as a decoded string, so ``%2F`` inside a
  segment is never a separator.
* A route path is written as it is meant (``/a b``, not ``/a%20b``); a
  segment ``{name}`` matches any one non-empty segment and hands it to the
  handler as ``path_params["name"]``.
* Matching order: exact paths first (a dictionary lookup, the fast path),
  then exact paths registered with ``ignore_case=True`` (ASP.NET matches
  SignalR hub paths so), then paths with parameters, in the order they were
  added. The first match wins.
* One path is one :class:`Endpoint`, which holds at most one WebSocket
  handler and one HTTP handler per method, so ``GET /hub`` can upgrade or
  stream and ``POST /hub`` can send. Giving a path a second handler for the
  same thing is an error, because a silent override is a bug waiting to be
  found in production.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from .._websocket.connection import ServerConnection
    from .request import Identity, Request
    from .response import Response

__all__ = [
    "AuthHook",
    "BeforeUpgrade",
    "Endpoint",
    "HTTPHandler",
    "HTTPRoute",
    "InheritAuth",
    "Match",
    "Router",
    "WebSocketHandler",
    "WebSocketRoute",
    "route_segments",
]

WebSocketHandler: TypeAlias = "Callable[[ServerConnection], Awaitable[None]]"
"""A coroutine function that talks to one client, and returns when it is done.

It gets a :class:`~trio_ws.ServerWebSocket` (trio-websocket's ``WebSocketConnection``
with ``.request``); a handler annotated with ``WebSocketConnection`` fits too.
"""

HTTPHandler: TypeAlias = "Callable[[Request], Awaitable[Response]]"
"""A coroutine function that turns a :class:`Request` into a :class:`Response`."""

AuthHook: TypeAlias = "Callable[[Request], Awaitable[Identity | Response]]"
"""Sees a request before its handler or upgrade: an :class:`Identity` admits it, a ``Response`` refuses it."""

BeforeUpgrade: TypeAlias = "Callable[[Request], Awaitable[Response | None]]"
"""Sees an upgrade request before the 101: ``None`` lets it through, a ``Response`` answers instead."""


class InheritAuth(enum.Enum):
    """The default of a route's ``auth``: use the app's hook (``App(auth=...)``)."""

    APP = "the app's auth hook"


@dataclass(frozen=True)
class WebSocketRoute:
    """A path that accepts WebSocket upgrades."""

    path: str
    handler: WebSocketHandler
    subprotocols: tuple[str, ...] = ()
    auth: AuthHook | InheritAuth | None = InheritAuth.APP
    before_upgrade: BeforeUpgrade | None = None
    ignore_case: bool = False
    #: Whether the server pings this route's connections (``Options.keep_alive_interval``);
    #: ``False`` for protocols that keep their connections alive themselves (SignalR hubs).
    keep_alive: bool = True

    def choose_subprotocol(self, proposed: Iterable[str]) -> str | None:
        """The first of the client's proposals that this route supports, if any."""
        for name in proposed:
            if name in self.subprotocols:
                return name
        return None


@dataclass(frozen=True)
class HTTPRoute:
    """A path and methods that answer plain HTTP requests."""

    path: str
    handler: HTTPHandler
    methods: frozenset[str] = field(default=frozenset({"GET", "HEAD"}))
    auth: AuthHook | InheritAuth | None = InheritAuth.APP
    stream_body: bool = False
    ignore_case: bool = False


@dataclass
class Endpoint:
    """Everything routed at one path: a WebSocket handler, HTTP handlers by method, or both."""

    path: str
    ignore_case: bool
    websocket: WebSocketRoute | None = None
    http: dict[str, HTTPRoute] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """The HTTP methods this path answers, sorted (``GET`` for a WebSocket-only path)."""
        methods = set(self.http)
        if self.websocket is not None:
            methods.add("GET")
        return sorted(methods)


@dataclass(frozen=True)
class Match:
    """A request path's endpoint, and the values of the route's ``{name}`` segments."""

    endpoint: Endpoint
    params: Mapping[str, str]


# Shared by every match without parameters: a WebSocket keeps its request's for its whole life.
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class _Param:
    name: str


_Segment: TypeAlias = "str | _Param"


class Router:
    """Endpoints by path, found by :meth:`resolve`."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, ...], Endpoint] = {}
        self._folded: dict[tuple[str, ...], Endpoint] = {}
        self._patterns: list[tuple[tuple[_Segment, ...], Endpoint]] = []
        # Every endpoint by the path as written, and the order routes were added in.
        self._endpoints: dict[str, Endpoint] = {}
        self._routes: list[WebSocketRoute | HTTPRoute] = []

    @property
    def routes(self) -> tuple[WebSocketRoute | HTTPRoute, ...]:
        """Every route, in the order it was added."""
        return tuple(self._routes)

    def add(self, route: WebSocketRoute | HTTPRoute) -> None:
        """Route ``route.path`` (for its methods, or for upgrades) to ``route``.

        Raises:
            ValueError: the path is malformed, or already has a handler for the same thing.
        """
        endpoint = self._endpoint(route.path, route.ignore_case)
        if isinstance(route, WebSocketRoute):
            if endpoint.websocket is not None:
                raise ValueError(f"path {route.path!r} already has a WebSocket handler; each path has one")
            endpoint.websocket = route
        else:
            taken = sorted(set(route.methods) & set(endpoint.http))
            if taken:
                raise ValueError(
                    f"path {route.path!r} already has a handler for {', '.join(taken)}; "
                    "each method of a path has one"
                )
            for method in route.methods:
                endpoint.http[method] = route
        self._routes.append(route)

    def resolve(self, segments: tuple[str, ...]) -> Match | None:
        """The endpoint for a request's decoded path segments, or ``None``."""
        endpoint = self._exact.get(segments) or self._folded.get(tuple(s.casefold() for s in segments))
        if endpoint is not None:
            return Match(endpoint, _NO_PARAMS)
        for pattern, endpoint in self._patterns:
            params = _match(pattern, segments, endpoint.ignore_case)
            if params is not None:
                return Match(endpoint, params)
        return None

    def _endpoint(self, path: str, ignore_case: bool) -> Endpoint:
        """The endpoint for ``path``, made on first use."""
        existing = self._endpoints.get(path)
        if existing is not None:
            if existing.ignore_case != ignore_case:
                raise ValueError(
                    f"path {path!r} was routed with ignore_case={existing.ignore_case}; "
                    "give every route of a path the same ignore_case"
                )
            return existing
        pattern = _compile(path)
        endpoint = Endpoint(path, ignore_case)
        if all(isinstance(s, str) for s in pattern):
            literal = tuple(s for s in pattern if isinstance(s, str))
            if ignore_case:
                folded = tuple(s.casefold() for s in literal)
                if folded in self._folded:
                    raise ValueError(
                        f"path {path!r} is {self._folded[folded].path!r} but for case, which is "
                        "routed with ignore_case=True already; route it once"
                    )
                self._folded[folded] = endpoint
            else:
                self._exact[literal] = endpoint
        else:
            self._patterns.append((pattern, endpoint))
        self._endpoints[path] = endpoint
        return endpoint


def route_segments(path: str) -> tuple[str, ...]:
    """The segments of a route's path, as written (route paths are not percent-encoded)."""
    return tuple(path[1:].split("/"))


def _compile(path: str) -> tuple[_Segment, ...]:
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")
    pattern: list[_Segment] = []
    for segment in route_segments(path):
        if segment.startswith("{") and segment.endswith("}") and segment[1:-1].isidentifier():
            name = segment[1:-1]
            if any(isinstance(p, _Param) and p.name == name for p in pattern):
                raise ValueError(f"route path {path!r} names the parameter {{{name}}} twice")
            pattern.append(_Param(name))
        elif "{" in segment or "}" in segment:
            raise ValueError(
                f"route path {path!r}: a parameter is a whole segment with a name, such as '/rooms/{{name}}'"
            )
        else:
            pattern.append(segment)
    return tuple(pattern)


def _match(
    pattern: tuple[_Segment, ...], segments: tuple[str, ...], ignore_case: bool
) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments, strict=True):
        if isinstance(expected, _Param):
            if not actual:
                return None
            params[expected.name] = actual
        elif expected != actual and not (ignore_case and expected.casefold() == actual.casefold()):
            return None
    return params
