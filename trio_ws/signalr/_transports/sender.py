"""Everything that goes to one client: the outbox, the replay buffer, slow clients.

Every message for a connection, whoever sends it, is encoded in the
sender's task and handed to the connection's ``Sender``, which queues it
for whatever transport carries the connection now. Rules of this module:

* Order is kept: bytes reach the transport in the order senders queued them.
* Senders queue; the transport's side writes: the task carrying a
  WebSocket (the pump) or the poll or event stream that takes what is
  queued. A sender never awaits a write: a write cut in half by the
  sender's cancellation would break the stream for every later message, and
  guarding each write with a shielded cancel scope costs as much as waking
  the pump (measured with ``benchmarks.hubs``' instruction counts).
* One exception, the common case: a sender may write *without waiting*
  (``_send_now``), which no cancellation can cut in half, since there is
  no ``await`` in it. Only when nothing is queued here, the connection is
  open, no more sends are known to follow (calls waiting behind the one
  replying: their replies leave in one write, queued), and the transport
  offers it (``DirectTransport``: a WebSocket on plain TCP with nothing
  else on its way, see ``_websocket/batching.py``). Nothing can go out
  before bytes queued earlier, then, and the WebSocket frames the message
  there and then (so permessage-deflate compresses in send order). What
  the socket does not take at once waits first in the WebSocket's outbox,
  and an empty chunk queued here wakes the pump to send it (``pump``) and
  keeps every later message queued behind it. The pump's trip through the
  scheduler is saved for every message a socket takes at once.
* A send to one connection (a call's result, a stream item,
  ``clients.caller``) waits for room. A send to many (``offer``) never
  waits: it goes out at once (as above) or queues, or applies the
  slow-client policy, so one slow member never holds up the others.
* Under stateful reconnect every trackable message is also recorded in the
  ``Replay`` buffer until the client acknowledges it, and the replay buffer
  is what bounds them (the outbox holds the same bytes objects, not
  copies). A send to one waits while ``stateful_reconnect_buffer_size``
  bytes wait for an Ack (the backpressure). A send to many never waits: it
  is recorded while fewer than ``away_buffer_size`` bytes wait, so a client
  that is away for a moment, or catching up after it came back, loses
  nothing of a burst; past that bound the policy applies (nothing can be
  dropped from a numbered sequence, so ``DROP_OLDEST`` closes the client as
  ``CLOSE`` does). While the client is away, trackable messages go only to
  the replay buffer, and a new transport starts with the Sequence message
  and everything unacknowledged (``resume``); Pings and Acks are not kept.
  A message written at once is recorded as one queued is.
* A sender waiting for room waits at most ``slow_client_timeout`` while a
  transport is attached; while a stateful client is away it waits for it
  to come back, which ``disconnect_timeout`` bounds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import trio

from .outbox import Outbox
from .replay import Replay

if TYPE_CHECKING:
    from .._options import HubOptions
    from .._protocol.codec import HubProtocol
    from .transport import Attachment

__all__ = ["CHUNK", "Sender", "SenderOwner", "describe_break"]

CHUNK = 64 * 1024
"""Most bytes joined into one transport write (a WebSocket message, a Server-Sent Event)."""

# How long a pump whose send failed waits for the reader to find the transport's end.
_READER_GRACE = 1.0


class SenderOwner(Protocol):
    """What the sender tells its connection (``TransportConnection`` is one): a send waits for an
    Ack, the goodbye has gone out, a transport has gone."""

    def replies_wait_for_ack(self) -> None: ...  # pragma: no cover (a signature)

    def sends_follow(self) -> bool: ...  # pragma: no cover (a signature)

    def flushed(self) -> None: ...  # pragma: no cover (a signature)

    def transport_lost(
        self, attachment: Attachment, *, broken: bool, detail: str
    ) -> None: ...  # pragma: no cover (a signature)


class Sender:
    """The bytes on their way to one client."""

    __slots__ = (
        "_connection",
        "_timeout",
        "_waits",
        "attachment",
        "away_limit",
        "binary",
        "last_sent",
        "outbox",
        "protocol",
        "replay",
    )

    def __init__(self, connection: SenderOwner, options: HubOptions) -> None:
        self._connection = connection
        self._timeout = options.slow_client_timeout
        self.away_limit = options.away_buffer_size
        self.outbox = Outbox(options.send_buffer_size)
        self.replay: Replay | None = None
        self.protocol: HubProtocol | None = None
        self.binary = False
        self.last_sent = -math.inf
        # The transport the bytes go to now (set by the connection as transports come and go).
        self.attachment: Attachment | None = None
        # The waits for room under way: a transport attaching or leaving ends them (``moved``).
        # A list, as few wait at once (and an empty set is four times its size).
        self._waits: list[trio.CancelScope] = []

    @property
    def away(self) -> bool:
        """Whether a stateful client is between transports: its messages wait in the replay buffer."""
        return self.replay is not None and self.attachment is None

    # -- queueing --------------------------------------------------------------------------------

    def try_put(self, data: bytes, *, droppable: bool = False, trackable: bool = True) -> bool:
        """Queue ``data`` if there is room; whether there was."""
        replay = self.replay
        if replay is not None:
            if not trackable:
                if self.attachment is None:
                    return True  # a Ping or an Ack for a client that is away: never sent again
            elif not replay.has_room(self.away_limit if droppable else None):
                return False
            else:
                replay.record(data)
                if self.attachment is not None and not self._send_now(data):
                    # Numbered, so never dropped from the queue; the replay buffer bounds it.
                    self.outbox.force_put(data)
                # (Away, the next transport replays it.)
                self.last_sent = trio.current_time()
                return True
        if not self._send_now(data) and not self.outbox.put_nowait(data, droppable=droppable):
            return False
        self.last_sent = trio.current_time()
        return True

    def _send_now(self, data: bytes) -> bool:
        """Hand ``data`` to the transport at once, if nothing is queued and it can take it
        without waiting (see the module docstring); whether it did."""
        attachment = self.attachment
        outbox = self.outbox
        if (
            attachment is None
            or attachment.direct is None
            or not outbox.empty
            or outbox.closed
            or self._connection.sends_follow()
        ):
            return False
        waiting = attachment.direct.send_now(data, binary=self.binary)
        if waiting is None:
            return False
        if waiting:
            # The transport holds the rest: an empty chunk wakes the pump to send it (``pump``),
            # and keeps whatever comes next queued behind it.
            outbox.force_put(b"")
        return True

    async def send(self, data: bytes, *, droppable: bool = False, trackable: bool = True) -> bool:
        """Queue ``data`` for the client, waiting for room if need be.

        Returns ``False`` if the client is too slow (no room within
        ``slow_client_timeout``); the bytes are then dropped, and the caller
        closes the connection.
        """
        if self.try_put(data, droppable=droppable, trackable=trackable):
            # A cancel point, not a schedule point: the sender goes on at once (a call task ends
            # right after its Completion), and one that fills the queue waits for room anyway.
            await trio.lowlevel.checkpoint_if_cancelled()
            return True
        while True:
            deadline = math.inf if self.away else trio.current_time() + self._timeout
            with trio.move_on_at(deadline):
                await self._wait_for_room(trackable, droppable)
            if self.try_put(data, droppable=droppable, trackable=trackable):
                return True
            if trio.current_time() >= deadline:
                return False

    async def _wait_for_room(self, trackable: bool, droppable: bool) -> None:
        """Wait for room in the replay buffer or the outbox, or for a transport to come or go
        (which changes the deadline: ``moved`` cancels this wait).

        One task and a cancel scope, not a nursery: a hub method cancelled while it waits here
        sees a plain ``trio.Cancelled``, not an exception group.
        """
        replay = self.replay
        with trio.CancelScope() as scope:
            self._waits.append(scope)
            try:
                if (
                    trackable
                    and replay is not None
                    and not replay.has_room(self.away_limit if droppable else None)
                ):
                    # Only an Ack makes room: the reader must read on to find it.
                    self._connection.replies_wait_for_ack()
                    await replay.wait_for_room()
                else:
                    await self.outbox.wait_writable()
            finally:
                self._waits.remove(scope)

    # -- taking: the transports' side -----------------------------------------------------------

    async def pump(self, attachment: Attachment) -> None:
        """Write what is queued to a push transport, until the connection's last message is out.

        Runs in the transport's own task. Returns once the outbox is closed
        and empty; the caller's cancel scope (``Attachment.scope``) ends it
        sooner when the transport leaves.

        An empty chunk is a sender's note that the transport holds the rest of
        a message it wrote at once (``_send_now``): ``send(b"")`` sends just that.
        """
        assert attachment.push is not None
        outbox, transport = self.outbox, attachment.push
        while True:
            await outbox.wait_readable()
            try:
                chunk = outbox.get_nowait(CHUNK)
            except trio.WouldBlock:  # pragma: no cover - the pump is the outbox's only reader
                continue
            except trio.EndOfChannel:
                self._connection.flushed()
                return
            try:
                await transport.send(chunk, binary=self.binary)
            except trio.BrokenResourceError as exc:
                # A client that closed cleanly can fail a send just before its end is read:
                # the reader has a moment to say so first, and the reason is the right one
                # (its report drops the attachment, which cancels this wait: see ``attach``).
                await trio.sleep(_READER_GRACE)
                self._connection.transport_lost(
                    attachment, broken=True, detail=describe_break("while sending", exc)
                )
                return

    async def take(self, max_bytes: int) -> bytes:
        """What is queued, as one chunk, for a transport that pulls (a poll, an event stream).

        Raises:
            trio.EndOfChannel: the connection has ended and its last message was taken.
        """
        try:
            chunk = await self.outbox.get(max_bytes)
        except trio.EndOfChannel:
            self._connection.flushed()
            raise
        if self.outbox.exhausted:
            self._connection.flushed()
        return chunk

    # -- transports coming and going -------------------------------------------------------------

    def moved(self) -> None:
        """A transport attached or left: senders waiting for room look again."""
        for scope in self._waits:
            scope.cancel()

    def resume(self) -> None:
        """A new transport took over a stateful connection: it starts with Sequence and the replay."""
        replay, protocol = self.replay, self.protocol
        assert replay is not None and protocol is not None
        self.outbox.clear()
        sequence, messages = replay.replay()
        self.outbox.force_put(protocol.encode(sequence))
        for data in messages:
            self.outbox.force_put(data)
        self.last_sent = trio.current_time()


def describe_break(when: str, exc: BaseException) -> str:
    """How a transport broke, for the log: ``"while sending: reset by peer"``."""
    return f"{when}: {exc}" if str(exc) else when
