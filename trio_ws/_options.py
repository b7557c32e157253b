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
            open a WebSocket. The page's own origin (same host) is always
            allowed; ``"*"`` allows every origin. Requests without an
            ``Origin`` header (non-browser clients) are not affected.
        handshake_timeout: Seconds a new connection has to send its request
            head and finish the upgrade. A slower one is dropped.
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
        max_connections: Most WebSockets open (or finishing their upgrade)
            at once. When the server is full, a new upgrade is answered with
            503 and the open connections are not affected; plain HTTP
            requests (the page, ``/healthz``) are still answered. ``None``
            sets no limit.
        compression: Accept permessage-deflate (RFC 7692) when a client
            offers it, as browsers do. The size limit applies to a message
            after it is inflated, so a small compressed "bomb" gets 1009.
        compression_window_bits: The largest deflate window, as a power of
            two (9 to 15), for what we send and, if the client allows it,
            for what it sends. Each side keeps a window per connection, so
            a smaller one saves memory at some cost in compression.
        compression_min_size: Messages shorter than this many bytes are sent
            uncompressed; deflate saves nothing on them.
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
    max_connections: int | None = 1000
    # Compression
    compression: bool = True
    compression_window_bits: int = 12
    compression_min_size: int = 64
    # Security
    allowed_origins: Sequence[str] = field(default=())
    # Timeouts
    handshake_timeout: float | None = 10.0
    close_timeout: float | None = 10.0
    shutdown_timeout: float = 5.0

    def __post_init__(self) -> None:
        # Accept any iterable of origins (a list from argparse, say) but keep a tuple.
        origins = self.allowed_origins
        if isinstance(origins, str):
            raise ValueError(
                f"allowed_origins must be a list of origins, not the string {origins!r}; "
                f"write allowed_origins=[{origins!r}]"
            )
        object.__setattr__(self, "allowed_origins", _normalise_origins(origins))
        for name in ("keep_alive_interval", "keep_alive_timeout", "handshake_timeout", "close_timeout"):
            value = getattr(self, name)
            if value is not None:
                _check_seconds(name, value, allow_zero=False)
        _check_seconds("shutdown_timeout", self.shutdown_timeout, allow_zero=True)
        counts = ("receive_buffer_size", "max_message_size", "max_request_head_size", "max_request_headers")
        for name in counts:
            _check_whole(name, getattr(self, name), allow_zero=False)
        if self.max_connections is not None:
            _check_whole("max_connections", self.max_connections, allow_zero=False)
        # 0 is accepted as trio-websocket accepts it, and means what 1 means.
        _check_whole("message_queue_size", self.message_queue_size, allow_zero=True)
        _check_whole("compression_min_size", self.compression_min_size, allow_zero=True)
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


def seconds(timeout: float | None) -> float:
    """A timeout as trio wants it: ``None`` (no timeout) becomes infinity."""
    return float("inf") if timeout is None else timeout
