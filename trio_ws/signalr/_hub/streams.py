"""``HubStream``: what a hub method receives for a stream the client uploads.

The client names each stream in its invocation's ``streamIds``, then sends
the items as StreamItem messages and ends the stream with a Completion
(with an error if its side failed). The hub method sees an async iterator::

    async def upload(self, items: HubStream[str]) -> str:
        return "".join([item async for item in items])

Rules of this module:

* Items wait in a bounded buffer (``HubOptions.stream_buffer_capacity``);
  when it is full, the connection stops reading until the method takes
  one, so a fast client cannot fill the server's memory.
* An item is converted to the annotation's ``T`` when the method takes it,
  so a mistyped item fails the method (and its caller gets the error), not
  the connection.
* The client's error ends the iteration with ``HubError(text)``, so an
  unhandled one reaches the caller as ``HubException: text``, as in ASP.NET.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from .._errors import HubError
from .binding import BindingError

if TYPE_CHECKING:
    from .binding import Converter

__all__ = ["HubStream", "StreamEnd"]

T = TypeVar("T")


class StreamEnd:
    """Sent through a stream's channel when the client ends it."""

    __slots__ = ("error",)

    def __init__(self, error: str | None) -> None:
        self.error = error


class HubStream(Generic[T]):
    """Items a client streams to a hub method; iterate with ``async for``.

    Annotate a hub method's parameter as ``HubStream[T]`` to receive one.
    Iteration ends when the client completes the stream, or raises
    ``HubError`` with the client's text if the client reports an error.
    """

    def __init__(self, stream_id: str, receive: trio.MemoryReceiveChannel[Any], convert: Converter) -> None:
        self.stream_id = stream_id
        self._receive = receive
        self._convert = convert
        self._count = 0

    def __aiter__(self) -> HubStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            item = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        if isinstance(item, StreamEnd):
            self._receive.close()
            if item.error is not None:
                raise HubError(item.error)
            raise StopAsyncIteration
        self._count += 1
        try:
            return self._convert(item)  # type: ignore[no-any-return]
        except BindingError as exc:
            raise HubError(f"item {self._count} of stream {self.stream_id}: {exc}") from None

    def __repr__(self) -> str:
        return f"<HubStream {self.stream_id!r}>"
