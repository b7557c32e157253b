"""Transports: how a hub connection's bytes reach the client and come back.

A hub connection lives in the hub server's nursery, beside but not inside
whatever carries its bytes. A transport is attached to it for as long as it
carries them (``HubConnection.attach``): a WebSocket for its lifetime; in
the transports still to come, a Server-Sent Events stream plus POSTs, or a
series of long polls; under stateful reconnect, a new WebSocket taking over
from one that dropped. The connection does not know which.

Rules of a transport (the ``Transport`` protocol below):

* ``receive()`` returns the next chunk of bytes from the client, in order,
  with any chunking (the hub protocol frames its own messages), and
  ``None`` once the client has closed the transport cleanly. A transport
  that breaks raises ``trio.BrokenResourceError``.
* ``send(data, binary=...)`` writes one chunk of whole messages; ``binary``
  says whether the connection speaks a binary protocol (MessagePack), for a
  WebSocket to choose Binary frames over Text ones.
* ``aclose()`` ends the transport after the connection has said its last
  word (its Close message is in the last chunk sent). ``abort()`` ends it
  at once, without waiting for the client, which has stopped reading.
* ``transfer_formats`` says what it can carry (Server-Sent Events: text
  only), and ``keep_alive`` whether the hub should ping over it (not over
  Long Polling, whose polls show the client is alive).

``StreamTransport`` adapts any ``trio.abc.Stream``: tests use it over
``trio.testing.memory_stream_pair``, and it would serve a raw TCP socket.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

from ._protocol.messages import TransferFormat

__all__ = ["StreamTransport", "Transport"]


@runtime_checkable
class Transport(Protocol):
    """What a hub connection needs from whatever carries its bytes."""

    @property
    def name(self) -> str:
        """The transport's name as clients know it: ``"WebSockets"``, ``"LongPolling"``..."""
        ...

    @property
    def transfer_formats(self) -> frozenset[TransferFormat]: ...

    @property
    def keep_alive(self) -> bool: ...

    async def receive(self) -> bytes | None: ...

    async def send(self, data: bytes, *, binary: bool) -> None: ...

    async def aclose(self) -> None: ...

    async def abort(self) -> None: ...


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
