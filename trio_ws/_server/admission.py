"""Keeping room for every client: the accept loop, waiting connections and WebSocket slots.

Every accepted connection holds a file descriptor until it closes, and a
process may hold only so many (its open-file limit). A peer that opens
sockets and sends nothing must not use them all up, or nobody else gets in,
not even the health check. Rules of this module:

* Connections waiting for a request head are capped
  (``max_idle_connections``): new ones, and keep-alive ones between two
  requests. One more closes the one that has waited longest: silent sockets
  cost their sender a connection each, and keep nobody out. Graceful
  shutdown closes the keep-alive ones at once (:meth:`Admission.close_kept_alive`).
* WebSockets are capped by ``max_connections``: an upgrade past it gets 503.
* At start-up the open-file limit is raised to fit both caps
  (:func:`make_room_for`).
* If ``accept()`` fails for want of files anyway (EMFILE and its kin), the
  accept loop closes the longest-waiting connection and accepts again at
  once; with none to close, it tries again after 0.1 s. Either way it logs
  one WARNING per ``REPORT_INTERVAL``, with a count and no traceback: running
  out of files is a condition to report, not a bug. (``trio.serve_listeners``
  logs an ERROR with a traceback every 0.1 s instead, which is why the
  server has its own loop.)
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import NoReturn

import trio

from .._options import Options

__all__ = ["Admission", "Waiting", "accept_loop", "make_room_for"]

logger = logging.getLogger("trio_ws.admission")

# The errors accept() gives when the process or the system is out of room (as trio lists them).
_OUT_OF_ROOM = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# How long the accept loop waits before trying again when it had nothing to close.
_RETRY_DELAY = 0.1
# Conditions that can recur thousands of times a second are logged at most this often.
REPORT_INTERVAL = 10.0
# Files a server needs besides its connections: listeners, log files, the interpreter's own.
_SPARE_FILES = 64


class Waiting:
    """A connection waiting for a request head, which admission may close to make room."""

    __slots__ = ("_scope", "_stream", "evicted", "kept_alive")

    def __init__(self, stream: trio.abc.Stream, kept_alive: bool) -> None:
        self._stream = stream
        self._scope = trio.CancelScope()
        #: Whether it has served a request already, and waits for the next.
        self.kept_alive = kept_alive
        #: Whether admission closed this connection (to make room, or for shutdown).
        self.evicted = False

    def evict(self) -> None:
        """Stop the wait and give back the file descriptor now, not when the task next runs."""
        self.evicted = True
        self._scope.cancel()
        socket = _socket_of(self._stream)
        if socket is not None:
            # trio wakes the task blocked on it (notify_closing) and the descriptor is free at once.
            socket.close()


class _Report:
    """Counts a recurring condition and says when it is time to log it again."""

    def __init__(self) -> None:
        self._last = -float("inf")
        self._count = 0

    def due(self) -> int:
        """Count one occurrence; return how many to report now, or 0 if it is not time yet."""
        self._count += 1
        now = trio.current_time()
        if now - self._last < REPORT_INTERVAL:
            return 0
        self._last, count, self._count = now, self._count, 0
        return count


# What websocket_slot() hands out when there is no cap, and when the cap is reached.
_FREE = nullcontext(True)
_REFUSED = nullcontext(False)


class _SlotHeld:
    """A block that holds a WebSocket slot already taken: it gives the slot back when it ends."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def __enter__(self) -> bool:
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._admission._release_websocket_slot()


class Admission:
    """Who gets in: the cap on waiting connections and the WebSocket slots of one server."""

    def __init__(self, options: Options) -> None:
        self._max_idle = options.max_idle_connections
        # Insertion-ordered: the first entry has waited longest.
        self._waiting: dict[Waiting, None] = {}
        self._websocket_slots = (
            trio.CapacityLimiter(options.max_connections) if options.max_connections is not None else None
        )
        self._full = False
        self._slot_held = _SlotHeld(self)
        self._idle_report = _Report()
        self._exhausted_report = _Report()

    @property
    def waiting_count(self) -> int:
        """How many connections are waiting for a request head."""
        return len(self._waiting)

    @contextmanager
    def waiting(self, stream: trio.abc.Stream, *, kept_alive: bool = False) -> Iterator[Waiting]:
        """Count ``stream`` as waiting for a request while the block runs.

        The block runs in a cancel scope that is cancelled if the connection
        is closed to make room (``Waiting.evicted`` then says so). If the cap
        is reached, entering closes the connection that has waited longest.
        """
        if self._max_idle is not None and len(self._waiting) >= self._max_idle:
            self._evict_oldest()
            if count := self._idle_report.due():
                logger.warning(
                    "max_idle_connections (%d) connections were waiting for a request: closed the one "
                    "that waited longest, %d time(s) since this was last logged (at most every %g s), "
                    "to make room for new ones",
                    self._max_idle,
                    count,
                    REPORT_INTERVAL,
                )
        waiting = Waiting(stream, kept_alive)
        self._waiting[waiting] = None
        try:
            with waiting._scope:
                yield waiting
        finally:
            self._waiting.pop(waiting, None)

    def _evict_oldest(self) -> bool:
        """Close the connection that has waited longest for its request; False if none waits."""
        for oldest in self._waiting:
            del self._waiting[oldest]
            oldest.evict()
            return True
        return False

    def close_kept_alive(self) -> int:
        """Close every keep-alive connection waiting between requests (graceful shutdown); return how many.

        A client may always find a kept-alive connection closed and retry on
        a new one (RFC 9112 section 9.3.1). New connections that have not
        sent their first request yet are left to send it and get 503.
        """
        idle = [waiting for waiting in self._waiting if waiting.kept_alive]
        for waiting in idle:
            del self._waiting[waiting]
            waiting.evict()
        return len(idle)

    def out_of_files(self, exc: OSError) -> bool:
        """``accept()`` failed with ``exc`` for want of files: make room, and report it now and then.

        Returns whether a waiting connection was closed, so that accepting
        again can succeed at once.
        """
        closed = self._evict_oldest()
        if count := self._exhausted_report.due():
            logger.warning(
                "accept() failed with %s (%s), %d time(s) since this was last logged "
                "(at most every %g s); %s",
                errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                exc.strerror,
                count,
                REPORT_INTERVAL,
                "closing the connections that have waited longest for a request, to make room"
                if closed
                else "no connection is waiting to be closed, so new clients wait in the kernel's queue; "
                "raise the open-file limit (ulimit -n) or lower max_connections",
            )
        return closed

    def websocket_slot(self) -> AbstractContextManager[bool]:
        """Take one of the ``max_connections`` slots for the ``with`` block that follows, and give
        it back when the block ends; the block's value says whether one was free.

        Being full is logged once, at WARNING, when it starts, and again at
        INFO when a slot frees up, so that a flood of refused upgrades does
        not flood the log as well (each refusal still has its access line).

        The slot is taken here, not on entering the block, so the context
        managers handed out hold no state: they are made once per server,
        not once per WebSocket (a WebSocket keeps its block open all its life).
        """
        slots = self._websocket_slots
        if slots is None:
            return _FREE
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            if not self._full:
                self._full = True
                logger.warning(
                    "connection limit reached: %d WebSockets open (max_connections); "
                    "new upgrades get 503 until one closes",
                    slots.total_tokens,
                )
            return _REFUSED
        return self._slot_held

    def _release_websocket_slot(self) -> None:
        assert self._websocket_slots is not None
        self._websocket_slots.release()
        if self._full:
            self._full = False
            logger.info("below the connection limit again: accepting WebSocket upgrades")


async def accept_loop(
    listener: trio.abc.Listener[trio.abc.Stream],
    handler: Callable[[trio.abc.Stream], Awaitable[object]],
    handler_nursery: trio.Nursery,
    admission: Admission,
) -> NoReturn:
    """Accept connections from ``listener`` for ever, each served by ``handler`` in ``handler_nursery``.

    Like the loop in ``trio.serve_listeners``, except for what it does when
    the process is out of files (see the module docstring). Any other error
    from ``accept()`` propagates: the listener is broken. The listener is
    closed when the loop ends (it is cancelled when the server stops accepting).
    """
    # The name trio would give each connection's task, made once: trio makes a new string per
    # task otherwise, kept as long as the connection.
    function = handler.func if isinstance(handler, functools.partial) else handler
    name = f"{function.__module__}.{function.__qualname__}"
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_ROOM:
                    raise
                if not admission.out_of_files(exc):
                    await trio.sleep(_RETRY_DELAY)
                continue
            handler_nursery.start_soon(handler, stream, name=name)


def make_room_for(max_connections: int | None, max_idle_connections: int | None) -> None:
    """Raise the process's soft open-file limit if both connection caps would not fit under it.

    Past that limit ``accept()`` fails with EMFILE (see :func:`accept_loop`).
    Many systems start processes with a soft limit of 1024 and allow far
    more, so the limit is raised as far as the hard limit allows (an
    unprivileged process may do that), and if even that is too low, a
    warning says what to change. Go's runtime raises the soft limit of every
    program the same way. The limit is never lowered.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover (not on Unix)
        return
    if max_connections is None or max_idle_connections is None:
        return  # unbounded: no limit would be enough
    needed = max_connections + max_idle_connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if raised > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        logger.info(
            "raised the open-file limit from %d to %d for max_connections (%d) and max_idle_connections (%d)",
            soft,
            raised,
            max_connections,
            max_idle_connections,
        )
    if raised < needed:
        logger.warning(
            "max_connections (%d) and max_idle_connections (%d) do not fit under this process's limit "
            "of %d open files: raise the hard limit (ulimit -Hn %d) or lower them",
            max_connections,
            max_idle_connections,
            raised,
            needed,
        )


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        return stream.socket
    return None
