"""A hub's limits and timeouts, in one frozen dataclass (like ``trio_ws.Options``).

Rules of this module:

* Every limit and timeout a hub imposes lives here, with ASP.NET's default
  where ASP.NET has one, so a client tuned for ASP.NET behaves the same.
* A timeout of ``None`` turns it off; limits on memory cannot be turned off.
* Bad values are refused when ``HubOptions`` is built, naming the option.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = ["HubOptions", "SlowClientPolicy"]


class SlowClientPolicy(enum.Enum):
    """What a message sent to many clients does when one of them has no room for it.

    A client "has no room" when ``send_buffer_size`` bytes already wait to be
    sent to it. Messages to one connection (a call's result, a stream's
    items, ``clients.caller``, ``clients.client(id)``) always wait for room:
    that slows down only the code talking to that client. Messages to many
    (``all``, ``others``, groups, users) follow this policy, so that one
    slow member need not hold up everybody else.
    """

    CLOSE = "close"
    """Close the slow connection (reason ``TOO_SLOW``, the client may reconnect); never wait."""
    DROP_OLDEST = "drop_oldest"
    """Drop the oldest waiting message that nobody awaits (a ``send``), to make room; never wait.
    A call's result, a stream item and a client-result call are never dropped."""
    WAIT = "wait"
    """Wait for room, at most ``slow_client_timeout``, then close as ``CLOSE`` does. Slow
    members are waited for together, so one send waits at most that long."""


@dataclass(frozen=True)
class HubOptions:
    """Limits and timeouts for a hub.

    Attributes:
        keep_alive_interval: Send a Ping after this many seconds with nothing
            else sent, so the client knows the server is there (ASP.NET: 15).
            Clients time the server out after twice this (30 s by default).
        client_timeout: Close a connection when nothing arrives from the
            client for this long (ASP.NET: 30). As in ASP.NET, it starts with
            the client's first Ping, for clients that never ping.
        handshake_timeout: Seconds a new connection has to complete the hub
            handshake, from the moment its transport attaches (ASP.NET: 15).
        disconnect_timeout: Seconds a connection may be without a transport
            before it is gone (ASP.NET: 15): after negotiate, until the
            client's first transport attaches; between two long polls; and
            under stateful reconnect, from a dropped WebSocket to the next.
        long_polling_timeout: Seconds a long poll is held when there is
            nothing to send; it is then answered 200 with an empty body, and
            the client polls again (ASP.NET: 90).
        max_message_size: Largest message a client may send, in bytes
            (ASP.NET: 32 KiB). A larger one, or a larger handshake, closes
            the connection with an error; nothing that size is buffered.
        max_parallel_invocations: Calls one connection may run at once
            (ASP.NET: 1). Further calls wait; once 16 wait, so does reading
            from that connection, which slows a client that floods (Acks,
            Pings, Close and cancels already read are applied at once).
            Streams don't count.
        max_streams: Streams one connection may run at once, in either
            direction. Past it, a stream call gets an error completion.
        stream_buffer_capacity: Items of an upload stream that may wait for
            the hub method to take them (ASP.NET: 10); past it, reading from
            the connection waits.
        send_buffer_size: Bytes that may wait to be sent to one connection
            before senders wait or ``slow_client`` applies.
        stateful_reconnect_buffer_size: Under stateful reconnect, bytes of
            messages that may wait for the client's acknowledgement (ASP.NET:
            100,000); past it, a send to one connection waits.
        away_buffer_size: Under stateful reconnect, bytes that sends to many
            (``all``, ``others``, groups, users) may keep for one client until
            it acknowledges them: while it is away (a dropped WebSocket,
            until ``disconnect_timeout``) or catching up after it came back.
            Such sends never wait for it, and nothing numbered may be
            dropped, so past this bound the client is closed as too slow.
            At least ``stateful_reconnect_buffer_size``; the default, 2 MiB,
            lets a client miss a 1 MB burst for a few seconds and lose
            nothing.
        max_connections: Hub connections this hub keeps open at once, from
            negotiate on (a negotiate never followed up counts until
            ``disconnect_timeout``); past it, negotiate and new WebSockets
            are answered 503. ``None``: no limit.
        slow_client: What a send to many clients does when one has no room.
        slow_client_timeout: How long a send waits for room before the
            connection is closed as too slow: every send to one connection,
            and sends to many under ``SlowClientPolicy.WAIT``.
        client_result_timeout: How long ``invoke()`` waits for a client's
            result before raising ``ClientResultError``.
        close_timeout: Seconds a closing connection has to get its Close
            message out, and ``on_disconnected`` has to finish.
        detailed_errors: Tell callers the type and message of any exception
            a hub method raises, not just of a ``HubError``. For
            development only: exception texts can leak internals.
        protocols: The hub protocols a client may choose.
    """

    # Timeouts (ASP.NET's defaults)
    keep_alive_interval: float | None = 15.0
    client_timeout: float | None = 30.0
    handshake_timeout: float | None = 15.0
    disconnect_timeout: float | None = 15.0
    long_polling_timeout: float = 90.0
    # Limits
    max_connections: int | None = 10_000
    max_message_size: int = 32 * 1024
    max_parallel_invocations: int = 1
    max_streams: int = 100
    stream_buffer_capacity: int = 10
    # Slow clients
    send_buffer_size: int = 256 * 1024
    stateful_reconnect_buffer_size: int = 100_000
    away_buffer_size: int = 2 * 1024 * 1024
    slow_client: SlowClientPolicy = SlowClientPolicy.CLOSE
    slow_client_timeout: float = 10.0
    client_result_timeout: float | None = 30.0
    close_timeout: float = 5.0
    # Errors and protocols
    detailed_errors: bool = False
    protocols: tuple[str, ...] = ("json", "messagepack")

    def __post_init__(self) -> None:
        for name in (
            "keep_alive_interval",
            "client_timeout",
            "handshake_timeout",
            "disconnect_timeout",
            "client_result_timeout",
        ):
            value = getattr(self, name)
            if value is not None:
                _check_seconds(name, value)
        for name in ("slow_client_timeout", "close_timeout", "long_polling_timeout"):
            _check_seconds(name, getattr(self, name))
        for name in (
            "max_message_size",
            "max_parallel_invocations",
            "max_streams",
            "stream_buffer_capacity",
            "send_buffer_size",
            "stateful_reconnect_buffer_size",
            "away_buffer_size",
        ):
            _check_count(name, getattr(self, name))
        if self.away_buffer_size < self.stateful_reconnect_buffer_size:
            raise ValueError(
                f"away_buffer_size ({self.away_buffer_size}) must be at least "
                f"stateful_reconnect_buffer_size ({self.stateful_reconnect_buffer_size})"
            )
        if self.max_connections is not None:
            _check_count("max_connections", self.max_connections)
        if not isinstance(self.slow_client, SlowClientPolicy):
            raise ValueError(f"slow_client must be a SlowClientPolicy, got {self.slow_client!r}")
        if not isinstance(self.detailed_errors, bool):
            raise ValueError(f"detailed_errors must be True or False, got {self.detailed_errors!r}")
        if isinstance(self.protocols, str):
            raise ValueError(f"protocols must be a list of names, not the string {self.protocols!r}")
        protocols = tuple(name.lower() for name in self.protocols)
        unknown = [name for name in protocols if name not in ("json", "messagepack")]
        if unknown or not protocols:
            raise ValueError(f"protocols must name 'json' and/or 'messagepack', got {self.protocols!r}")
        object.__setattr__(self, "protocols", protocols)


def _check_seconds(name: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be a number of seconds greater than 0, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
