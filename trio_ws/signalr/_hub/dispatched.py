"""What the dispatcher needs of the server and of the connection it runs calls for.

The dispatcher (``_hub/dispatch.py``) sits below the hub connection and the
hub server: it imports neither, and names here the members it uses.
``HubConnection`` is a ``DispatchedConnection`` and ``HubServer`` a
``DispatchHost``; mypy checks both where they are made. A member added here
is a new promise of theirs: add one only when running calls needs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVarTuple

from .call import CallerConnection
from .results import ResultsChannel

if TYPE_CHECKING:
    from .._options import HubOptions
    from .._transports.sender import Sender
    from .filters import NextInvoke
    from .hub import Hub
    from .methods import HubMethod

__all__ = ["DispatchHost", "DispatchedConnection"]

_Args = TypeVarTuple("_Args")


class DispatchHost(Protocol):
    """What running calls needs of the hub server (``HubServer`` is one): the hub, its methods by
    lowercased wire name, their filter pipelines, and the options."""

    @property
    def hub(self) -> Hub[Any]: ...  # pragma: no cover (a signature)

    @property
    def methods(self) -> Mapping[str, HubMethod]: ...  # pragma: no cover (a signature)

    @property
    def pipelines(self) -> Mapping[str, NextInvoke]: ...  # pragma: no cover (a signature)

    @property
    def options(self) -> HubOptions: ...  # pragma: no cover (a signature)


class DispatchedConnection(CallerConnection, ResultsChannel, Protocol):
    """The connection, as its dispatcher sees it (``HubConnection`` is one): what hub code sees,
    plus its tasks, its client timeout and its replay buffer."""

    @property
    def server(self) -> DispatchHost: ...  # pragma: no cover (a signature)

    @property
    def sender(self) -> Sender: ...  # pragma: no cover (a signature)

    def start_task(
        self, function: Callable[[*_Args], Awaitable[object]], *args: *_Args
    ) -> None: ...  # pragma: no cover (a signature)

    def arm_client_timeout(self) -> None: ...  # pragma: no cover (a signature)
