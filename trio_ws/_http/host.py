"""What the front door needs from the server that owns it, named as protocols.

The HTTP layer sits below ``_server``: it never imports ``Server``, it names
the members it uses here, and ``Server`` has them all (mypy checks that where
``_server/server.py`` hands itself to ``serve_stream``). A member added to
``Host`` is a new promise the server must keep: add one only when the front
door truly needs it, and say why.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

import trio

from .._app.request import ShutdownSignal
from .._websocket.lifetime import WebSocketHost

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from .._app.app import App
    from .._app.request import Request
    from .._observe.metrics import Metrics

__all__ = ["Admission", "Host", "Waiting"]


class Waiting(Protocol):
    """A connection waiting for a request head, which admission may close to make room."""

    @property
    def evicted(self) -> bool: ...  # pragma: no cover (a signature)


class Admission(Protocol):
    """The caps on idle connections and on WebSockets (``_server/admission.py`` keeps them)."""

    def waiting(
        self, stream: trio.abc.Stream, *, kept_alive: bool = ...
    ) -> AbstractContextManager[Waiting]: ...  # pragma: no cover (a signature)

    def websocket_slot(self) -> AbstractContextManager[bool]: ...  # pragma: no cover (a signature)


class Host(WebSocketHost, ShutdownSignal, Protocol):
    """The server, as one connection's requests see it: its app, caps, figures and shutdown."""

    @property
    def app(self) -> App: ...  # pragma: no cover (a signature)

    @property
    def admission(self) -> Admission: ...  # pragma: no cover (a signature)

    @property
    def metrics(self) -> Metrics | None: ...  # pragma: no cover (a signature)

    @property
    def tracer(self) -> Tracer | None: ...  # pragma: no cover (a signature)

    @property
    def loopback_only(self) -> bool: ...  # pragma: no cover (a signature)

    def streaming(self, request: Request, /) -> AbstractContextManager[trio.CancelScope]:
        """A scope shutdown cancels to end a streamed response."""  # pragma: no cover (a signature)
