"""What the protocol layer raises when a peer sends bytes it cannot accept.

Rules of this module:

* The parsers raise only these, whatever bytes they are fed (the Hypothesis
  tests hold them to it), so the I/O layer has one thing to catch and can
  answer the peer without logging a traceback.
* The text names what was wrong in the peer's terms ("missing required
  property 'target'"); the hub decides how much of it the peer gets to see.
"""

from __future__ import annotations

__all__ = ["HandshakeError", "ProtocolError"]


class ProtocolError(Exception):
    """The peer broke the hub protocol: malformed, oversized or mistyped data.

    ASP.NET reports these as ``InvalidDataException``, and that is the type
    name a detailed error shows.
    """

    signalr_name = "InvalidDataException"


class HandshakeError(ProtocolError):
    """The handshake request cannot be accepted.

    ``reply`` is the text for the ``{"error": ...}`` answer, one of ASP.NET's
    own; ``str(exc)`` may say more, for the server's log.
    """

    signalr_name = "InvalidDataException"

    def __init__(self, reply: str, detail: str | None = None) -> None:
        super().__init__(detail or reply)
        self.reply = reply
