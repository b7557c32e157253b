"""The server's tunables, gathered in one frozen dataclass.

Rules of this module:

* Every limit and timeout the server imposes lives here, with its default,
  so that it is declared once instead of on every function that passes it on.
* A timeout of ``None`` turns that timeout off.
* Bad values are refused when the ``Options`` is built, with a message that
  names the option and says what to change, so a typo fails at start-up and
  not on the first connection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address

__all__ = ["Options", "seconds"]


@dataclass(frozen=True)
class Options:
    """Limits and timeouts for :func:`trio_ws.serve`.

    Attributes:
        keep_alive_interval: Seconds between the ping frames sent on each
            idle or busy connection, so that proxies keep it open and a dead
            peer is noticed. ``None`` turns keep-alive off.
        keep_alive_timeout: Seconds to wait for the pong that answers a ping.
            If none arrives, the peer is taken for dead and the connection is
            closed with 1011. ``None`` waits forever.
        receive_buffer_size: Bytes asked from the socket per read.
        max_message_size: Largest message accepted, in bytes (UTF-8 bytes
            for text, as RFC 6455 counts them). A larger one closes the
            connection with 1009, and so does a message in more than
            ``max_message_size // 64`` frames (at least 64), since every
            frame costs work even when it is empty. A message in progress
            holds only its own bytes.
        message_queue_size: How many received messages may wait for the
            handler before the reader stops reading from the socket (0 and 1
            both mean one), so a slow handler slows the peer down through
            TCP instead of filling memory. The whole messages of the last
            read are still queued (up to 64 of them), so that a handler
            answers a burst in one go. A peer that never reads pins what its
            handler holds, the messages queued and one read.
        allowed_origins: Browser origins (``"https://example.com"``) that may
            open a WebSocket, or send HTTP requests to a route and read the
            answer (CORS, with credentials). The page's own origin (same
            host) is always allowed; ``"*"`` allows every origin (and, for
            HTTP, without credentials). A browser request from any other
            origin gets 403. Requests without an ``Origin`` header
            (non-browser clients) are not affected.
        allowed_hosts: Host names, besides loopback ones, that a browser may
            use to reach a server bound only to loopback addresses (the
            default ``127.0.0.1`` or ``localhost``): a name a proxy forwards,
            say. A browser request (one with ``Origin``) to such a server
            under any other ``Host`` gets 403, because that is what a DNS
            rebinding attack looks like. ``"*"`` turns the check off. The
            check does not apply to a server bound to other addresses.
        handshake_timeout: Seconds a new connection has to send its request
            head and, for a WebSocket, finish the upgrade (its auth and
            ``before_upgrade`` hooks included). A slower one is dropped. An
            upgrade after earlier requests on a connection gets as long from
            its own head.
        close_timeout: Seconds the closing phase may take, from the moment
            a Close frame is sent or received: the handler's last replies,
            our Close and the peer's answer. Then TCP is closed regardless,
            which also frees a handler stuck sending to a peer that stopped
            reading.
        shutdown_timeout: Grace period, in seconds, that open connections get
            to finish after the server has sent them close 1001.
        max_request_head_size: Largest HTTP request head, in bytes; a larger
            one is answered with 431.
        max_request_headers: Most header lines a request may carry; more are
            answered with 431.
        max_request_body: Largest request body, in bytes. A larger
            ``Content-Length`` gets 413 before any of the body is read; a
            chunked body gets 413 when it passes the limit. Either way the
            connection is closed, since the rest of the body is not read.
        request_body_timeout: Seconds from the end of a request head to the
            end of its body. A slower body gets 408: a body that trickles
            is a slowloris too. ``None`` waits forever.
        http_idle_timeout: Seconds a keep-alive connection may wait for its
            next request head, after answering one. Then it is closed.
            ``None`` waits forever (still bounded by ``max_idle_connections``).
        max_requests_per_connection: Most requests one keep-alive connection
            serves; the last answer says ``Connection: close``. ``None`` sets
            no limit.
        max_connections: Most WebSockets open (or finishing their upgrade)
            at once. When the server is full, a new upgrade is answered with
            503 and the open connections are not affected; plain HTTP
            requests (the page, ``/healthz``) are still answered. ``None``
            sets no limit.
        max_idle_connections: Most connections waiting for a request head:
            new ones, and keep-alive ones between two requests. When one
            more arrives, the one that has waited longest is closed, so
            connections that send nothing can't keep a new client (or the
            health check) from being served. ``None`` sets no limit. The
            server raises its open-file limit to fit this plus
            ``max_connections``.
        compression: Accept permessage-deflate (RFC 7692) when a client
            offers it, as browsers do. The size limit applies to a message
            after it is inflated, so a small compressed "bomb" gets 1009.
        compression_window_bits: The largest deflate window, as a power of
            two (9 to 15), for what we send and, if the client allows it,
            for what it sends. Each side keeps a window per connection, so
            a smaller one saves memory at some cost in compression.
        compression_min_size: Messages shorter than this many bytes are sent
            uncompressed; deflate saves nothing on them.
        metrics: Serve ``GET /metrics`` in the Prometheus text format (see
            docs/operating.md). It needs ``pip install 'trio_ws[metrics]'``;
            off, ``/metrics`` is not served and nothing is counted.
    """

    # Keep-alive
    keep_alive_interval: float | None = 20.0
    keep_alive_timeout: float | None = 20.0
    # Limits
    # 256 KiB reads take a 64 KiB message in one piece: +40% MB/s in benchmarks/, idle memory unchanged.
    receive_buffer_size: int = 256 * 1024
    max_message_size: int = 1024 * 1024
    message_queue_size: int = 1
    max_request_head_size: int = 16 * 1024
    max_request_headers: int = 100
    max_request_body: int = 1024 * 1024
    max_requests_per_connection: int | None = 1000
    max_connections: int | None = 1000
    max_idle_connections: int | None = 1000
    # Compression
    compression: bool = True
    compression_window_bits: int = 12
    compression_min_size: int = 64
    # Security
    allowed_origins: Sequence[str] = field(default=())
    allowed_hosts: Sequence[str] = field(default=())
    # Timeouts
    handshake_timeout: float | None = 10.0
    http_idle_timeout: float | None = 5.0
    request_body_timeout: float | None = 30.0
    close_timeout: float | None = 10.0
    shutdown_timeout: float = 5.0
    # Observability
    metrics: bool = False

    def __post_init__(self) -> None:
        # Accept any iterable of origins (a list from argparse, say) but keep a tuple.
        origins = self.allowed_origins
        if isinstance(origins, str):
            raise ValueError(
                f"allowed_origins must be a list of origins, not the string {origins!r}; "
                f"write allowed_origins=[{origins!r}]"
            )
        object.__setattr__(self, "allowed_origins", _normalise_origins(origins))
        if isinstance(self.allowed_hosts, str):
            raise ValueError(
                f"allowed_hosts must be a list of host names, not the string {self.allowed_hosts!r}; "
                f"write allowed_hosts=[{self.allowed_hosts!r}]"
            )
        object.__setattr__(self, "allowed_hosts", _normalise_hosts(self.allowed_hosts))
        timeouts = (
            "keep_alive_interval",
            "keep_alive_timeout",
            "handshake_timeout",
            "close_timeout",
            "http_idle_timeout",
            "request_body_timeout",
        )
        for name in timeouts:
            value = getattr(self, name)
            if value is not None:
                _check_seconds(name, value, allow_zero=False)
        _check_seconds("shutdown_timeout", self.shutdown_timeout, allow_zero=True)
        counts = (
            "receive_buffer_size",
            "max_message_size",
            "max_request_head_size",
            "max_request_headers",
            "max_request_body",
        )
        for name in counts:
            _check_whole(name, getattr(self, name), allow_zero=False)
        for name in ("max_connections", "max_idle_connections", "max_requests_per_connection"):
            if getattr(self, name) is not None:
                _check_whole(name, getattr(self, name), allow_zero=False)
        # 0 is accepted as trio-websocket accepts it, and means what 1 means.
        _check_whole("message_queue_size", self.message_queue_size, allow_zero=True)
        _check_whole("compression_min_size", self.compression_min_size, allow_zero=True)
        if not isinstance(self.metrics, bool):
            raise ValueError(f"metrics must be True or False, got {self.metrics!r}")
        if not isinstance(self.compression, bool):
            raise ValueError(f"compression must be True or False, got {self.compression!r}")
        bits = self.compression_window_bits
        if not isinstance(bits, int) or isinstance(bits, bool) or not 9 <= bits <= 15:
            raise ValueError(f"compression_window_bits must be a whole number from 9 to 15, got {bits!r}")


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    _check_sign(name, value, allow_zero=allow_zero)


def _check_whole(name: str, value: object, *, allow_zero: bool) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    _check_sign(name, value, allow_zero=allow_zero)


def _check_sign(name: str, value: float, *, allow_zero: bool) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'at least 0' if allow_zero else 'greater than 0'}, got {value!r}")


def _normalise_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """Lower-case each origin and drop a trailing slash, as browsers send them."""
    result = []
    for origin in origins:
        cleaned = origin.strip().rstrip("/").lower()
        if cleaned != "*" and "://" not in cleaned:
            raise ValueError(f"allowed origin {origin!r} needs a scheme, e.g. 'https://{cleaned}'")
        result.append(cleaned)
    return tuple(result)


def _normalise_hosts(hosts: Iterable[str]) -> tuple[str, ...]:
    """Lower-case each host name; refuse a URL or a port, which the check never compares."""
    result = []
    for host in hosts:
        cleaned = host.strip().rstrip(".").lower()
        bare = cleaned and not any(c in cleaned for c in "/[]@ ") and (":" not in cleaned or _is_ip(cleaned))
        if cleaned != "*" and not bare:
            raise ValueError(
                f"allowed host {host!r} must be a bare host name such as 'app.example', "
                "without a scheme or a port"
            )
        result.append(cleaned)
    return tuple(result)


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def seconds(timeout: float | None) -> float:
    """A timeout as trio wants it: ``None`` (no timeout) becomes infinity."""
    return float("inf") if timeout is None else timeout
