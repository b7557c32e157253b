"""A connection over SignalR's transports, whatever speaks over it (ASP.NET's HttpConnectionContext).

::

    TransportConnection                 ids, the transport attached now, the client's bytes in,
    │                                   the Sender out, the time away; ends once, for one reason
    ├─ HubConnection (_hub/connection.py)   the hub protocol on top: handshake, calls, pings
    └─ HandlerConnection                a connection handler's raw bytes (_endpoints/connection.py)

A connection lives in its server's nursery, beside but not inside whatever
carries its bytes. A transport is *attached* to it for as long as it
carries them: a WebSocket for its lifetime (or, under stateful reconnect,
until a new one takes over); a Server-Sent Events stream with the POSTs
beside it; the long polls of Long Polling, one after the other. What speaks
over the connection (a subclass) reads with ``_receive()`` and writes
through ``sender``; it never learns which transport carries it.
It knows its server only as ``TransportServer`` (options, figures,
shutdown, forgetting a connection and letting its token go), and hands its sender only what the
sender tells it (``SenderOwner``): nothing here imports ``_endpoints``.

Rules of this module:

* A connection ends once, for one reason (``close(reason)``, first caller
  wins), which cancels its tasks (``_scope``; a subclass may give them a
  grace, ``_stop_tasks``).
* When its transport goes, the connection ends with it: ``CLIENT_CLOSED``
  when the client closed it cleanly, ``TRANSPORT_FAILED`` when it broke or
  its task was cancelled. Two things let a connection outlive a transport,
  at most ``disconnect_timeout`` each time: under stateful reconnect a
  dropped WebSocket, replaced by the next one to the same token; and Long
  Polling between two polls (``set_away``). Past that, it ends with
  ``TRANSPORT_FAILED`` or ``TIMED_OUT`` (``_check_away``, called by the
  subclass's ``_watch``).
* A connection has no timer task of its own: its server's ``Timers``
  (``_transports/timers.py``) call ``timer_fired`` when it asked
  (``_look_at``), and the subclass's ``_watch`` acts on what is due and
  says when to look again. Whatever moves a timer sooner (a transport
  coming or going, a client's first Ping) has the timers looked at at
  once, in its own turn (``_look_again``). The timers stop when the
  connection ends.
* The first transport must come within ``disconnect_timeout`` of the
  connection's creation (after negotiate). Later transports must be of the
  same kind (ASP.NET's "Cannot change transports mid-connection").
* A client too slow to read (no room for ``slow_client_timeout``) ends the
  connection as ``TOO_SLOW``: what is queued is dropped and its transport
  aborted at once.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

from ..._contain import contain
from ..._parking import parked, wake
from ..._printable import printable
from .._errors import DisconnectReason
from .._protocol.messages import TransferFormat
from .http import LongPollingTransport, PostInbox
from .sender import Sender, describe_break
from .timers import TimerEntry, Timers
from .transport import Attachment, ConnectionGone, TransportInUse, TransportMismatch

if TYPE_CHECKING:
    from trio.lowlevel import Task

    from ..._app.request import Request
    from ..._observe.metrics import HubMetrics
    from .._options import HubOptions
    from .transport import Inbound, Transport

__all__ = ["TransportConnection", "TransportServer", "new_id"]

logger = logging.getLogger("trio_ws.signalr")


# How a connection's end reads in signalr_connection_status, ASP.NET's three values.
_CONNECTION_STATUS: dict[DisconnectReason | None, str] = {
    DisconnectReason.TIMED_OUT: "timeout",
    DisconnectReason.SERVER_SHUTDOWN: "app_shutdown",
}


def new_id() -> str:
    """A connection id or token: 16 random bytes in URL-safe base64, as ASP.NET makes them."""
    return secrets.token_urlsafe(16)


class TransportServer(Protocol):
    """What a connection needs of the server that owns it (``HubServer`` is one): its options and
    figures, whether it is shutting down, and to forget the connection and let its token go once
    it has ended."""

    @property
    def options(self) -> HubOptions: ...  # pragma: no cover (a signature)

    @property
    def metrics(self) -> HubMetrics | None: ...  # pragma: no cover (a signature)

    @property
    def timers(self) -> Timers: ...  # pragma: no cover (a signature)

    @property
    def closing(self) -> bool: ...  # pragma: no cover (a signature)

    def forget(self, connection: TransportConnection, /) -> None: ...  # pragma: no cover (a signature)

    async def release(self, connection: TransportConnection, /) -> None: ...  # pragma: no cover (a signature)


class TransportConnection:
    """One client's connection, whatever transport carries it; subclasses say what it speaks."""

    # A server holds thousands: slots, not a dict per connection (so do its subclasses).
    __slots__ = (
        "_attachment",
        "_away_detail",
        "_away_reason",
        "_away_since",
        "_detail",
        "_ended",
        "_flushed",
        "_formats",
        "_inbox",
        "_last_received",
        "_metrics",
        "_opened_at",
        "_options",
        "_pings",
        "_reason",
        "_scope",
        "_timer",
        "_timers",
        "_waiters",
        "_waiting",
        "connection_id",
        "negotiate_trace",
        "request",
        "sender",
        "server",
        "stateful_reconnect",
        "token",
        "transport_name",
        "user_id",
    )

    def __init__(
        self,
        server: TransportServer,
        *,
        user_id: str | None = None,
        request: Request | None = None,
        token_is_id: bool = False,
        stateful_reconnect: bool = False,
        connection_id: str | None = None,
        token: str | None = None,
    ) -> None:
        self.server = server
        # Minted here, or by negotiate (a pending connection, opened where its transport landed).
        self.connection_id = connection_id or new_id()
        # Negotiate version 0 has no token: the client uses the connection id as ``?id=``.
        self.token = token or (self.connection_id if token_is_id else new_id())
        self.user_id = user_id
        self.request = request
        #: The negotiate's W3C trace context, kept when tracing is on (``kept_trace``).
        self.negotiate_trace: tuple[str, str] | None = None
        self.transport_name: str | None = None
        #: Negotiated with ``useStatefulReconnect`` (hubs only).
        self.stateful_reconnect = stateful_reconnect
        self._options: HubOptions = server.options
        self.sender = Sender(self, self._options)
        self._metrics = server.metrics  # None with metrics off
        self._opened_at = time.perf_counter()
        self._attachment: Attachment | None = None
        self._formats: frozenset[TransferFormat] = frozenset()
        self._pings = True  # the attached transport wants the hub's Pings
        self._waiting = False  # the reader waits for the client's bytes (the client timeout runs)
        self._timers: Timers | None = server.timers  # ``None`` once the connection's have stopped
        self._timer: TimerEntry | None = None  # when the timers look at it next
        self._away_since: float | None = None  # between transports (or polls) since then
        self._away_reason = DisconnectReason.TRANSPORT_FAILED
        self._away_detail = ""
        self._scope = trio.CancelScope()
        self._reason: DisconnectReason | None = None
        self._detail: str | None = None
        self._last_received = -math.inf
        self._inbox: PostInbox | None = None
        self._flushed = False  # the last message queued has gone to the transport
        self._ended = False  # the connection is over (``_end_transport``)
        # Tasks waiting for a transport to attach, the goodbye to go out, the end (parking.py):
        # a list, where three Events would cost 816 bytes a connection.
        self._waiters: list[Task] = []

    @property
    def closing(self) -> bool:
        """Whether the connection has begun to end."""
        return self._reason is not None or self._ended

    @property
    def has_transport(self) -> bool:
        """Whether a transport is attached now (a second WebSocket is answered 409 before its upgrade)."""
        return self._attachment is not None

    @property
    def current_transport(self) -> Inbound | None:
        """The transport attached now, if any."""
        return None if self._attachment is None else self._attachment.transport

    @property
    def resumable(self) -> bool:
        """Whether a new transport may take this connection over (stateful reconnect is in force)."""
        return self.sender.replay is not None and not self.closing

    @property
    def reason(self) -> DisconnectReason | None:
        """Why it ended; ``None`` while it runs."""
        return self._reason

    async def run(self) -> None:
        """The connection's whole life; runs in the server's nursery."""
        raise NotImplementedError

    # -- ending ---------------------------------------------------------------------------------

    def close(self, reason: DisconnectReason, detail: str | None = None) -> None:
        """End the connection for ``reason`` (the first reason given wins)."""
        if self._reason is not None or self._ended:
            return
        self._reason, self._detail = reason, detail
        self._stop_timers()
        if reason is DisconnectReason.TOO_SLOW:
            # It is not reading: a goodbye would wait behind everything queued. Drop it all,
            # and the transport at once.
            self.sender.outbox.discard()
            attachment = self._attachment
            if attachment is not None:
                attachment.abandoned = True
                attachment.drop()
        self._stop_tasks(reason)

    def _adopt_scope(self, scope: trio.CancelScope) -> None:
        """From now on ending the connection cancels ``scope`` (a subclass's nursery's, which
        saves one of its own); an end that came first carries over."""
        if self._scope.cancel_called:
            scope.cancel()
        self._scope = scope

    def _stop_tasks(self, reason: DisconnectReason) -> None:
        """The connection is ending: stop its tasks (at once, unless a subclass gives a grace)."""
        self._scope.cancel()

    def stop(self) -> None:
        """The client ended the connection without a word over its transport (a Long Polling
        ``DELETE``): ``CLIENT_CLOSED``, and no goodbye is sent."""
        attachment = self._attachment
        if attachment is not None:
            self.transport_lost(attachment, broken=False, detail="stopped by the client")
        else:
            self.close(DisconnectReason.CLIENT_CLOSED)

    def post_inbox(self) -> PostInbox:
        """Where the client's bytes go when they come in POSTs (Server-Sent Events, Long Polling)."""
        if self._inbox is None:
            self._inbox = PostInbox()
            if self._ended:
                self._inbox.close()
        return self._inbox

    async def _wait_for_transport(self) -> bool:
        """Wait for the first transport, at most ``disconnect_timeout`` (a negotiate never followed up)."""
        timeout = self._options.disconnect_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self._wait_until(lambda: self.transport_name is not None)
            return True
        logger.info("%s: gone: no transport came within disconnect_timeout (%s s)", self, timeout)
        return False

    # -- timers -------------------------------------------------------------------------------

    def _look_at(self, when: float) -> None:
        """Have the server's timers call ``timer_fired`` at ``when``, unless they will sooner."""
        timers = self._timers
        if timers is None:
            return
        timer = self._timer
        if timer is not None:
            if timer.when <= when:
                return
            timers.cancel(timer)
        self._timer = timers.call_at(when, self)

    def _look_again(self) -> None:
        """A timer moved, sooner perhaps: look at the timers now, in the caller's turn (which
        costs the server's timer task no wake), and ask for the next time."""
        if self._timers is not None:
            self._look(trio.current_time())

    def timer_fired(self, now: float) -> None:
        """The server's timers look at this connection (``_look_at``)."""
        self._timer = None
        self._look(now)

    def _look(self, now: float) -> None:
        """Act on the timers due, and ask the server's timers for the next time."""
        try:
            due = self._watch(now)
        except BaseException as exc:
            contain(exc, logger, "%s: internal error; please report a bug to trio_ws", self)
            self.close(DisconnectReason.ABORTED, "internal error")
            return
        if due < math.inf:
            self._look_at(due)

    def _watch(self, now: float) -> float:
        """Act on the timers due by ``now``; when to look again (``math.inf``: not unless a
        timer moves). The time away is every connection's; a subclass adds its own."""
        due = self._check_away(now)
        return math.inf if due is None else due

    def _stop_timers(self) -> None:
        """The connection is ending: its timers fire no more."""
        if self._timers is not None and self._timer is not None:
            self._timers.cancel(self._timer)
        self._timers = self._timer = None

    def _check_away(self, now: float) -> float | None:
        """The look at the time away: when to look again, or ``None`` once it has ended the
        connection (no transport, or no poll, within ``disconnect_timeout``)."""
        away = self._away_since
        disconnect = self._options.disconnect_timeout
        if away is None or disconnect is None:
            return math.inf
        if now < away + disconnect:
            return away + disconnect
        logger.info("%s: gone: %s (%s s)", self, printable(self._away_detail), disconnect)
        self.close(self._away_reason, f"{self._away_detail} ({disconnect:g} s)")
        if self._attachment is not None:  # Long Polling: nobody will take a goodbye
            self._attachment.drop()
            self._attachment = self.sender.attachment = None
        return None

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds (at once if it does): it is looked at again whenever
        a transport attaches, the goodbye goes out, or the connection ends."""
        if condition():
            await trio.lowlevel.checkpoint()
            return
        while not condition():
            await trio.lowlevel.wait_task_rescheduled(parked(self._waiters))

    async def _wait_flushed(self) -> None:
        """Wait until the transport has taken what is queued (the goodbye), unless nobody can come
        for it: a transport abandoned, or, shutting down, a Long Polling client between polls (new
        requests get 503). Bounded by the caller (``close_timeout``)."""
        attachment = self._attachment
        if attachment is None or attachment.abandoned:
            return
        transport = attachment.transport
        between_polls = isinstance(transport, LongPollingTransport) and transport.held is None
        if not (between_polls and self.server.closing):
            await self._wait_until(lambda: self._flushed)

    async def _end_transport(self) -> None:
        """The connection is over: POSTs still waiting are refused, the transport stops, the
        server forgets it and lets its token go."""
        self._ended = True
        wake(self._waiters)
        if self._inbox is not None:
            self._inbox.close()  # POSTs still waiting are answered 404
        attachment = self._attachment
        if attachment is not None:
            attachment.scope.cancel()  # the goodbye had its time: stop pumping, read or not
        self.server.forget(self)
        if self._metrics is not None and self.transport_name is not None:
            status = _CONNECTION_STATUS.get(self._reason, "normal_closure")
            self._metrics.connection_ended(self.transport_name, status, time.perf_counter() - self._opened_at)
        await self.server.release(self)

    # -- the client's bytes ---------------------------------------------------------------------

    async def _receive(self) -> bytes | None:
        """The client's next bytes, from whichever transport carries them now.

        Returns ``None`` once the connection is ending (its transport closed,
        broke, or did not come back in time). Waits while a stateful client
        is between transports. Bytes from a transport that was replaced
        meanwhile are dropped: the client sends them again on the new one.
        """
        while not self.closing:
            attachment = self._attachment
            if attachment is None:
                # A transport, or the end (the timers time it).
                await self._wait_until(lambda: self._attachment is not None)
                continue
            self._waiting = True
            try:
                data = await attachment.transport.receive()
            except trio.BrokenResourceError as exc:
                self.transport_lost(attachment, broken=True, detail=describe_break("while receiving", exc))
                continue
            finally:
                self._waiting = False
            if self._attachment is not attachment:
                continue
            if data is None:
                self.transport_lost(attachment, broken=False, detail="closed by the client")
                continue
            self._last_received = trio.current_time()
            return data
        return None

    # -- sending ----------------------------------------------------------------------------

    async def send_bytes(self, data: bytes, *, droppable: bool = False, trackable: bool = True) -> None:
        """Send encoded bytes to this client, waiting at most ``slow_client_timeout`` for room.

        If no room comes, the connection is closed as too slow and the bytes
        are dropped; the caller carries on (it will be cancelled if it is
        one of this connection's own tasks).
        """
        if not await self.sender.send(data, droppable=droppable, trackable=trackable):
            self._too_slow(f"nothing could go out to it for {self._options.slow_client_timeout:g} s")

    def replies_wait_for_ack(self) -> None:
        """A send waits for room that only the client's Ack makes: whoever reads the client's
        messages must read on to find it (a hub connection's dispatcher does)."""

    def sends_follow(self) -> bool:
        """Whether more sends are on their way (calls wait behind the one replying): the sender
        then queues, so that they leave in one write."""
        return False

    def _too_slow(self, why: str) -> None:
        if not self.closing:
            logger.info("%s: closing: the client is too slow: %s", self, why)
            if self._metrics is not None:
                self._metrics.slow_client_closed()
            self.close(DisconnectReason.TOO_SLOW, why)

    # -- transports -------------------------------------------------------------------------

    def connect_transport(
        self, transport: Inbound, *, request: Request | None = None, push: Transport | None = None
    ) -> Attachment:
        """Attach ``transport``: from now on the client's bytes come from it and go to it.

        ``push`` is the transport itself when the connection writes to it
        (``attach`` does), ``None`` when it takes what is queued itself.
        ``request`` is the HTTP request that opened it (hub code sees it as
        ``context.request``). Under stateful reconnect, a new transport
        replaces the one attached (which is dropped) and starts with the
        Sequence message and the replay.

        Raises:
            ConnectionGone: the connection has ended.
            TransportInUse: another transport is attached and may not be replaced.
            TransportMismatch: the connection is carried by another kind of transport.
        """
        if self.closing:
            raise ConnectionGone(str(self))
        if self.transport_name is not None and transport.name != self.transport_name:
            raise TransportMismatch(f"{self} is carried by {self.transport_name}, not {transport.name}")
        current = self._attachment
        if current is not None:
            if not self.resumable:
                raise TransportInUse(str(self))
            logger.info("%s: a new %s takes over from the one attached", self, transport.name)
            current.abandoned = True
            current.drop()
        attachment = Attachment(transport, push)
        resuming = self.sender.replay is not None  # a handshake on an earlier transport made it
        self._attachment = self.sender.attachment = attachment
        if request is not None:
            self.request = request
        if self.transport_name is None and self._metrics is not None:
            self._metrics.connection_started(transport.name)
        self.transport_name = transport.name
        self._formats = transport.transfer_formats
        self._pings = transport.keep_alive
        if resuming:
            if self._away_since is not None:
                logger.info(
                    "%s: the client is back after %.3g s", self, trio.current_time() - self._away_since
                )
            assert self.sender.replay is not None
            self.sender.resume()
            self.sender.replay.reconnected()
        self._away_since = None
        self._last_received = trio.current_time()
        wake(self._waiters)
        self._look_again()
        self.sender.moved()
        # A reader still waiting on the replaced transport is freed when its task aborts it.
        return attachment

    def transport_lost(self, attachment: Attachment, *, broken: bool, detail: str) -> None:
        """``attachment``'s transport has gone: it closed (``broken=False``) or broke.

        The connection ends with it (``CLIENT_CLOSED`` or ``TRANSPORT_FAILED``),
        unless stateful reconnect lets a new transport take it over within
        ``disconnect_timeout``. Nothing happens if that transport was
        replaced, or reported gone, already.
        """
        if self._attachment is not attachment:
            return
        self._attachment = self.sender.attachment = None
        attachment.drop()
        self.sender.moved()
        if self.closing:
            return
        if broken and self.resumable:
            logger.info(
                "%s: the transport dropped (%s); waiting up to %s s for the client to come back",
                self,
                printable(detail),
                self._options.disconnect_timeout,
            )
            self.sender.outbox.clear()  # what matters is in the replay buffer
            self.set_away(
                True, DisconnectReason.TRANSPORT_FAILED, "no new transport within disconnect_timeout"
            )
            return
        if broken:
            logger.info("%s: the transport failed: %s", self, printable(detail))
            self.close(DisconnectReason.TRANSPORT_FAILED, detail)
        else:
            self.close(DisconnectReason.CLIENT_CLOSED)

    def set_away(
        self, away: bool, reason: DisconnectReason = DisconnectReason.TIMED_OUT, detail: str = ""
    ) -> None:
        """The client is between transports (or polls): past ``disconnect_timeout`` of that, the
        connection ends with ``reason``. ``set_away(False)`` when it is back."""
        if away:
            if self._away_since is None:
                self._away_since = trio.current_time()
                self._away_reason, self._away_detail = reason, detail
        else:
            self._away_since = None
        self._look_again()

    def flushed(self) -> None:
        """The transport has taken the last message queued (the connection's goodbye)."""
        self._flushed = True
        wake(self._waiters)

    async def attach(self, transport: Transport, *, request: Request | None = None) -> None:
        """Carry this connection's bytes over ``transport`` until one of them ends.

        Runs in the transport's own task (a WebSocket handler, say), which
        writes what is queued for the client (the pump); the connection's own
        task reads. When the connection ends, its last messages are sent
        first; then the transport is closed (aborted, for a client too slow
        to read, or one replaced under stateful reconnect), and this returns
        once the connection is over, or, under stateful reconnect, once the
        transport has dropped. If this task is cancelled, the transport
        counts as broken.

        Raises:
            ConnectionGone: the connection has already ended.
            TransportInUse: another transport is attached.
            TransportMismatch: the connection is carried by another kind of transport.
        """
        attachment = self.connect_transport(transport, request=request, push=transport)
        try:
            with attachment.scope:
                await self.sender.pump(attachment)
        finally:
            # Nothing can reach the client over it any more, whatever ended the pump (even this
            # task being cancelled).
            self.transport_lost(attachment, broken=True, detail="the transport was detached")
            if attachment.abandoned:
                await transport.abort()
            else:
                await transport.aclose()
        if self.closing:
            await self._wait_until(lambda: self._ended)  # the connection is over, not just its transport
