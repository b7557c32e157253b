"""The upgrade's checks (``_http/upgrade.py``), without sockets: the Host and Origin allowed, what
makes a request an upgrade, and the refusals of a malformed handshake."""

from __future__ import annotations

import pytest

from trio_ws._http.upgrade import handshake_refusal, host_allowed, is_websocket_upgrade, origin_allowed


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("localhost:5000", (), True),
        ("LOCALHOST.", (), True),
        ("app.localhost:1", (), True),
        ("127.0.0.1", (), True),
        ("127.9.9.9:80", (), True),
        ("[::1]:5000", (), True),
        ("evil.example:5000", (), False),
        ("localhost.evil.example", (), False),
        ("10.0.0.1", (), False),
        ("[::1", (), False),
        (None, (), False),
        ("app.example:443", ("app.example",), True),
        ("anything.example", ("*",), True),
    ],
)
def test_host_allowed_on_a_loopback_server(host: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    """Loopback names and addresses pass, and so do the names in allowed_hosts; nothing else does."""
    assert host_allowed(host, allowed) is ok


def test_handshake_refusal_checks_version_key_and_http_version() -> None:
    """A well-formed handshake passes; each malformed part gets its own status and message."""
    good = [(b"sec-websocket-version", b"13"), (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]
    assert handshake_refusal(b"1.1", good) is None
    cases = {
        (b"1.0", tuple(good)): 400,
        (b"1.1", tuple(good[1:])): 400,
        (b"1.1", ((b"sec-websocket-version", b"8"), good[1])): 426,
        (b"1.1", (good[0], good[0], good[1])): 426,
        (b"1.1", tuple(good[:1])): 400,
        (b"1.1", (good[0], (b"sec-websocket-key", b"QUJD"))): 400,
    }
    for (version, headers), status in cases.items():
        refusal = handshake_refusal(version, headers)
        assert refusal is not None and refusal.status == status, (version, headers)


@pytest.mark.parametrize(
    ("headers", "upgrade"),
    [
        ([(b"connection", b"Upgrade"), (b"upgrade", b"websocket")], True),
        ([(b"connection", b"keep-alive, Upgrade"), (b"upgrade", b"WebSocket")], True),
        ([(b"connection", b"keep-alive"), (b"upgrade", b"websocket")], False),
        ([(b"connection", b"upgrade"), (b"upgrade", b"h2c")], False),
        ([], False),
    ],
)
def test_is_websocket_upgrade(headers: list[tuple[bytes, bytes]], upgrade: bool) -> None:
    """An upgrade needs 'upgrade' among the Connection tokens and 'websocket' in Upgrade."""
    assert is_websocket_upgrade(headers) is upgrade


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "example.com", (), True),  # not a browser
        ("http://example.com", "example.com", (), True),  # same host
        ("https://EXAMPLE.com:8443", "example.com:8443", (), True),
        ("http://example.com", "example.com:8080", (), False),  # other port
        ("http://evil.example", "example.com", (), False),
        ("null", "example.com", (), False),  # sandboxed page or file://
        ("http://evil.example", None, (), False),
        ("http://[", "example.com", (), False),  # malformed: was an internal error
        ("https://app.example", "example.com", ("https://app.example",), True),
        ("https://app.example/", "example.com", ("https://app.example",), True),
        ("http://anything", "example.com", ("*",), True),
    ],
)
def test_origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    """Same host, listed origins and '*' pass; every other browser origin is refused."""
    assert origin_allowed(origin, host, allowed) is ok
