"""Pure decisions about a request head: is it an upgrade, and may it proceed?

Rules of this module:

* No I/O and no trio: every function takes parsed values and returns a
  decision, so each rule is tested on its own.
* The checks here are the ones RFC 6455 and browsers leave to the server:
  whether the request asks for a WebSocket at all, and whether a browser's
  ``Origin`` is allowed (the protection against cross-site WebSocket
  hijacking). wsproto checks the rest of the handshake headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

__all__ = ["header_tokens", "header_value", "is_websocket_upgrade", "origin_allowed"]

Headers = Sequence[tuple[bytes, bytes]]


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case, as h11 gives them), or ``None``."""
    for key, value in headers:
        if key == name:
            return value
    return None


def header_tokens(headers: Headers, name: bytes) -> set[bytes]:
    """The comma-separated tokens of every ``name`` header, lower-cased."""
    tokens: set[bytes] = set()
    for key, value in headers:
        if key == name:
            tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def is_websocket_upgrade(headers: Headers) -> bool:
    """Whether the request asks to switch to the WebSocket protocol."""
    return b"upgrade" in header_tokens(headers, b"connection") and b"websocket" in header_tokens(
        headers, b"upgrade"
    )


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a browser at ``origin`` may open a WebSocket on this server.

    Browsers always send ``Origin`` on a WebSocket handshake and a page cannot
    forge it, so this is where a server refuses scripts from other sites.
    Clients that send no ``Origin`` are not browsers, and the check does not
    apply to them.

    Args:
        origin: The request's ``Origin`` header, if any.
        host: The request's ``Host`` header: the page's own origin has this host.
        allowed: Extra origins (lower-case, no trailing slash), or ``"*"``.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    allowed = tuple(allowed)
    if "*" in allowed or origin in allowed:
        return True
    if host is None or origin == "null":
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # a malformed origin, such as "http://[" (found by test_hostile_http)
        return False
    return netloc == host.strip().lower()
