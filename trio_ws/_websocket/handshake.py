"""The opening handshake (RFC 6455 section 4.2) of a request whose head h11 has already read.

wsproto checks the request and writes the 101, through its documented API
for a server that parsed the request itself: ``initiate_upgrade_connection``,
then ``events()`` for the ``Request``, then ``send(AcceptConnection(...))``
for the answer's bytes (with ``Sec-WebSocket-Accept`` computed as section
4.2.2 says). Nothing else of wsproto is used: once the 101 is written the
``WSConnection`` is dropped, and ``protocol.py`` handles the frames.
permessage-deflate is negotiated by ``deflate.negotiate``, and its answer
goes in the 101 as an extra header.
"""

from __future__ import annotations

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from .deflate import Parameters, negotiate

__all__ = ["Handshake"]


class Handshake:
    """A valid upgrade request, ready to be answered with a 101."""

    __slots__ = ("_request", "_wsproto")

    def __init__(self, headers: list[tuple[bytes, bytes]], target: str) -> None:
        """Check the request's head.

        Raises:
            wsproto.utilities.RemoteProtocolError: not a valid WebSocket handshake; its
                ``event_hint`` says what to answer.
        """
        self._wsproto = WSConnection(ConnectionType.SERVER)
        self._wsproto.initiate_upgrade_connection(headers, target)
        request = next(self._wsproto.events())
        assert isinstance(request, Request)
        self._request = request

    @property
    def path(self) -> str:
        """The request target, with its query string."""
        return self._request.target

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order."""
        return tuple(self._request.subprotocols)

    def deflate(self, window_bits: int) -> tuple[str, Parameters] | None:
        """The permessage-deflate offer to honour, if any (see ``deflate.negotiate``)."""
        offers = [offer for offer in self._request.extensions if isinstance(offer, str)]
        return negotiate(offers, window_bits)

    def accept(self, subprotocol: str | None, extensions: str | None) -> bytes:
        """The bytes of the 101 answer, agreeing ``subprotocol`` and the ``extensions`` header value.

        Raises:
            wsproto.utilities.LocalProtocolError: ``subprotocol`` was not offered.
        """
        extra = [] if extensions is None else [(b"Sec-WebSocket-Extensions", extensions.encode("ascii"))]
        return self._wsproto.send(AcceptConnection(subprotocol=subprotocol, extra_headers=extra))
