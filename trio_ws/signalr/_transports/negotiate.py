"""``POST {hub}/negotiate``: which version, which transports, and the answer (TransportProtocols.md).

A client asks the hub how to connect before it opens a transport: the
server makes a connection and answers with its ids and the transports it
may use. Pure: no I/O, no trio, so every rule here is tested by calling it.

Rules of this module:

* ``negotiateVersion`` missing means version 0; a version above the
  server's (1) is answered as 1; a version that is not an integer, or below
  0, is an error. Errors are answered as ASP.NET answers them: 200 with
  ``{"error": "..."}``, which makes the client stop.
* "An integer" is what ASP.NET's ``int.TryParse`` takes, not what Python's
  ``int()`` takes: ASCII digits with an optional sign, ASCII whitespace
  around them (and NULs at the end), within 32 bits. No ``1_0``, no
  fullwidth or other Unicode digits, no 20-digit numbers. A parameter sent
  twice is read as ASP.NET reads it, both values joined by a comma, which
  is not an integer.
* Version 1 answers a public ``connectionId`` (what hub code and other
  clients see) and a secret ``connectionToken`` (the ``?id=`` of every
  transport request). Version 0 has no token: the client sends the
  connection id as ``?id=``, so for it the two are the same.
* Only the transports the hub allows are listed, in the order clients try
  them (WebSockets, Server-Sent Events, Long Polling), each with the
  transfer formats it carries.
* ``useStatefulReconnect`` is answered only when the client asked for it
  (``?useStatefulReconnect=true``) and the hub allows it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HttpTransportType", "NegotiateError", "negotiate_answer", "negotiate_version"]

SERVER_VERSION = 1
"""The highest negotiate version trio_ws speaks."""


class HttpTransportType(enum.Enum):
    """A transport a hub may offer, named as clients name it in negotiate."""

    WEBSOCKETS = "WebSockets"
    SERVER_SENT_EVENTS = "ServerSentEvents"
    LONG_POLLING = "LongPolling"

    @property
    def transfer_formats(self) -> tuple[str, ...]:
        """What it can carry: Server-Sent Events are text only, so no MessagePack over them."""
        if self is HttpTransportType.SERVER_SENT_EVENTS:
            return ("Text",)
        return ("Text", "Binary")


# The order clients try them in, whatever order a hub lists them in.
_ORDER = (
    HttpTransportType.WEBSOCKETS,
    HttpTransportType.SERVER_SENT_EVENTS,
    HttpTransportType.LONG_POLLING,
)


# .NET's NumberStyles.Integer: whitespace is U+0009..U+000D and space, and
# NULs may trail (Number.Parsing's TrailingZeros).
_DOTNET_INTEGER = re.compile(r"[\t-\r ]*([+-]?[0-9]+)[\t-\r ]*\x00*", re.ASCII)
_INT32 = range(-(2**31), 2**31)
_NOT_AN_INTEGER = "The client requested a non-integer protocol version."


@dataclass(frozen=True)
class NegotiateError(Exception):
    """A negotiate request the server refuses; ``text`` is what the client is told."""

    text: str

    def __str__(self) -> str:
        return self.text


def negotiate_version(values: Iterable[str]) -> int:
    """The negotiate version to answer with, from the ``negotiateVersion`` values the client sent.

    Raises:
        NegotiateError: the version is not an integer, or is below 0.
    """
    given = list(values)
    if not given:
        return 0
    version = _int_try_parse(",".join(given))  # a repeated parameter, as ASP.NET reads it: "0,1"
    if version is None:
        raise NegotiateError(_NOT_AN_INTEGER)
    if version < 0:
        raise NegotiateError(
            f"The client requested version '{version}', but the server does not support this version."
        )
    return min(version, SERVER_VERSION)


def _int_try_parse(text: str) -> int | None:
    """``text`` as .NET's ``int.TryParse`` reads it, or None where it refuses."""
    match = _DOTNET_INTEGER.fullmatch(text)
    if match is None:
        return None
    digits = match.group(1)
    if len(digits.lstrip("+-").lstrip("0")) > 10:  # too long for 32 bits; spares int() a huge string
        return None
    number = int(digits)
    return number if number in _INT32 else None


def negotiate_answer(
    version: int,
    connection_id: str,
    token: str,
    transports: Iterable[HttpTransportType],
    *,
    stateful_reconnect: bool = False,
) -> dict[str, object]:
    """The JSON body of a successful negotiate, for ``version`` (0 or 1).

    ``stateful_reconnect`` adds ``"useStatefulReconnect": true``: only when
    the client asked for it, since the TypeScript client refuses an answer
    that grants what it did not ask for.
    """
    allowed = set(transports)
    answer: dict[str, object] = {"negotiateVersion": version, "connectionId": connection_id}
    if version >= 1:
        answer["connectionToken"] = token
    if stateful_reconnect:
        answer["useStatefulReconnect"] = True
    answer["availableTransports"] = [
        {"transport": transport.value, "transferFormats": list(transport.transfer_formats)}
        for transport in _ORDER
        if transport in allowed
    ]
    return answer
