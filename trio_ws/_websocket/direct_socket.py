"""Reading and writing a plain TCP socket directly: no trip through trio's scheduler when it is ready.

trio's ``SocketStream.receive_some`` and ``send_all`` bracket every system
call that succeeds at once with a checkpoint: a cancel point before it and a
schedule point after it, so that every call lets the other tasks run. For an
echo server that schedule point is a whole trip through trio's run queue per
read and per write, more work than the system call itself. Here a
connection's reader and writer call the socket themselves, by these rules:

* Only a ``trio.SocketStream`` over an operating-system socket is read and
  written here (:func:`direct_io` decides). TLS streams, memory streams,
  FakeNet's sockets and every other stream keep their own ``receive_some``
  and ``send_all``: the general path, which behaves the same.
* Every call is a cancel point, as trio's are: a task in a cancelled scope
  raises ``trio.Cancelled`` at the call, before the socket is touched.
* A call that must wait waits in ``trio.lowlevel.wait_readable`` or
  ``wait_writable`` (a full checkpoint) and tries again when woken, as
  trio's own socket does.
* A call that succeeds at once takes no schedule point, except every
  ``CALLS_PER_TURN``-th such call in a row in its direction, which takes one
  after its system call as trio would. So a task reading a socket that
  always has data, or writing one that always has room, still lets the
  others run at least that often, besides the schedule points its caller
  takes (the reader's every 64 frames, the handler's every 64 messages).
* A read that returned less than it asked for emptied the kernel's buffer,
  so the next read waits until the socket is readable before it reads
  (as asyncio's event loop does), instead of a read that would fail: a
  failed read costs an exception, and the wait comes anyway. The first
  read waits first too, since the bytes before it (a request head) have
  just been read. No wait happens while an exception is being handled, so
  an idle connection keeps no exception and no traceback alive.
* A read goes into one buffer per thread and is copied out of it onto the
  end of a ``bytearray``: the caller's (``receive_into``; the reader
  appends to the protocol's receive buffer, with no ``bytes`` made in between)
  or a new one of the length that came (``receive_some``).
  ``os.read(fd, size)`` would allocate ``size`` bytes (256 KiB by
  default) for every read and shrink them to what came: glibc
  serves a block that large with ``mmap`` and shrinks it with ``mremap``, so
  every read cost three more system calls and a page fault, which
  instruction counts don't show (trio's own socket escapes it only because
  its failed reads free a whole block, which raises glibc's threshold). A
  read and its copy happen with no ``await`` between them, so the tasks of
  one thread never share the buffer; other threads have their own.
* ``send_pieces`` sends a list of buffers one after another with one
  ``os.writev``, so a long frame's header and payload go out together
  without a copy that joins them. At most ``MOST_PIECES`` buffers a call
  (the system's ``IOV_MAX``); what a first write leaves is sent from views
  of the same buffers, never a joined copy.
* Errors are trio's: a socket closed on our side (by ``aclose``, in any
  task) raises ``trio.ClosedResourceError``; any other ``OSError``
  becomes ``trio.BrokenResourceError``, with the ``OSError`` as its cause.
* The file descriptor is looked up at every system call, never kept: once
  ``aclose`` has closed the socket, ``fileno()`` is -1 and the call raises,
  so a number the kernel has since given to another connection is never
  read or written. A task waiting on the socket when it is closed is woken
  with ``ClosedResourceError`` by trio itself (``aclose`` calls
  ``notify_closing``).

Why this keeps trio's guarantees: trio's documentation of ``checkpoint()``
says that "the scheduler has the option of ignoring this and continuing to
run the current task if it decides this is appropriate (e.g. for increased
efficiency)". That is all that is skipped here, only on calls that did not
have to wait, and never ``CALLS_PER_TURN`` times in a row. What
``SocketStream`` does besides, and why it is not needed here:

* It raises ``BusyResourceError`` when two tasks send at once. A
  connection sends only under its write lock (``_websocket/batching.py``), so two
  never do; two tasks waiting to read would still get trio's
  ``BusyResourceError`` from ``wait_readable``.
* It checks ``max_bytes``, and makes an empty ``send_all`` a checkpoint
  that checks for a closed socket. The reader asks for its fixed
  ``receive_buffer_size``; nobody sends nothing.

The system calls are ``os.readv``, ``os.write`` and ``os.writev`` on the
socket's file descriptor: on a connected stream socket they are ``recv``,
``send`` and ``sendmsg`` without flags, reached through public API only. On Windows, where a socket
is not a file descriptor, every stream takes the general path.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Awaitable, Sequence
from typing import Protocol

import trio

__all__ = ["CALLS_PER_TURN", "MOST_PIECES", "ByteStream", "DirectSocket", "direct_io"]

# The most calls in a row that succeed at once without a schedule point, in each direction.
CALLS_PER_TURN = 16
# The most buffers one send_pieces call takes: the most one writev takes (POSIX's IOV_MAX).
MOST_PIECES = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16

# As trio's SocketStream: these errnos mean the socket was closed on our side.
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})

# Each thread's read buffer (see the module docstring), made on its first read.
_per_thread = threading.local()


def _read(fd: int, size: int, into: bytearray) -> int:
    """Append at most ``size`` bytes from ``fd`` to ``into``, read through this thread's buffer
    (no large allocation); how many came."""
    buffer: bytearray | None = getattr(_per_thread, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _per_thread.buffer = bytearray(size)
    with memoryview(buffer) as view, view[:size] as room:
        count = os.readv(fd, (room,))
        with view[:count] as came:
            into += came
    return count


class ByteStream(Protocol):
    """What a connection reads and writes through: a ``trio.abc.Stream``, or a :class:`DirectSocket`."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray: ...

    async def send_all(self, data: bytes | bytearray | memoryview) -> None: ...


def direct_io(stream: trio.abc.Stream) -> ByteStream:
    """A :class:`DirectSocket` for a plain TCP ``trio.SocketStream``; any other stream itself."""
    if type(stream) is not trio.SocketStream or sys.platform == "win32":
        return stream
    try:
        stream.socket.fileno()
    except NotImplementedError:  # trio.testing's FakeNet: no operating-system socket under it
        return stream
    return DirectSocket(stream.socket)


def _size(data: bytes | bytearray | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


class DirectSocket:
    """``receive_some`` and ``send_all`` on a trio socket, by the rules in the module docstring."""

    __slots__ = ("_drained", "_reads", "_socket", "_writes")

    def __init__(self, socket: trio.socket.SocketType) -> None:
        self._socket = socket
        # Calls in a row that succeeded without a schedule point, in each direction.
        self._reads = 0
        self._writes = 0
        # The last read emptied the kernel's buffer: wait until readable before the next. True at
        # first: what came before (a request head) has just been read off the socket.
        self._drained = True

    async def receive_some(self, max_bytes: int | None = None) -> bytearray:
        """Up to ``max_bytes`` bytes (64 KiB if ``None``); empty once the peer has closed its side."""
        data = bytearray()
        await self.receive_into(data, max_bytes)
        return data

    @property
    def drained(self) -> bool:
        """Whether the last read emptied the kernel's buffer: the next waits for the socket first."""
        return self._drained

    def wait_readable(self) -> Awaitable[None]:
        """Wait until the socket is readable (or closed); the next read then reads at once.

        Not a coroutine of its own: it hands back trio's wait, so a task idling in it has one
        coroutine frame fewer alive (an idle WebSocket's reader spends its life there).
        """
        self._reads = 0
        self._drained = False
        return trio.lowlevel.wait_readable(self._fileno())  # noqa: ASYNC105 (the caller awaits it)

    async def receive_into(self, buffer: bytearray, max_bytes: int | None = None) -> int:
        """Append up to ``max_bytes`` bytes (64 KiB if ``None``) to ``buffer``; how many
        (0 once the peer has closed its side)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        size = 65536 if max_bytes is None else max_bytes
        ready = not self._drained
        while True:
            if not ready:
                # Not in the except clause below: waiting there would keep the exception, and
                # the frames in its traceback, alive as long as an idle connection waits.
                self._reads = 0
                await trio.lowlevel.wait_readable(self._fileno())
            try:
                count = _read(self._fileno(), size, buffer)
                break
            except BlockingIOError:
                ready = False
            except OSError as exc:
                raise self._error(exc, writing=False) from exc
        self._drained = count < size
        self._reads += 1
        if self._reads >= CALLS_PER_TURN:
            self._reads = 0
            await trio.lowlevel.cancel_shielded_checkpoint()
        return count

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for room as long as it takes."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = os.write(self._fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._error(exc, writing=True) from exc
        if sent < _size(data):
            self._writes = 0
            await self._send_rest((data,), sent)
            return
        self._writes += 1
        if self._writes >= CALLS_PER_TURN:
            self._writes = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_pieces(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        """Send all of ``pieces`` (at most ``MOST_PIECES``), one after another, as if joined."""
        await trio.lowlevel.checkpoint_if_cancelled()
        sent = self.send_now(pieces)
        if sent < sum(map(_size, pieces)):
            self._writes = 0
            await self._send_rest(pieces, sent)
            return
        self._writes += 1
        if self._writes >= CALLS_PER_TURN:
            self._writes = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def send_now(self, pieces: Sequence[bytes | bytearray | memoryview]) -> int:
        """Write as much of ``pieces`` (joined) as the socket takes at once, never waiting and
        never a checkpoint: how many bytes went (0 when the socket has no room)."""
        try:
            # The socket's number as it is: a closed socket's -1 fails with EBADF, which ``_error``
            # reports as closed (one call fewer for every message a broadcast writes).
            return os.writev(self._socket.fileno(), pieces)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._error(exc, writing=True) from exc

    async def _send_rest(self, pieces: Sequence[bytes | bytearray | memoryview], sent: int) -> None:
        """Send ``pieces`` from byte ``sent`` on, waiting for room before each write."""
        views = [memoryview(piece).cast("B") for piece in pieces]
        try:
            rest = views
            while True:
                # Drop the pieces that have gone, and the part of the next that has.
                while rest and sent >= len(rest[0]):
                    sent -= len(rest[0])
                    rest = rest[1:]
                if not rest:
                    return
                if sent:
                    rest = [rest[0][sent:], *rest[1:]]
                    views.append(rest[0])
                    sent = 0
                await trio.lowlevel.wait_writable(self._fileno())
                try:
                    sent = os.writev(self._fileno(), rest)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise self._error(exc, writing=True) from exc
        finally:
            # Views keep a bytearray from being resized: none outlives the call, even in a traceback.
            for view in views:
                view.release()

    def _fileno(self) -> int:
        fd = self._socket.fileno()
        if fd == -1:
            raise trio.ClosedResourceError("this socket was already closed")
        return fd

    def _error(self, exc: OSError, *, writing: bool) -> trio.ClosedResourceError | trio.BrokenResourceError:
        """The error trio's ``SocketStream`` raises for ``exc``."""
        if exc.errno in _CLOSED_ERRNOS:
            return trio.ClosedResourceError("this socket was already closed")
        if writing and self._socket.did_shutdown_SHUT_WR:
            # A write after send_eof(), which trio refuses before it tries.
            return trio.ClosedResourceError("can't send data after sending EOF")
        return trio.BrokenResourceError(f"socket connection broken: {exc}")
