"""The call a task is running, and the connection as hub code sees it.

``CallInfo`` is set in a context variable (``current_call``) for each call,
in the task that runs it; ``Hub.context`` and ``Hub.clients`` read it, so
they mean the caller of the code that reads them. ``HubCallerContext`` is
what hub code knows about that connection.

Rules of this module:

* It knows the connection only as ``CallerConnection``: the members hub code
  may reach through it. ``HubConnection`` has them all; a new one is a new
  promise of the connection to hub code, so add one only when hub code needs it.
* Nothing here imports the connection, the dispatcher or the server: they
  import this.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import DisconnectReason

if TYPE_CHECKING:
    from ..._app.request import Identity, Request
    from ..._parking import Slots
    from .._protocol.codec import HubProtocol

__all__ = ["CallInfo", "CallerConnection", "CallerServer", "HubCallerContext", "current_call"]


class CallerServer(Protocol):
    """The server a connection belongs to, as its calls see it: its hub (for logs)."""

    @property
    def hub(self) -> object: ...  # pragma: no cover (a signature)


class CallerConnection(Protocol):
    """One hub connection, as hub code and its calls see it (``HubConnection`` is one)."""

    @property
    def connection_id(self) -> str: ...  # pragma: no cover (a signature)

    @property
    def user_id(self) -> str | None: ...  # pragma: no cover (a signature)

    @property
    def request(self) -> Request | None: ...  # pragma: no cover (a signature)

    @property
    def transport_name(self) -> str | None: ...  # pragma: no cover (a signature)

    @property
    def protocol(self) -> HubProtocol | None: ...  # pragma: no cover (a signature)

    @property
    def server(self) -> CallerServer:
        """The server it belongs to: ``Hub`` compares it with its own."""  # pragma: no cover

    @property
    def negotiate_trace(self) -> tuple[str, str] | None:
        """The negotiate request's W3C trace context, if tracing kept it."""  # pragma: no cover

    @property
    def context(self) -> HubCallerContext: ...  # pragma: no cover (a signature)

    def close(self, reason: DisconnectReason, detail: str | None = None) -> None: ...  # pragma: no cover


@dataclass(eq=False)
class CallInfo:
    """The call a task is running: set by the dispatcher, read through ``Hub``."""

    connection: CallerConnection
    in_on_connected: bool = False
    slot: Slots | None = field(default=None)
    method: str | None = None  # the hub method's wire name, for logs
    # Set for a call run in the connection's invoker task: the dispatcher's, to let the calls
    # behind this one go on in another task while it waits (``_hub/dispatch.py``).
    on_early_release: Callable[[], None] | None = None

    def release_slot(self) -> None:
        """Give back the parallel-invocation slot early (once): the call is waiting for a client."""
        if self.slot is not None:
            slot, self.slot = self.slot, None
            slot.release()
            if self.on_early_release is not None:
                self.on_early_release()

    def end(self) -> None:
        """The call is over: its slot goes back, if it still holds it."""
        self.on_early_release = None
        self.release_slot()


current_call: contextvars.ContextVar[CallInfo] = contextvars.ContextVar("trio_ws.signalr.call")


class HubCallerContext:
    """What hub code knows about the connection it is serving."""

    def __init__(self, connection: CallerConnection) -> None:
        self._connection = connection
        # Made when first used: most connections never use them, and an empty dict is 64 bytes
        # that an idle connection would keep all its life.
        self._items: dict[Any, Any] | None = None
        self._limits: dict[object, Any] | None = None  # rate_limit's buckets for this connection

    @property
    def items(self) -> dict[Any, Any]:
        """Per-connection state for the hub's own use; gone when the connection ends."""
        if self._items is None:
            self._items = {}
        return self._items

    @property
    def connection_id(self) -> str:
        """The connection's public id: other clients and ``clients.client(id)`` use it."""
        return self._connection.connection_id

    @property
    def user_id(self) -> str | None:
        """Who the transport authenticated, or ``None``; ``clients.user(id)`` reaches them."""
        return self._connection.user_id

    @property
    def identity(self) -> Identity | None:
        """Who the auth hook said the client is (``user_id``, ``roles``, ``claims``), or ``None``."""
        request = self._connection.request
        return None if request is None else request.identity

    @property
    def request(self) -> Request | None:
        """The HTTP request that opened the connection's transport (the WebSocket's upgrade), or
        ``None`` for a transport without one; its headers, cookies, query and identity."""
        return self._connection.request

    @property
    def transport(self) -> str | None:
        """The attached transport's name: ``"WebSockets"``, ``"LongPolling"``..."""
        return self._connection.transport_name

    @property
    def protocol(self) -> str | None:
        """The hub protocol the client chose: ``"json"`` or ``"messagepack"``."""
        protocol = self._connection.protocol
        return None if protocol is None else protocol.name

    def abort(self) -> None:
        """Close the connection now; the client is told not to reconnect.

        Running calls and streams are cancelled, ``on_disconnected`` gets
        ``DisconnectReason.ABORTED``.
        """
        self._connection.close(DisconnectReason.ABORTED)

    def __repr__(self) -> str:
        return f"<HubCallerContext {self.connection_id}>"
