"""``RedisBackplane``: a hub's connections, groups, users and client results shared by every
worker, on one host or many, through Redis or Valkey (with coredis, which runs on trio).

::

    RedisBackplane.serve(task_status=...)      in the hub server's nursery
    └─ backplane nursery
       ├─ RedisLink.serve                      the link, and its sessions (redis_link.py)
       └─ one task per client result asked     a caller on another worker waits for this
          or request relayed by another worker worker's client, or a poll's answer
                                               (together, at most max_remote_results)

Rules of this module:

* It is the in-process backplane (it extends it) for this process's own
  connections, plus Redis for everything else: this worker's tables stay
  the truth about its connections, and Redis holds the copy every worker
  reads (``redis_wire.py`` lays it out).
* A send is published once on the hub's channel, in the order sends are
  made, then delivered to this worker's own connections at once; every
  other worker delivers it to its own. What arrives from another worker
  follows the slow-client policy of a send to many, even when it names one
  connection: the sender is elsewhere, and this worker's intake must not
  wait on one client (under ``WAIT`` it does, up to ``slow_client_timeout``).
* A group change for a connection held by another worker is asked of that
  worker, which applies it and answers; it returns once the holder has, so
  a send after it reaches the connection. A client result is asked of the
  holder too, which answers on the caller's channel.
* Connections by token (``docs/scale-out.md``): negotiate's pending token
  is kept in Redis for the handshake window, the first transport request
  for it takes it (one script: one worker wins), and the token then names
  its holder until the connection ends or the holder stops heartbeating.
  A request that lands on another worker is relayed to the holder with
  ``ask``: one message on the holder's channel, answered on the asker's,
  within a time bound, and cancelled if the asker stops waiting.
* Members, counts and presence are read from Redis, so they agree on every
  worker. While Redis is out of reach they raise ``BackplaneError`` (a
  ``HubError``: the caller learns why, no traceback is logged), sends wait
  in a bounded buffer, and this worker's connections carry on among
  themselves (see ``redis_link.py`` for the healing).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ..._app.health import Health
from ..._server.deployment import backplane_url
from .._errors import BackplaneError, ClientResultError
from .._protocol.messages import Invocation
from . import redis_wire as wire
from .base import (
    AskHandler,
    Audience,
    LocalConnection,
    Pending,
    SerializedMessage,
    deliver_locally,
    deliver_to_waiting,
    offer_locally,
)
from .in_process import InProcessBackplane
from .redis_link import LinkOptions, LinkState, Presence, RedisLink

if TYPE_CHECKING:
    import coredis

    from ..._observe.metrics import BackplaneMetrics, HubMetrics, Metrics

__all__ = ["RedisBackplane"]

logger = logging.getLogger("trio_ws.signalr.backplane")


_TAKEN = "+"  # appended to an ask's id: the holder has taken it (its answer follows)


class _Reply:
    """An answer another worker owes this one: an Ack, or a client Result."""

    __slots__ = ("arrived", "ok", "value")

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.ok = False
        self.value: Any = "the backplane lost Redis before the answer came"


class RedisBackplane(InProcessBackplane):
    """A hub's connections, groups and users, shared by every worker through Redis or Valkey.

    ``python -m trio_ws APP --backplane redis://host:6379/0`` gives one to
    every hub server of the app; give one yourself to a ``HubServer``
    (``HubServer(hub, backplane=RedisBackplane(url, prefix="trio_ws:Chat"))``)
    when you start the server in your own program. It needs ``coredis``
    (``pip install 'trio_ws[redis]'``).

    Args:
        url: ``redis://host:port/db``, ``rediss://`` for TLS (``valkey://``
            and ``valkeys://`` too); query parameters are coredis's.
        prefix: Names this hub's keys and channels; every worker serving
            the hub must use the same, and each hub its own.
        heartbeat_interval: Seconds between this worker's heartbeats.
        presence_ttl: Seconds after its last heartbeat that a silent
            worker's connections leave their groups and users.
        operation_timeout: Longest wait for Redis, or for another worker's
            answer, before the link counts as broken (or the request failed).
        buffer_size: Bytes of sends kept while Redis is out of reach; past
            it, a send raises ``BackplaneError``.
        max_remote_results: Client results other workers may await from
            this one's clients at once; past it, they are refused.

    Raises:
        ValueError: ``url`` is not a Redis URL, or a timing makes no sense.
        ImportError: coredis is not installed.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "trio_ws:hub",
        heartbeat_interval: float = 2.0,
        presence_ttl: float = 10.0,
        operation_timeout: float = 5.0,
        buffer_size: int = 1024 * 1024,
        max_remote_results: int = 1000,
    ) -> None:
        if importlib.util.find_spec("coredis") is None:
            raise ImportError("RedisBackplane needs coredis, the Redis client: pip install 'trio_ws[redis]'")
        super().__init__()
        self.url = backplane_url(url)
        self.worker = secrets.token_hex(6)
        """This backplane's name among the workers (new each time it is made)."""
        self.keys = wire.Keys(prefix)
        options = LinkOptions(heartbeat_interval, presence_ttl, operation_timeout, buffer_size)
        self._link = RedisLink(
            self.url,
            self.keys,
            self.worker,
            options=options,
            on_message=self._received,
            on_down=self._fail_replies,
            presence=self._presence,
            tokens=lambda: tuple(self._tokens),
        )
        self._max_remote_results = max_remote_results
        self._remote_results = 0
        self._replies: dict[str, _Reply] = {}
        self._tokens: set[str] = set()  # the tokens of the connections this worker holds
        self._asked: dict[str, trio.CancelScope] = {}  # another worker's asks, running here
        self._tasks: trio.Nursery | None = None
        self._metrics: BackplaneMetrics | None = None  # with metrics on
        self._probe: Callable[[], None] | None = None

    def instrument(self, hub: HubMetrics | None, metrics: Metrics | None) -> None:
        if self._probe is not None and metrics is not None:
            metrics.remove_probe(self._probe)
            self._probe = None
        figures = self._link.metrics = self._metrics = None if hub is None else hub.backplane()
        if figures is not None and metrics is not None:
            self._probe = metrics.add_probe(lambda: figures.connected(self._link.up))

    @property
    def state(self) -> LinkState:
        """Whether Redis can be reached now."""
        return self._link.state

    def health(self) -> Health:
        return self._link.health()

    async def wait_connected(self) -> None:
        """Wait until the link to Redis is up (at once if it is)."""
        await self._link.wait_up()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Keep the link to Redis for the hub server's lifetime.

        ``started()`` once the first attempt to reach Redis has ended, up or
        down: a hub whose Redis is away at start-up still serves its own
        clients, reports 503 on the health path, and heals when Redis comes.
        """
        async with trio.open_nursery() as nursery:
            self._tasks = nursery
            await nursery.start(self._link.serve)
            task_status.started()
        raise AssertionError("the link runs until cancelled")  # pragma: no cover

    async def aclose(self) -> None:
        await self._link.leave()

    # -- this worker's connections --------------------------------------------------------

    def _presence(self) -> Presence:
        return [
            (connection_id, connection.user_id, tuple(self._memberships.get(connection_id, ())))
            for connection_id, connection in self._connections.items()
        ]

    async def add_connection(self, connection: LocalConnection) -> None:
        await super().add_connection(connection)
        user = connection.user_id or ""
        await self._link.write(wire.CONNECT, self.keys.prefix, self.worker, connection.connection_id, user)

    async def remove_connection(self, connection: LocalConnection) -> None:
        known = self._connections.get(connection.connection_id) is connection
        await super().remove_connection(connection)
        if known:
            await self._link.write(wire.DISCONNECT, self.keys.prefix, connection.connection_id)

    async def add_to_group(self, connection_id: str, group: str) -> None:
        if connection_id in self._connections:
            await super().add_to_group(connection_id, group)
            await self._link.write(wire.JOIN, self.keys.prefix, connection_id, group)
        else:
            await self._ask_holder(connection_id, group, join=True)

    async def remove_from_group(self, connection_id: str, group: str) -> None:
        if connection_id in self._connections:
            await super().remove_from_group(connection_id, group)
            await self._link.write(wire.LEAVE, self.keys.prefix, connection_id, group)
        else:
            await self._ask_holder(connection_id, group, join=False)

    # -- what every worker sees ------------------------------------------------------------

    async def group_members(self, group: str) -> frozenset[str]:
        return await self._members(self.keys.group(group))

    async def user_connections(self, user_id: str) -> frozenset[str]:
        return await self._members(self.keys.user(user_id))

    async def _members(self, key: str) -> frozenset[str]:
        async def read(redis: coredis.Redis[bytes]) -> set[bytes]:
            return await redis.smembers(key)

        members: set[bytes] = await self._link.command(read)
        return frozenset(member.decode() for member in members)

    async def _holder(self, connection_id: str) -> str | None:
        """The worker holding ``connection_id``, from Redis; ``None`` if no worker does."""

        async def read(redis: coredis.Redis[bytes]) -> bytes | None:
            return await redis.hget(self.keys.connection(connection_id), "w")

        holder: bytes | None = await self._link.command(read)
        return None if holder is None or holder.decode() == self.worker else holder.decode()

    # -- connections by token ---------------------------------------------------------------

    async def record_pending(self, pending: Pending, ttl: float) -> None:
        stateful = "1" if pending.stateful_reconnect else "0"
        ttl_ms = str(max(1, math.ceil(ttl * 1000)))
        args = (self.keys.prefix, pending.token, pending.connection_id, pending.user_id or "", stateful)
        trace = (pending.traceparent, pending.tracestate) if pending.traceparent else ()
        await self._link.call(wire.PENDING, *args, ttl_ms, *trace)

    async def claim(self, token: str) -> Pending | None:
        found = await self._link.call(wire.CLAIM, self.keys.prefix, self.worker, token)
        if not found:
            return None
        self._tokens.add(token)
        # A record written with tracing off, or before traces were kept, has no trace fields: nil.
        connection_id, user, stateful, traceparent, tracestate = (
            "" if value is None else _text(value) for value in found
        )
        return Pending(connection_id, token, user or None, stateful == "1", traceparent, tracestate)

    async def holder(self, token: str) -> str | None:
        async def read(redis: coredis.Redis[bytes]) -> bytes | None:
            return await redis.hget(self.keys.token(token), "w")

        holder: bytes | None = await self._link.command(read)
        return None if holder is None or holder.decode() == self.worker else holder.decode()

    async def release(self, token: str) -> None:
        if token in self._tokens:
            self._tokens.discard(token)
            await self._link.write(wire.RELEASE, self.keys.prefix, self.worker, token)
        else:
            await trio.lowlevel.checkpoint()

    async def ask(self, worker: str, request: Any, within: float) -> Any:
        asked = secrets.token_hex(8)
        data = wire.encode(wire.Ask(self.worker, asked, request, within))
        timeout = self._link.options.operation_timeout
        # Two answers: "taken" at once (a worker that is gone is known within operation_timeout,
        # not after a long poll's wait), then the answer itself.
        if self._metrics is not None:
            self._metrics.relayed(sent=True)
        with self._expecting(asked + _TAKEN) as taken, self._expecting(asked) as reply:
            await self._link.publish(self.keys.worker_channel(worker), data, buffer=False)
            try:
                with trio.move_on_after(timeout):
                    await taken.arrived.wait()
                if taken.arrived.is_set():
                    with trio.move_on_after(within + timeout):
                        await reply.arrived.wait()
            finally:
                if not reply.arrived.is_set():  # it will not be waited for: the holder may stop
                    with contextlib.suppress(BackplaneError):
                        cancel = wire.encode(wire.Cancel(asked))
                        self._link.publish_nowait(self.keys.worker_channel(worker), cancel)
        if not reply.arrived.is_set():
            if not taken.arrived.is_set():
                raise BackplaneError(f"worker {worker} did not answer within {timeout:g} s")
            raise BackplaneError(f"worker {worker} took the request but gave no answer")
        if not reply.ok:
            raise BackplaneError(str(reply.value))
        return reply.value

    # -- sending ---------------------------------------------------------------------------

    async def send(self, audience: Audience, message: SerializedMessage) -> None:
        if _only(audience, self._connections):
            await super().send(audience, message)
            return
        invocation = message.message
        data = wire.encode(wire.Send(self.worker, audience, invocation.target, invocation.arguments))
        await self._link.publish(self.keys.all, data, buffer=True)  # a checkpoint: the one this send takes
        targets = self._local_targets(audience)
        if targets:
            await deliver_locally(targets, message, single=audience.single)

    async def invoke_client(self, connection_id: str, target: str, arguments: Sequence[Any]) -> Any:
        if connection_id in self._connections:
            return await super().invoke_client(connection_id, target, arguments)
        holder = await self._holder(connection_id)
        if holder is None:
            raise ClientResultError(connection_id, target, "no connection has this id")
        deadline = trio.current_effective_deadline()
        timeout = None if deadline == float("inf") else max(0.0, deadline - trio.current_time())
        request = secrets.token_hex(8)
        data = wire.encode(wire.Invoke(self.worker, request, connection_id, target, arguments, timeout))
        with self._expecting(request) as reply:
            await self._link.publish(self.keys.worker_channel(holder), data, buffer=False)
            await reply.arrived.wait()
        if reply.ok:
            return reply.value
        raise ClientResultError(connection_id, target, str(reply.value))

    async def _ask_holder(self, connection_id: str, group: str, *, join: bool) -> None:
        holder = await self._holder(connection_id)
        if holder is None:
            return  # no such connection anywhere: ignored, as the in-process backplane does
        request = secrets.token_hex(8)
        data = wire.encode(wire.GroupChange(self.worker, request, join, connection_id, group))
        timeout = self._link.options.operation_timeout
        with self._expecting(request) as reply:
            await self._link.publish(self.keys.worker_channel(holder), data, buffer=False)
            with trio.move_on_after(timeout):
                await reply.arrived.wait()
        if not reply.arrived.is_set():
            raise BackplaneError(
                f"worker {holder}, which holds connection {connection_id}, "
                f"did not answer within {timeout:g} s"
            )
        if not reply.ok:
            raise BackplaneError(str(reply.value))

    def _expecting(self, request: str) -> _Expecting:
        return _Expecting(self._replies, request)

    def _fail_replies(self, reason: str) -> None:
        """The link went down: no answer now awaited will come."""
        for reply in self._replies.values():
            reply.value = f"the backplane lost Redis before the answer came ({reason})"
            reply.arrived.set()

    # -- what other workers send -----------------------------------------------------------

    async def _received(self, message: wire.Message) -> None:
        """One message from the subscription, handled in order (the link's reader task)."""
        match message:
            case wire.Send(origin, audience, target, arguments) if origin != self.worker:
                # Offered without a checkpoint each: the link's reader takes one per batch it reads.
                targets = self._local_targets(audience)
                if targets:
                    serialized = SerializedMessage(Invocation(target, arguments))
                    if waiting := offer_locally(targets, serialized):
                        await deliver_to_waiting(waiting, serialized)
            case wire.GroupChange(origin, request, join, connection_id, group):
                if connection_id in self._connections:  # else it has just ended: nothing to change
                    if join:
                        await self.add_to_group(connection_id, group)
                    else:
                        await self.remove_from_group(connection_id, group)
                await self._answer(origin, wire.Ack(request))
            case wire.Ack(request):
                self._resolve(request, True, None)
            case wire.Result(request, ok, value):
                self._resolve(request, ok, value)
            case wire.Ask() if self._tasks is not None:
                if self.on_ask is None or self._remote_results >= self._max_remote_results:
                    refusal = "that worker takes no more relayed requests now"
                    await self._answer(message.origin, wire.Result(message.request, False, refusal))
                else:
                    await self._answer(message.origin, wire.Ack(message.request + _TAKEN))
                    if self._metrics is not None:
                        self._metrics.relayed(sent=False)
                    self._remote_results += 1
                    scope = self._asked[message.request] = trio.CancelScope()
                    self._tasks.start_soon(self._answer_ask, message, scope, self.on_ask)
            case wire.Cancel(request):
                running = self._asked.get(request)
                if running is not None:
                    running.cancel()
            case wire.Invoke() if self._tasks is not None:
                if self._remote_results >= self._max_remote_results:
                    refusal = f"{self._max_remote_results} client results already wait on that worker"
                    await self._answer(message.origin, wire.Result(message.request, False, refusal))
                else:
                    self._remote_results += 1
                    self._tasks.start_soon(self._invoke_for, message)

    async def _invoke_for(self, asked: wire.Invoke) -> None:
        """A caller on another worker awaits a client result from a connection of this one."""
        try:
            timeout = float("inf") if asked.timeout is None else asked.timeout
            result = wire.Result(asked.request, False, f"no result within {timeout:g} s")
            with trio.move_on_after(timeout):
                try:
                    value = await InProcessBackplane.invoke_client(
                        self, asked.connection_id, asked.target, asked.arguments
                    )
                    result = wire.Result(asked.request, True, value)
                except ClientResultError as exc:
                    result = wire.Result(asked.request, False, exc.reason)
            await self._answer(asked.origin, result)
        finally:
            self._remote_results -= 1

    async def _answer_ask(self, asked: wire.Ask, scope: trio.CancelScope, handler: AskHandler) -> None:
        """Another worker relayed a request for a connection this one holds: answer it."""
        try:
            result = wire.Result(asked.request, False, f"no answer within {asked.timeout:g} s")
            # The request's own bound (a poll's hold) comes first: this one only stops a handler
            # that overruns it, before the asker (which waits operation_timeout more) gives up.
            with scope, trio.move_on_after(asked.timeout + self._link.options.operation_timeout / 2):
                result = wire.Result(asked.request, True, await handler(asked.origin, asked.payload))
            if scope.cancel_called:
                logger.debug(
                    "backplane %s: worker %s stopped waiting for its request", self.keys.prefix, asked.origin
                )
            else:
                await self._answer(asked.origin, result)
        finally:
            self._asked.pop(asked.request, None)
            self._remote_results -= 1

    async def _answer(self, worker: str, reply: wire.Ack | wire.Result) -> None:
        try:
            data = wire.encode(reply)
        except TypeError as exc:
            assert isinstance(reply, wire.Result)
            data = wire.encode(
                wire.Result(reply.request, False, f"the client's result cannot be sent: {exc}")
            )
        with contextlib.suppress(BackplaneError):  # the asker times out, or its own link fails
            await self._link.publish(self.keys.worker_channel(worker), data, buffer=False)

    def _resolve(self, request: str, ok: bool, value: Any) -> None:
        reply = self._replies.get(request)
        if reply is not None and not reply.arrived.is_set():
            reply.ok, reply.value = ok, value
            reply.arrived.set()


class _Expecting:
    """``with``: a reply registered by its request id while the block runs."""

    def __init__(self, replies: dict[str, _Reply], request: str) -> None:
        self._replies = replies
        self._request = request

    def __enter__(self) -> _Reply:
        reply = self._replies[self._request] = _Reply()
        return reply

    def __exit__(self, *exc_info: object) -> None:
        self._replies.pop(self._request, None)


def _only(audience: Audience, local: dict[str, LocalConnection]) -> bool:
    """Whether ``audience`` names only connections of this process (no need to publish)."""
    return (
        not (audience.everyone or audience.groups or audience.users)
        and bool(audience.connections)
        and all(connection_id in local for connection_id in audience.connections)
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
