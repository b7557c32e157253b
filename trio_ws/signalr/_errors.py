"""The hubs' errors, why a connection ended, and the error texts clients see.

::

    Exception
    ├─ TrioWsError            the root of trio_ws's errors (trio_ws._errors)
    │  └─ HubError               raise it in a hub method: its text reaches the caller
    │     ├─ ClientResultError   a client result did not come (error, timeout, client gone)
    │     └─ BackplaneError      the backplane cannot do it now (Redis out of reach, a worker silent)
    └─ ProtocolError          (internal) the peer broke the hub protocol

Rules of this module:

* A caller sees why a call failed only when the hub allows it: always for a
  ``HubError``, otherwise only with ``detailed_errors`` on. That is
  ASP.NET's rule, and the error texts are ASP.NET's, because clients and
  their tests compare them (``"An unexpected error occurred invoking 'X' on
  the server."``).
* In a detailed text an exception is named by its class name, except that
  ``HubError`` itself is named ``HubException``, as the official clients
  expect. A subclass is named by its own name.
"""

from __future__ import annotations

import enum

from .._errors import TrioWsError

__all__ = [
    "NOT_STREAMING_STREAMED",
    "NO_METHOD",
    "STREAMING_INVOKED",
    "STREAM_ERROR",
    "BackplaneError",
    "ClientResultError",
    "DisconnectReason",
    "HubError",
    "InvalidData",
    "error_text",
    "unexpected_error",
    "wire_name",
]

# ASP.NET's texts for a call that cannot run, or a stream that failed.
NO_METHOD = "Failed to invoke '{}' due to an error on the server. HubException: Method does not exist."
STREAMING_INVOKED = (
    "The client attempted to invoke the streaming '{}' method with a non-streaming invocation."
)
NOT_STREAMING_STREAMED = (
    "The client attempted to invoke the non-streaming '{}' method with a streaming invocation."
)
STREAM_ERROR = "An error occurred on the server while streaming results."


class HubError(TrioWsError):
    """An error meant for the caller: its message is sent even without detailed errors.

    Raise it in a hub method to refuse a call with a reason the client may
    read (``raise HubError("room is full")``). The caller sees ``"An
    unexpected error occurred invoking 'Join' on the server. HubException:
    room is full"``. Nothing is logged: this is an answer, not a failure.
    """

    signalr_name = "HubException"


class ClientResultError(HubError):
    """A client result could not be had: the client answered with an error, took
    too long, or left.

    Raised by ``await self.clients.client(id).invoke(...)`` (or
    ``clients.caller.invoke``) when no result comes within
    ``HubOptions.client_result_timeout``, the client answers with an error,
    or its connection ends first.

    Attributes:
        connection_id: The connection that was asked.
        method: The client method that was invoked.
        reason: What went wrong, e.g. ``"Client didn't provide a result."`` (a
            client without a handler for ``method``), the client's own error
            text, ``"timed out after 30 s"`` or ``"the connection closed"``.
    """

    def __init__(self, connection_id: str, method: str, reason: str) -> None:
        super().__init__(connection_id, method, reason)
        self.connection_id = connection_id
        self.method = method
        self.reason = reason

    def __str__(self) -> str:
        return f"client result of '{self.method}' from connection {self.connection_id}: {self.reason}"


class BackplaneError(HubError):
    """The backplane cannot do this now: Redis is out of reach, or another worker did not answer.

    It is a ``HubError``, so a hub method that lets it escape answers its
    caller with the reason (``HubException: the backplane ...``), and no
    traceback is logged: an outage is not a bug in the hub. The backplane
    logs the outage itself, once.

    Raised by the hub's groups, users and sends while the backplane's link is
    down: ``groups.members``/``count`` and group changes or client results
    for another worker's clients at once, and a send once the bounded
    buffer of sends waiting for Redis is full.
    """


class DisconnectReason(enum.Enum):
    """Why a hub connection ended, as ``Hub.on_disconnected`` learns it."""

    CLIENT_CLOSED = "client closed"
    """The client said goodbye: a Close message, or its transport closed cleanly."""
    TIMED_OUT = "timed out"
    """Nothing came from the client for ``client_timeout`` seconds after its first Ping."""
    TRANSPORT_FAILED = "transport failed"
    """The transport broke (a reset socket, a WebSocket closed without a close frame)."""
    SERVER_SHUTDOWN = "server shut down"
    """The hub server is closing; the client was told it may reconnect."""
    TOO_SLOW = "too slow"
    """The client did not read its messages fast enough (see ``HubOptions.slow_client``)."""
    PROTOCOL_ERROR = "protocol error"
    """The client sent something the hub protocol does not allow, or a message too large."""
    ABORTED = "aborted"
    """The server's own code closed the connection with ``context.abort()``."""


def wire_name(exc: BaseException) -> str:
    """The exception's name in a detailed error text (``HubError`` is ``HubException``)."""
    return type(exc).__dict__.get("signalr_name", type(exc).__name__)  # type: ignore[no-any-return]


def error_text(prefix: str, exc: BaseException, *, detailed: bool) -> str:
    """``prefix``, plus ``" Type: message"`` when the peer may see the details."""
    if detailed or isinstance(exc, HubError):
        return f"{prefix} {wire_name(exc)}: {exc}"
    return prefix


def unexpected_error(target: str) -> str:
    """ASP.NET's text for a call that failed, before what the caller may see of why."""
    return f"An unexpected error occurred invoking '{target}' on the server."


class InvalidData(Exception):
    """A binding failure, named as ASP.NET names it in a detailed error."""

    signalr_name = "InvalidDataException"
