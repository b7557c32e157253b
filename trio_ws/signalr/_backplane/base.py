"""The backplane interface: who is connected, who is in which group, and delivery.

Every send to clients, every group change and every client-result call goes
through a ``Backplane``. With one process, ``InProcessBackplane`` keeps the
tables in memory. With several worker processes behind one address, a
backplane such as Redis shares them, so that ``clients.group("room")``
reaches members connected to any worker.

Rules of the interface:

* Small and asynchronous: every method may talk to a server over the
  network. Each is called from the task that wants the work done, so trio's
  cancellation and deadlines reach it.
* A backplane knows connections by id. The connections of this process are
  handed to it as ``LocalConnection`` objects (``add_connection``), which is
  all it needs to deliver to them; how it reaches other processes is its own
  business.
* ``serve()`` runs for the hub server's lifetime, in the hub server's
  nursery: a Redis backplane reads its subscription there.
* Messages travel as ``SerializedMessage``: encoded once per protocol, on
  first use, however many connections receive them.
* Delivery to this process's connections goes through ``deliver_locally``
  (or its two halves, ``offer_locally`` and ``deliver_to_waiting``), which
  applies the slow-client rules, whatever the backplane.
* A connection lives where its first transport lands (``docs/scale-out.md``):
  negotiate records a ``Pending`` connection (``record_pending``), the first
  transport request for its token takes it (``claim``) and opens it there,
  and a request that lands on another worker is relayed to the holder
  (``holder``, ``ask``). With one process all of this stays in a
  ``PendingTable`` in memory, and nothing is ever relayed.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import trio

from ..._app.health import Health
from .._errors import BackplaneError

if TYPE_CHECKING:
    from ..._observe.metrics import HubMetrics, Metrics
    from .._protocol.codec import HubProtocol
    from .._protocol.messages import Invocation

__all__ = [
    "AskHandler",
    "Audience",
    "Backplane",
    "LocalConnection",
    "Pending",
    "PendingTable",
    "SerializedMessage",
    "deliver_locally",
    "deliver_to_waiting",
    "offer_locally",
]

AskHandler = Callable[[str, Any], Awaitable[Any]]
"""``await handler(origin_worker, request)``: this worker's answer to another worker's ``ask``."""


@dataclass(frozen=True)
class Pending:
    """A connection negotiate has minted but no transport has opened yet.

    ``traceparent`` and ``tracestate`` are the negotiate's W3C trace context
    (``""``: none, or tracing is off), the parent of its calls' spans when the
    request that opens the transport names none (a browser's WebSocket).
    """

    connection_id: str
    token: str
    user_id: str | None
    stateful_reconnect: bool
    traceparent: str = ""
    tracestate: str = ""


class PendingTable:
    """Pending connections of one process, each kept at most ``ttl`` seconds, at most ``limit`` of
    them (the oldest go first: a flood of negotiates cannot grow it without a bound)."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._entries: dict[str, tuple[Pending, float]] = {}

    def add(self, pending: Pending, ttl: float) -> None:
        now = trio.current_time()
        entries = self._entries
        while entries:
            oldest = next(iter(entries))
            if entries[oldest][1] > now and len(entries) < self.limit:
                break
            del entries[oldest]
        entries[pending.token] = (pending, now + ttl)

    def __len__(self) -> int:
        """How many are pending now (the expired ones are forgotten first)."""
        now = trio.current_time()
        entries = self._entries
        while entries and entries[next(iter(entries))][1] <= now:
            del entries[next(iter(entries))]
        return len(entries)

    def take(self, token: str) -> Pending | None:
        """The pending connection for ``token``, now taken (``None``: none, or it expired)."""
        entry = self._entries.pop(token, None)
        if entry is None or entry[1] <= trio.current_time():
            return None
        return entry[0]


@dataclass(frozen=True)
class Audience:
    """Who a message is for: everyone, or the union of some connections, groups and
    users, minus ``excluded`` connections."""

    everyone: bool = False
    connections: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()

    @property
    def single(self) -> bool:
        """One connection named by its id: the sender may wait for it (no slow-client policy)."""
        return (
            not (self.everyone or self.groups or self.users or self.excluded) and len(self.connections) == 1
        )


class SerializedMessage:
    """An invocation for many clients, encoded at most once per protocol."""

    __slots__ = ("_encoded", "message")

    def __init__(self, message: Invocation) -> None:
        self.message = message
        self._encoded: dict[str, bytes] = {}

    def encode(self, protocol: HubProtocol) -> bytes:
        """The framed bytes for ``protocol``.

        Raises:
            TypeError, ValueError: an argument cannot be encoded.
        """
        data = self._encoded.get(protocol.name)
        if data is None:
            data = self._encoded[protocol.name] = protocol.encode(self.message)
        return data


class LocalConnection(Protocol):
    """A hub connection of this process, as a backplane sees it."""

    @property
    def connection_id(self) -> str: ...

    @property
    def user_id(self) -> str | None: ...

    async def send_direct(self, message: SerializedMessage) -> None:
        """Queue ``message``, waiting for room (at most ``slow_client_timeout``)."""
        ...

    def offer(self, message: SerializedMessage) -> bool:
        """Queue ``message`` without waiting, applying the slow-client policy; ``False``
        means the policy is to wait: call ``deliver`` next."""
        ...

    async def deliver(self, message: SerializedMessage) -> None:
        """Queue ``message`` under the ``WAIT`` policy."""
        ...

    async def invoke(self, target: str, arguments: Sequence[Any]) -> Any:
        """Call ``target`` on the client and return its result (raises ``ClientResultError``)."""
        ...


async def deliver_locally(
    connections: Iterable[LocalConnection], message: SerializedMessage, *, single: bool
) -> None:
    """Queue ``message`` for each of ``connections`` (of this process).

    To a single connection the sender waits for room. To many, the message is
    offered to each without waiting; the slow ones (under the ``WAIT``
    policy) are then waited for together, each at most its timeout.
    """
    if single:
        for connection in connections:
            await connection.send_direct(message)
        return
    waiting = offer_locally(connections, message)
    if not waiting:
        await trio.lowlevel.checkpoint()
        return
    await deliver_to_waiting(waiting, message)


def offer_locally(
    connections: Iterable[LocalConnection], message: SerializedMessage
) -> list[LocalConnection]:
    """Offer ``message`` to each of ``connections`` without waiting; those that could not take it yet.

    Not a checkpoint: a backplane's reader offers each message of a batch it
    has read, and checkpoints once per batch rather than once per message.
    """
    return [connection for connection in connections if not connection.offer(message)]


async def deliver_to_waiting(waiting: Iterable[LocalConnection], message: SerializedMessage) -> None:
    """Wait for the slow ones that ``offer_locally`` left, together, each at most its timeout."""
    async with trio.open_nursery() as nursery:
        for connection in waiting:
            nursery.start_soon(connection.deliver, message)


class Backplane(abc.ABC):
    """Connections, groups, users and delivery, shared by every process serving a hub."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Run for the hub server's lifetime; ``started()`` once messages can flow.

        The in-process backplane has nothing to run; a networked one reads
        its subscription here.
        """
        task_status.started()
        await trio.sleep_forever()

    async def aclose(self) -> None:
        """The hub server is stopping, and its connections have ended: leave cleanly.

        Called once, before ``serve()`` is cancelled, on a graceful stop only
        (a hard stop just cancels ``serve()``). A networked backplane takes
        its process out of the shared tables here, rather than letting them
        expire; the in-process one has nothing to do.
        """
        await trio.lowlevel.checkpoint()

    # -- where connections live: pending tokens, claims, and asking their holder --------

    on_ask: AskHandler | None = None
    """Set by the hub server: how this worker answers another's ``ask`` (a relayed request)."""

    @property
    def pending(self) -> PendingTable:
        """This process's pending connections (what a backplane without shared storage uses)."""
        table: PendingTable | None = self.__dict__.get("_pending_table")
        if table is None:
            table = self.__dict__["_pending_table"] = PendingTable()
        return table

    async def record_pending(self, pending: Pending, ttl: float) -> None:
        """Negotiate minted ``pending``: the first transport request for its token, on any
        worker, may ``claim`` it within ``ttl`` seconds."""
        await trio.lowlevel.checkpoint()
        self.pending.add(pending, ttl)

    async def claim(self, token: str) -> Pending | None:
        """Take the pending connection for ``token``, to open it in this process (``None``: there
        is none, or another worker took it)."""
        await trio.lowlevel.checkpoint()
        return self.pending.take(token)

    async def holder(self, token: str) -> str | None:
        """The other worker holding ``token``'s connection, if any (one process: never)."""
        await trio.lowlevel.checkpoint()
        return None

    async def release(self, token: str) -> None:
        """``token``'s connection, held by this process, has ended."""
        await trio.lowlevel.checkpoint()

    async def ask(self, worker: str, request: Any, within: float) -> Any:
        """Ask ``worker`` (its ``on_ask``) and return its answer, which it gives within ``within``
        seconds or not at all.

        Raises:
            BackplaneError: no answer came (the worker is gone, or the link is down).
        """
        await trio.lowlevel.checkpoint()
        raise BackplaneError(f"worker {worker} cannot be reached: this backplane has no other workers")

    def instrument(self, hub: HubMetrics | None, metrics: Metrics | None) -> None:  # noqa: B027
        """Count what the backplane does in ``hub``'s instruments (``None``: stop counting).

        The in-process backplane has nothing to count; a networked one its link and its relays.
        """

    def health(self) -> Health:
        """Whether the backplane can do its work now, answered at once (for ``/healthz``).

        The in-process backplane always can; a networked one reports its link.
        """
        return Health(True, "in-process backplane")

    @abc.abstractmethod
    async def add_connection(self, connection: LocalConnection) -> None:
        """A connection of this process finished its handshake."""

    @abc.abstractmethod
    async def remove_connection(self, connection: LocalConnection) -> None:
        """A connection of this process ended: forget it, and take it out of its groups."""

    @abc.abstractmethod
    async def add_to_group(self, connection_id: str, group: str) -> None:
        """Put a connection in a group; a connection that has ended is ignored."""

    @abc.abstractmethod
    async def remove_from_group(self, connection_id: str, group: str) -> None:
        """Take a connection out of a group; nothing happens if it was not in it."""

    @abc.abstractmethod
    async def group_members(self, group: str) -> frozenset[str]:
        """The ids of the connections in ``group``, wherever they are connected."""

    @abc.abstractmethod
    async def user_connections(self, user_id: str) -> frozenset[str]:
        """The ids of ``user_id``'s connections, wherever they are connected."""

    @abc.abstractmethod
    async def send(self, audience: Audience, message: SerializedMessage) -> None:
        """Deliver ``message`` to every connection in ``audience``."""

    @abc.abstractmethod
    async def invoke_client(self, connection_id: str, target: str, arguments: Sequence[Any]) -> Any:
        """Call ``target`` on one client, wherever it is connected, and return its result.

        Raises:
            ClientResultError: no such connection, the client failed, or it left.
        """


def frozen(values: Collection[str] | str) -> frozenset[str]:
    """Ids given as a collection, refusing a lone string (which would be a set of letters)."""
    if isinstance(values, str):
        raise TypeError(f"expected a list of ids, not the string {values!r}; write [{values!r}]")
    return frozenset(values)
