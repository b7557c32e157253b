"""Pure decisions about a request head: is it an upgrade, and may it proceed?

Rules of this module:

* No I/O and no trio: every function takes parsed values and returns a
  decision, so each rule is tested on its own.
* The checks here are the ones RFC 6455 and browsers leave to the server:
  whether the request asks for a WebSocket at all, whether its handshake
  headers are well formed (:func:`handshake_refusal`, which wsproto checks
  only in part), whether a browser's ``Origin`` is allowed (the protection
  against cross-site WebSocket hijacking), and whether a browser reached a
  loopback server under a loopback name (the protection against DNS
  rebinding). wsproto then checks the rest of the handshake.
* Header lists are token lists wherever RFC 9110 says so (``Connection``,
  ``Upgrade``): ``Upgrade: h2c, WebSocket`` asks for a WebSocket, and every
  check here and in wsproto must agree on that (:func:`wsproto_headers`).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Iterable, Sequence
from ipaddress import ip_address
from urllib.parse import urlsplit

from .._app.response import Response

__all__ = [
    "WEBSOCKET_VERSION",
    "handshake_refusal",
    "header_tokens",
    "header_value",
    "host_allowed",
    "is_loopback_host",
    "is_websocket_upgrade",
    "origin_allowed",
    "wsproto_headers",
]

WEBSOCKET_VERSION = b"13"

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


def handshake_refusal(http_version: bytes, headers: Headers) -> Response | None:
    """The HTTP answer to a WebSocket handshake that is malformed, or ``None`` if it is well formed.

    RFC 6455 section 4.2.1 asks for an HTTP/1.1 request with exactly one
    ``Sec-WebSocket-Key`` (section 11.3.1) that is 16 bytes in base64, and
    section 4.2.2 for a 426 naming the version the server speaks when the
    client asks for another one.
    """
    if http_version != b"1.1":
        return Response.text(
            400,
            f"Bad Request: a WebSocket handshake needs HTTP/1.1, not HTTP/{http_version.decode('ascii')}",
        )
    versions = [value for key, value in headers if key == b"sec-websocket-version"]
    if not versions:
        return Response.text(
            400, "Bad Request: missing header 'Sec-WebSocket-Version' (this server speaks version 13)"
        )
    if versions != [WEBSOCKET_VERSION]:
        asked = ", ".join(v.decode("ascii", "backslashreplace") for v in versions)
        return Response.text(
            426,
            f"Upgrade Required: this server speaks WebSocket version 13, and the client asked for {asked}",
            headers=[("sec-websocket-version", WEBSOCKET_VERSION.decode())],
        )
    keys = [value for key, value in headers if key == b"sec-websocket-key"]
    if not keys:
        return Response.text(400, "Bad Request: missing header 'Sec-WebSocket-Key'")
    if len(keys) > 1:
        return Response.text(400, "Bad Request: more than one 'Sec-WebSocket-Key' header")
    if not _is_key(keys[0]):
        return Response.text(
            400, "Bad Request: 'Sec-WebSocket-Key' must be 16 random bytes in base64 (24 characters)"
        )
    return None


def _is_key(key: bytes) -> bool:
    try:
        return len(b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def wsproto_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """``headers`` for wsproto, whose check wants ``Upgrade`` to be exactly ``websocket``.

    Call it only for a request :func:`is_websocket_upgrade` accepted: the
    ``Upgrade`` list then names websocket, and that is the protocol chosen.
    """
    upgrade = [(b"upgrade", b"websocket")]
    others = [(key, value) for key, value in headers if key != b"upgrade"]
    return others + upgrade


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
    except ValueError:  # a malformed origin, such as "http://[" (found by tests/http/test_hostile.py)
        return False
    return netloc == host.strip().lower()


def host_allowed(host: str | None, allowed_hosts: Iterable[str]) -> bool:
    """Whether a browser request to a server bound to loopback names the server as a loopback host.

    A page on an attacker's name that resolves to 127.0.0.1 (DNS rebinding)
    reaches a loopback server as its own origin, so the origin check passes;
    but its ``Host`` is still the attacker's name. Development servers refuse
    such requests the same way.

    Args:
        host: The request's ``Host`` header (or the absolute target's authority).
        allowed_hosts: Other names (lower-case, no port) the server is known by, or ``"*"``.
    """
    if host is None:
        return False
    allowed = tuple(allowed_hosts)
    if "*" in allowed:
        return True
    name = _host_name(host)
    return name is not None and (is_loopback_host(name) or name in allowed)


def is_loopback_host(name: str) -> bool:
    """Whether ``name`` (lower-case, no port, no brackets) always means this machine.

    ``localhost`` and every name under ``.localhost`` do (RFC 6761 section
    6.3, and browsers resolve them so), as do 127.0.0.0/8 and ``::1``.
    """
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str | None:
    """The name in a ``Host`` value (``name:port``, ``[::1]:port``), lower-case; ``None`` if malformed."""
    try:
        return urlsplit("//" + host.strip()).hostname
    except ValueError:
        return None
