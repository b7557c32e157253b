"""The Redis backplane's link: connecting, subscribing, heartbeats, and healing when Redis goes away.

::

    RedisLink.serve(task_status=...)      in the hub server's nursery; started() after the first try
    └─ loop: one session, then a backoff  0.1 s doubling to 5 s, with jitter, while Redis is away
       └─ session                         two coredis clients: commands, and the subscription
          ├─ reader                       the subscription: P:all and this worker's channel
          ├─ publisher                    the outbox, in order, in batches (one PUBLISH per channel run)
          └─ heartbeat                    every heartbeat_interval: renew, reap the dead, probe

Rules of this module:

* The link is up or it is not (``LinkState``), and everything asks it
  first. While it is not: a write of presence is skipped (and remembered,
  so presence is rebuilt from this worker's own tables when it is back); a
  read or a request to another worker raises ``BackplaneError`` at once;
  a send waits in the outbox, up to ``buffer_size`` bytes, after which the
  next one raises ``BackplaneError`` (it is reported to the caller, never
  dropped quietly).
* Any failure, wherever it is noticed (a command that fails or takes longer
  than ``operation_timeout``, the subscription dropping, a probe through
  Redis that does not come back), ends the session; the loop starts a new
  one. On its way up, a session resubscribes, renews the heartbeat and
  replaces this worker's presence with its own tables (``REBUILD``). Back
  from an outage, it also waits until the workers it knew of before are
  subscribed again (``PUBSUB NUMSUB``, at most ``presence_ttl``: a worker
  that died meanwhile never is), so that what waited, and every send made
  once it is up, reaches everyone.
* The outage and the recovery are logged once each, at WARNING and INFO,
  with the reason and no traceback; the attempts in between at DEBUG.
* Sends are published in the order they were made, and one sent during a
  failure is sent again after it (at least once: a client may rarely see
  it twice, rather than never). What waits in the outbox goes in one round
  trip, and consecutive messages for one channel in one ``wire.Batch``: one
  PUBLISH for Redis to fan out and one message for each subscriber to read,
  rather than one per send (the per-message cost is most of a send's).
* coredis buffers what Redis pushes without a bound of its own; the reader
  hands each message on at once (deliveries to clients follow the hubs'
  slow-client policy), so it keeps up unless that policy is ``WAIT``.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ..._app.health import Health
from ..._server.deployment import redacted
from .._errors import BackplaneError
from . import redis_wire as wire
from .redis_outbox import Outbox, joined

if TYPE_CHECKING:
    import coredis
    import coredis.commands

    from ..._observe.metrics import BackplaneMetrics

__all__ = ["LinkOptions", "LinkState", "RedisLink"]

logger = logging.getLogger("trio_ws.signalr.backplane")

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 5.0
_BATCH = 256  # most sends published in one round trip
_PEER_POLL = 0.05  # how often NUMSUB is asked while waiting for the others to resubscribe

Presence = Iterable[tuple[str, str | None, Iterable[str]]]
"""This worker's connections, as (id, user, groups)."""


class LinkState(enum.Enum):
    """Whether the backplane can reach Redis."""

    CONNECTING = "connecting"
    UP = "connected"
    DOWN = "unreachable"
    CLOSED = "closed"


@dataclass(frozen=True)
class LinkOptions:
    """Timings and bounds of a Redis link (``RedisBackplane``'s keyword arguments)."""

    heartbeat_interval: float = 2.0
    presence_ttl: float = 10.0
    operation_timeout: float = 5.0
    buffer_size: int = 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "presence_ttl", "operation_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds")
        if self.presence_ttl <= self.heartbeat_interval:
            raise ValueError(
                f"presence_ttl ({self.presence_ttl:g} s) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval:g} s), or live workers would expire between heartbeats"
            )
        if self.buffer_size < 0:
            raise ValueError("buffer_size must be 0 or more bytes")


class _LinkLost(Exception):
    """The session must end: why."""


class RedisLink:
    """One worker's link to Redis for one hub (see the module docstring)."""

    def __init__(
        self,
        url: str,
        keys: wire.Keys,
        worker: str,
        *,
        options: LinkOptions,
        on_message: Callable[[wire.Message], Awaitable[None]],
        on_down: Callable[[str], None],
        presence: Callable[[], Presence],
        tokens: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.url = url
        self.keys = keys
        self.worker = worker
        self.channel = keys.worker_channel(worker)
        self._own_sends = wire.sends_prefix(worker)  # heard back on P:all: already delivered here
        self.options = options
        self._on_message = on_message
        self._on_down = on_down
        self._up = trio.Event()
        self._presence = presence
        self._tokens = tokens
        self._description = f"{socket.gethostname()} pid {os.getpid()}"
        self.state = LinkState.CONNECTING
        self._since = time.time()
        self._reason = "not connected yet"
        self.workers = 0  # live workers, as of the last heartbeat
        self._outbox = Outbox(options.buffer_size)
        self._commands: coredis.Redis[bytes] | None = None
        self._scripts: dict[str, coredis.commands.Script[bytes]] = {}
        self._session_scope: trio.CancelScope | None = None
        self._broken: str | None = None
        self._dirty = False  # presence changed while the link was down: rebuild when up
        self._probe: tuple[str, trio.Event] | None = None
        self._down_at = time.time()
        self.metrics: BackplaneMetrics | None = None  # with metrics on

    # -- what the backplane asks ---------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.state is LinkState.UP

    async def wait_up(self) -> None:
        """Wait until the link is up."""
        await self._up.wait()

    def health(self) -> Health:
        # No address here: the health path answers anyone, and Redis's address is the logs' to tell.
        if self.state is LinkState.UP:
            return Health(True, f"Redis connected ({self.workers} worker(s))")
        waiting = f"; {len(self._outbox)} send(s) waiting" if len(self._outbox) else ""
        since = time.strftime("%H:%M:%S", time.localtime(self._since))
        return Health(False, f"Redis {self.state.value} since {since} ({self._reason}){waiting}")

    def refuse(self) -> BackplaneError:
        """The error for work that needs the link while it is down."""
        return BackplaneError(f"the backplane is {self.state.value}: {self._reason}")

    async def write(self, script: str, *argv: str) -> None:
        """Run a presence script if the link is up; else remember to rebuild presence later."""
        if not self.up:
            self._dirty = True
            await trio.lowlevel.checkpoint()
            return
        try:
            await self.call(script, *argv)
        except BackplaneError:
            self._dirty = True

    async def call(self, script: str, *argv: str) -> Any:
        """Run one of ``redis_wire``'s scripts; its result.

        Raises:
            BackplaneError: the link is down, or broke during the call (which ends the session).
        """
        return await self.command(lambda redis: self._scripts[script](args=list(argv), client=redis))

    async def command(self, request: Callable[[coredis.Redis[bytes]], Awaitable[Any]]) -> Any:
        """Run ``request(client)`` within ``operation_timeout``; its result.

        Raises:
            BackplaneError: the link is down, or broke during the call (which ends the session).
        """
        client = self._commands
        if not self.up or client is None:
            await trio.lowlevel.checkpoint()
            raise self.refuse()
        import coredis.exceptions

        try:
            with trio.fail_after(self.options.operation_timeout):
                return await request(client)
        except coredis.exceptions.ResponseError as exc:  # Redis answered, with an error: the link is fine
            raise BackplaneError(f"Redis refused: {_describe(exc)}") from None
        except _link_errors() as exc:
            reason = _describe(exc)
            self.break_session(reason)
            raise BackplaneError(f"the backplane lost Redis: {reason}") from None

    async def publish(self, channel: str, data: bytes, *, buffer: bool) -> None:
        """Publish ``data`` on ``channel``, after every send before it.

        With ``buffer``, a send made while the link is down waits in the
        outbox (up to ``buffer_size`` bytes); without, the link must be up.

        Raises:
            BackplaneError: the link is down and the outbox full (or ``buffer`` is false).
        """
        if not self.up and not buffer:
            raise self.refuse()
        while not self._outbox.fits(data):
            if not self.up:
                raise BackplaneError(
                    f"the backplane is {self.state.value} ({self._reason}), and "
                    f"{self._outbox.size} bytes of sends already wait for it (buffer_size)"
                )
            await self._outbox.wait_changed()  # the publisher makes room
        self._outbox.append(channel, data)
        await trio.lowlevel.checkpoint()

    def publish_nowait(self, channel: str, data: bytes) -> None:
        """Publish a small message after every send before it, without waiting (even for room).

        Raises:
            BackplaneError: the link is down.
        """
        if not self.up:
            raise self.refuse()
        self._outbox.append(channel, data)

    def break_session(self, reason: str) -> None:
        """End the current session (a failure noticed outside it); the loop starts another."""
        if self._session_scope is not None and self._broken is None:
            self._broken = reason
            self._session_scope.cancel()

    async def leave(self) -> None:
        """This worker stops: take its presence out of Redis now, rather than letting it expire."""
        if self.up:
            with contextlib.suppress(BackplaneError):  # else it expires after presence_ttl
                await self.call(wire.LEAVE_WORKER, self.keys.prefix, self.worker)
        self.state = LinkState.CLOSED
        self._reason = "the hub server stopped"

    # -- the loop ---------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Keep the link up until cancelled; ``started()`` once the first attempt has ended up or down."""
        import coredis  # here, not at import time: a hub without Redis never pays for it

        backoff = _FIRST_BACKOFF
        started = False
        while True:
            self._broken = None
            try:
                async with trio.open_nursery() as nursery:
                    self._session_scope = nursery.cancel_scope
                    await nursery.start(self._session, coredis)
                    backoff = _FIRST_BACKOFF
                    if not started:
                        task_status.started()
                        started = True
            except* _link_errors() as group:
                self._broken = self._broken or _describe(_first_leaf(group))
            finally:
                self._session_scope = None
                self._commands = None
            if self.state is LinkState.CLOSED:
                await trio.sleep_forever()
            self._went_down(self._broken or "the session ended")
            if not started:
                task_status.started()
                started = True
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _session(
        self, coredis: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        timeout = self.options.operation_timeout
        settings: dict[str, Any] = {
            "max_connections": 1,  # one connection: commands are sent in the order they are made
            "retry_policy": coredis.retry.NoRetryPolicy(),
            "connect_timeout": timeout,
            "stream_timeout": timeout,
        }
        # No cancel scope of ours around entering these: each opens a task group that lives
        # until the session ends, and scopes must nest. coredis's own timeouts bound the connect
        # and the subscription (connect_timeout, subscription_timeout).
        async with contextlib.AsyncExitStack() as stack:
            commands: coredis.Redis[bytes] = await stack.enter_async_context(
                coredis.Redis.from_url(self.url, **settings)
            )
            subscriber: coredis.Redis[bytes] = await stack.enter_async_context(
                coredis.Redis.from_url(self.url, **settings)
            )
            pubsub = await stack.enter_async_context(
                subscriber.pubsub(
                    channels=[self.keys.all, self.channel],
                    ignore_subscribe_messages=True,
                    retry_policy=coredis.retry.NoRetryPolicy(),
                    subscription_timeout=timeout,
                )
            )
            self._commands = commands
            self._scripts = {text: commands.register_script(text) for text in wire.SCRIPTS}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, pubsub)
                await self._come_up()
                task_status.started()
                nursery.start_soon(self._publish_loop)
                nursery.start_soon(self._heartbeat_loop)

    async def _come_up(self) -> None:
        """Register this worker's presence, let the others resubscribe if sends wait, then go up."""
        commands = self._commands
        assert commands is not None
        known = self.workers  # before the outage: a restarted Redis has forgotten the others
        with trio.fail_after(self.options.operation_timeout * 2):
            for script in wire.SCRIPTS:  # loaded now, so no call meets NOSCRIPT (and coredis's retry)
                await commands.script_load(script)
            await self._heartbeat(force_rebuild=True)
        if self.state is LinkState.DOWN:
            # Back from an outage: sends made from now on (and those that waited) must reach the
            # others, so wait (at most presence_ttl) until the workers known before are subscribed.
            await self._wait_for_peers(known)
        while self._dirty:  # presence changed while registering
            self._dirty = False
            with trio.fail_after(self.options.operation_timeout):
                await self._rebuild()
        was = self.state
        self.state, self._since, self._reason = LinkState.UP, time.time(), ""
        self._up.set()
        waiting = len(self._outbox)
        if was is LinkState.DOWN:
            logger.info(
                "backplane %s (%s): Redis is back at %s after %.1f s: resubscribed, presence rebuilt%s",
                self.keys.prefix,
                self.worker,
                redacted(self.url),
                time.time() - self._down_at,
                f", {waiting} waiting send(s) going out" if waiting else "",
            )
        else:
            logger.info(
                "backplane %s (%s): connected to %s", self.keys.prefix, self.worker, redacted(self.url)
            )

    def _went_down(self, reason: str) -> None:
        if self.state is not LinkState.DOWN:  # the outage begins: said once
            self._down_at = time.time()
            self._since = self._down_at
            logger.warning(
                "backplane %s (%s): %s %s: %s; retrying with backoff; sends wait (up to %d bytes), "
                "presence will be rebuilt",
                self.keys.prefix,
                self.worker,
                "lost Redis at" if self.state is LinkState.UP else "cannot reach Redis at",
                redacted(self.url),
                reason,
                self.options.buffer_size,
            )
        else:
            logger.debug("backplane %s: still no Redis: %s", self.keys.prefix, reason)
        self.state, self._reason = LinkState.DOWN, reason
        self._dirty = True
        self._outbox.wake()  # a sender waiting for room while the link was up fails now
        if self._up.is_set():
            self._up = trio.Event()
        self._on_down(reason)

    # -- the session's tasks ------------------------------------------------------------------

    async def _read(self, pubsub: Any) -> None:
        async for message in pubsub:
            if message["data"].startswith(self._own_sends):
                continue
            decoded = self._decode(message["data"])
            if isinstance(decoded, wire.Batch):
                for data in decoded.messages:
                    if not data.startswith(self._own_sends):
                        await self._received(self._decode(data))
            else:
                await self._received(decoded)
        raise _LinkLost("the subscription ended")

    def _decode(self, data: bytes) -> wire.Message | None:
        try:
            return wire.decode(data)
        except ValueError as exc:
            logger.debug("backplane %s: ignored a message: %s", self.keys.prefix, exc)
            return None

    async def _received(self, decoded: wire.Message | None) -> None:
        if isinstance(decoded, wire.Probe):
            if self._probe is not None and self._probe[0] == decoded.nonce:
                self._probe[1].set()
        elif decoded is not None and not isinstance(decoded, wire.Batch):  # batches do not nest
            await self._on_message(decoded)

    async def _publish_loop(self) -> None:
        while True:
            while not len(self._outbox):
                await self._outbox.wait_changed()
            batch = self._outbox.peek(_BATCH)
            publishes = joined(batch)
            began = time.perf_counter()
            with trio.fail_after(self.options.operation_timeout):
                commands = self._commands
                assert commands is not None
                if len(publishes) == 1:
                    await commands.publish(*publishes[0])
                else:
                    async with commands.pipeline(transaction=False) as pipe:
                        for channel, data in publishes:
                            pipe.publish(channel, data)
            self._outbox.confirm(len(batch))
            if self.metrics is not None:
                self.metrics.published(time.perf_counter() - began)

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self.options.heartbeat_interval)
            with trio.fail_after(self.options.operation_timeout):
                await self._heartbeat()
                await self._round_trip()

    async def _heartbeat(self, *, force_rebuild: bool = False) -> None:
        ttl = str(math.ceil(self.options.presence_ttl * 1000))
        reply = await self._script(wire.HEARTBEAT, self.keys.prefix, self.worker, ttl, self._description)
        alive, workers, reaped = int(reply[0]), int(reply[1]), reply[2:]
        if workers != self.workers:
            logger.debug("backplane %s (%s): %d worker(s) now", self.keys.prefix, self.worker, workers)
            self.workers = workers
        for index in range(0, len(reaped), 2):
            logger.info(
                "backplane %s: worker %s stopped heartbeating: its %d connection(s) left their groups",
                self.keys.prefix,
                _text(reaped[index]),
                int(reaped[index + 1]),
            )
        if force_rebuild or not alive:
            if not alive and not force_rebuild:
                logger.info(
                    "backplane %s (%s): this worker's presence was gone from Redis (a restart, or "
                    "it was taken for dead): rebuilding it",
                    self.keys.prefix,
                    self.worker,
                )
            self._dirty = False
            await self._rebuild()

    async def _rebuild(self) -> None:
        ttl = math.ceil(self.options.presence_ttl * 1000)
        argv = wire.rebuild_arguments(self.keys.prefix, self.worker, ttl, self._description, self._presence())
        await self._script(wire.REBUILD, *argv)
        await self._script(wire.HOLD, self.keys.prefix, self.worker, *self._tokens())

    async def _round_trip(self) -> None:
        """A probe to this worker's own channel must come back: the subscription still delivers."""
        nonce = secrets.token_hex(8)
        arrived = trio.Event()
        self._probe = (nonce, arrived)
        try:
            commands = self._commands
            assert commands is not None
            await commands.publish(self.channel, wire.encode(wire.Probe(nonce)))
            await arrived.wait()
        finally:
            self._probe = None

    async def _wait_for_peers(self, expected: int) -> None:
        """Until ``expected`` workers are subscribed again, or ``presence_ttl`` has passed (one
        that died meanwhile never comes back)."""
        commands = self._commands
        assert commands is not None
        said = False
        with trio.move_on_after(self.options.presence_ttl):
            while True:
                with trio.fail_after(self.options.operation_timeout):
                    counts = await commands.pubsub_numsub(self.keys.all)
                subscribed = int(next(iter(counts.values()), 0))
                if subscribed >= expected:
                    return
                if not said:
                    logger.debug(
                        "backplane %s (%s): back; waiting for %d more worker(s) to resubscribe",
                        self.keys.prefix,
                        self.worker,
                        expected - subscribed,
                    )
                    said = True
                await trio.sleep(_PEER_POLL)

    async def _script(self, script: str, *argv: str) -> Sequence[Any]:
        result: Sequence[Any] = await self._scripts[script](args=list(argv))
        return result


class _Stack:
    """Async context managers entered one by one and exited in reverse (coredis clients)."""

    def __init__(self) -> None:
        self._exits: list[Any] = []

    async def enter(self, manager: Any) -> Any:
        value = await manager.__aenter__()
        self._exits.append(manager)
        return value

    async def aclose(self) -> None:
        while self._exits:
            manager = self._exits.pop()
            try:
                await manager.__aexit__(None, None, None)
            except* _link_errors():
                pass  # the link is gone already; that is why we are closing


@functools.cache
def _link_errors() -> tuple[type[BaseException], ...]:
    """What a broken link raises (computed on first use: it imports coredis)."""
    import anyio
    import coredis.exceptions

    return (
        OSError,
        TimeoutError,
        trio.TooSlowError,
        trio.BrokenResourceError,
        trio.ClosedResourceError,
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        anyio.EndOfStream,
        coredis.exceptions.RedisError,
        _LinkLost,
    )


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, trio.TooSlowError):
        return "Redis did not answer in time (operation_timeout)"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
