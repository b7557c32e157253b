"""The transports that ride on plain HTTP requests: Server-Sent Events and Long Polling.

Neither is a duplex connection, so each is two halves: the client's bytes
come in POST bodies, and the server's go out in an event stream or in poll
answers. This module holds what the connection reads from and attaches:
``PostInbox`` (the POST bodies, waiting for the connection's reader: one
chunk, one POST at a time), ``ServerSentEventsTransport`` and
``LongPollingTransport``. The requests that carry them are served in
``_transports/http_requests.py``, which has the rules of each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .._protocol.messages import TransferFormat

if TYPE_CHECKING:
    from collections.abc import AsyncIterable


__all__ = [
    "LONG_POLLING",
    "SERVER_SENT_EVENTS",
    "LongPollingTransport",
    "PostInbox",
    "ServerSentEventsTransport",
]

logger = logging.getLogger("trio_ws.signalr")

SERVER_SENT_EVENTS = "ServerSentEvents"
LONG_POLLING = "LongPolling"


class PostInbox:
    """A connection's bytes from POST bodies, waiting for its reader: one chunk, one POST at a time."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes](1)
        self.busy = False

    async def receive(self) -> bytes:
        """The next chunk a POST brought (the connection's reader calls this)."""
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.BrokenResourceError("the connection's POST inbox was closed") from None

    async def put(self, body: AsyncIterable[bytes]) -> bool:
        """Hand ``body`` over, chunk by chunk; ``False`` if the connection ended first.

        Raises:
            RequestBodyError: the body broke a limit of the front door's (413, 408, 400).
        """
        async for chunk in body:
            if chunk:
                try:
                    await self._send.send(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return False
        return True

    def close(self) -> None:
        """The connection has ended: POSTs still waiting are refused."""
        self._receive.close()


@dataclass(eq=False)
class ServerSentEventsTransport:
    """The server's half of Server-Sent Events (the client's is the POST inbox)."""

    inbox: PostInbox
    name = SERVER_SENT_EVENTS
    transfer_formats = frozenset({TransferFormat.TEXT})
    keep_alive = True

    async def receive(self) -> bytes:
        return await self.inbox.receive()


@dataclass(eq=False)
class LongPollingTransport:
    """The server's half of Long Polling: whichever poll is held now, if any."""

    inbox: PostInbox
    name = LONG_POLLING
    transfer_formats = frozenset({TransferFormat.TEXT, TransferFormat.BINARY})
    keep_alive = False  # each poll shows the client is alive
    held: trio.CancelScope | None = None  # the poll held now, which a newer one displaces

    async def receive(self) -> bytes:
        return await self.inbox.receive()
