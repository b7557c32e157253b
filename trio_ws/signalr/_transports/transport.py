"""Transports: how a hub connection's bytes reach the client and come back.

A hub connection lives in the hub server's nursery, beside but not inside
whatever carries its bytes. A transport is *attached* to it for as long as
it carries them (``HubConnection.connect_transport``): a WebSocket for its
lifetime, or under stateful reconnect until a new one takes over; a
Server-Sent Events stream with the POSTs beside it; a Long Polling
connection's series of polls. The connection does not know which.

Rules of a transport:

* ``receive()`` is called by the connection's own task, which reads: it
  returns the client's next chunk of bytes, in order, with any chunking
  (the hub protocol frames its own messages), and ``None`` once the client
  has closed the transport cleanly. A transport that breaks raises
  ``trio.BrokenResourceError``. The connection may cancel a ``receive()``
  (a new transport took over): nothing may be lost then.
* Sending takes one of two shapes. A transport that is written to (the
  ``Transport`` protocol: a WebSocket, a trio stream) is carried by
  ``HubConnection.attach(transport)`` in its own task, which writes what
  is queued with ``send(data, binary=...)``. ``binary`` says whether the
  connection speaks a binary protocol (MessagePack), for a WebSocket to
  choose Binary frames over Text ones. One that can also write without
  waiting (``DirectTransport``: a WebSocket) lets a sender write a message
  itself when nothing is queued (``send_now``, never awaited, so never cut
  in half by a cancellation); what its socket did not take, the pump's next
  ``send`` sends first, and ``send(b"")`` sends just that. A transport that
  takes what is queued itself (a poll, an event stream; ``Inbound`` only)
  calls ``HubConnection.sender.take()``.
* ``aclose()`` ends the transport after the connection has said its last
  word (its Close message was in the last chunk sent). ``abort()`` ends it
  at once, without waiting for the client, which has stopped reading (or
  has been replaced by a new transport).
* ``transfer_formats`` says what it can carry (Server-Sent Events: text
  only), and ``keep_alive`` whether the hub should ping over it (not over
  Long Polling, whose polls show the client is alive).

``StreamTransport`` adapts any ``trio.abc.Stream``: tests use it over
``trio.testing.memory_stream_pair``, and it would serve a raw TCP socket.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

from .._protocol.messages import TransferFormat

__all__ = [
    "Attachment",
    "ConnectionGone",
    "DirectTransport",
    "Inbound",
    "StreamTransport",
    "Transport",
    "TransportInUse",
    "TransportMismatch",
]


class ConnectionGone(Exception):
    """The connection has ended: a transport cannot attach to it (HTTP answers 404)."""


class TransportInUse(Exception):
    """The connection already has a transport attached (HTTP answers 409)."""


class TransportMismatch(Exception):
    """The connection is carried by another kind of transport (HTTP answers 400)."""


class Inbound(Protocol):
    """What every transport offers the connection: its name, what it carries, the client's bytes."""

    @property
    def name(self) -> str:
        """The transport's name as clients know it: ``"WebSockets"``, ``"LongPolling"``..."""
        ...

    @property
    def transfer_formats(self) -> frozenset[TransferFormat]: ...

    @property
    def keep_alive(self) -> bool: ...

    async def receive(self) -> bytes | None: ...


@runtime_checkable
class Transport(Inbound, Protocol):
    """A transport the hub connection also writes to: what ``HubConnection.attach`` carries."""

    async def send(self, data: bytes, *, binary: bool) -> None: ...

    async def aclose(self) -> None: ...

    async def abort(self) -> None: ...


@runtime_checkable
class DirectTransport(Transport, Protocol):
    """A push transport a sender may also write to itself, without waiting (a WebSocket on
    plain TCP): see ``sender.py``."""

    def send_now(self, data: bytes, *, binary: bool) -> int | None:
        """Send ``data`` at once if nothing else is on its way and the transport can: ``None``
        if it did not, else how many of its bytes wait for the next ``send`` (``send(b"")``
        sends just those)."""
        ...


class StreamTransport:
    """A transport over a ``trio.abc.Stream``: bytes both ways, binary-safe.

    Args:
        stream: The byte stream; the transport closes it when the connection ends.
        name: What ``context.transport`` reports to hub code.
        receive_size: Bytes asked from the stream per read.
    """

    transfer_formats = frozenset({TransferFormat.TEXT, TransferFormat.BINARY})
    keep_alive = True

    def __init__(self, stream: trio.abc.Stream, *, name: str = "Stream", receive_size: int = 65536) -> None:
        self.stream = stream
        self.name = name
        self._receive_size = receive_size

    async def receive(self) -> bytes | None:
        try:
            data = await self.stream.receive_some(self._receive_size)
        except trio.ClosedResourceError:
            raise trio.BrokenResourceError("the stream was closed") from None
        return bytes(data) if data else None

    async def send(self, data: bytes, *, binary: bool) -> None:
        try:
            await self.stream.send_all(data)
        except trio.ClosedResourceError:
            raise trio.BrokenResourceError("the stream was closed") from None

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def abort(self) -> None:
        await trio.aclose_forcefully(self.stream)

    def __repr__(self) -> str:
        return f"<StreamTransport {self.name}>"


class Attachment:
    """One transport attached to a connection, for as long as it carries it.

    Attributes:
        transport: Where the client's bytes come from (``receive()``).
        push: The same transport when the connection's pump writes to it
            (``send()``: a WebSocket), ``None`` when it takes what is queued
            itself (a poll, an event stream).
        direct: The same transport again when a sender may write to it
            itself (``send_now()``), else ``None``.
        scope: The transport's own work for the connection (its pump, its
            stream): cancelled when the transport leaves.
        abandoned: Too slow, or replaced: abort it, never close it politely.
    """

    __slots__ = ("abandoned", "direct", "push", "scope", "transport")

    def __init__(self, transport: Inbound, push: Transport | None) -> None:
        self.transport = transport
        self.push = push
        self.direct = push if isinstance(push, DirectTransport) else None
        self.scope = trio.CancelScope()
        self.abandoned = False

    def drop(self) -> None:
        """Stop whatever the connection does with this transport."""
        self.scope.cancel()
