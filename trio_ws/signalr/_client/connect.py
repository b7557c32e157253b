"""The trio client's connections: open one (negotiate, a transport, the handshake) and resume one.

``HubClient`` (``_client/client.py``) lives across connections; each connection is
a ``ClientConnection``, made here. Rules of this module:

* Negotiate follows redirects (at most 100), then the transports negotiate
  lists are tried in the hub's order, leaving out those the settings do not
  allow and those that cannot carry the protocol's transfer format
  (MessagePack over Server-Sent Events). A transport that fails to start
  spent its connection: the next one gets a new negotiate, as the official
  client does. When none starts, the error names what each answered.
* The handshake is version 2 when the hub granted stateful reconnect on a
  WebSocket (the only transport that carries it), else 1; its answer is
  awaited for at most ``server_timeout``. A transport whose handshake fails
  is closed before the error leaves.
* ``ClientConnection.send`` numbers and keeps every trackable message under
  stateful reconnect (``Replay``: sending waits while the buffer is full),
  and takes the send lock, so messages go out, and are numbered, in one
  order. ``resume`` holds that lock while it opens the new WebSocket and
  sends Sequence and the replay, so nothing overtakes them.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

import trio

from ..._printable import printable
from .._protocol import HubProtocol
from .._protocol.framing import TextFramer
from .._protocol.handshake import encode_request, parse_response
from .._protocol.messages import HubMessage, Invocation, TransferFormat, is_trackable
from .._transports.negotiate import HttpTransportType
from .._transports.replay import Replay
from .negotiate import USER_AGENT, HubClientError, NegotiateAnswer, negotiate
from .transports import (
    ClientTransport,
    LongPollingClientTransport,
    ServerSentEventsClientTransport,
    open_websocket,
)

__all__ = [
    "CALLS_QUEUED",
    "ClientConnection",
    "ClientSettings",
    "allowed_transports",
    "open_connection",
    "resume",
]

logger = logging.getLogger("trio_ws.signalr.client")

CALLS_QUEUED = 16  # the hub's calls waiting for the handler task
_MAX_REDIRECTS = 100


@dataclass(frozen=True)
class ClientSettings:
    """What every connection of one client is opened with (``open_hub_client``'s arguments)."""

    url: str
    protocol: HubProtocol
    access_token: str | Callable[[], Awaitable[str]] | None
    headers: tuple[tuple[str, str], ...]
    skip_negotiation: bool
    transports: tuple[HttpTransportType, ...]
    keep_alive_interval: float
    server_timeout: float
    max_message_size: int
    ssl_context: ssl.SSLContext | None
    stateful_reconnect: bool
    buffer_size: int


class ClientConnection:
    """One connection: its transport (swapped under stateful reconnect), protocol, nursery and books."""

    def __init__(
        self,
        transport: ClientTransport,
        protocol: HubProtocol,
        nursery: trio.Nursery,
        *,
        url: str,
        token: str | None,
        headers: list[tuple[str, str]],
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.nursery = nursery
        self.url = url
        self.token = token  # the ?id= of every transport request (a new WebSocket reuses it)
        self.headers = headers
        self.last_sent = trio.current_time()
        self.connection_id: str | None = None
        self.rest = b""  # what came after the handshake's answer: the first messages
        self.replay: Replay | None = None  # stateful reconnect's books, when the hub granted it
        self.send_lock = trio.Lock()  # messages go out (and are numbered) in one order
        self.ack_wanted = trio.Event()  # stateful: new messages arrived since the last Ack
        self.calls, self.calls_waiting = trio.open_memory_channel[Invocation](CALLS_QUEUED)

    async def send(self, message: HubMessage) -> None:
        """Send one message; under stateful reconnect, number it and keep it until the hub's Ack.

        A full replay buffer makes the sender wait (backpressure). A kept
        message whose transport fails is not an error here: the next
        transport sends it again, or the connection's end fails its caller.
        """
        data = self.protocol.encode(message)
        replay = self.replay
        if replay is not None and is_trackable(message):
            await replay.wait_for_room()
            async with self.send_lock:
                replay.record(data)
                with suppress(HubClientError):
                    await self.transport.send(data)
        else:
            async with self.send_lock:
                await self.transport.send(data)
        self.last_sent = trio.current_time()

    async def send_raw(self, data: bytes) -> None:
        """Send what is never numbered nor kept (Ping, Ack); a lost transport is the reader's to notice."""
        with suppress(HubClientError):
            async with self.send_lock:
                await self.transport.send(data)


async def _token(settings: ClientSettings) -> str | None:
    token = settings.access_token
    if token is None or isinstance(token, str):
        return token
    return await token()


async def _negotiate(settings: ClientSettings) -> tuple[str, str | None, NegotiateAnswer]:
    """Negotiate, following redirects: the hub's URL, the access token, and the answer."""
    url, token = settings.url, await _token(settings)
    for _ in range(_MAX_REDIRECTS):
        answer = await negotiate(
            url,
            _http_headers(settings, token),
            settings.ssl_context,
            stateful_reconnect=settings.stateful_reconnect,
        )
        if answer.redirect is None:
            return url, token, answer
        url, token = answer.redirect, answer.access_token or token
    raise HubClientError(f"negotiate was redirected more than {_MAX_REDIRECTS} times")


async def open_connection(settings: ClientSettings, nursery: trio.Nursery) -> ClientConnection:
    """Negotiate, open the first transport that works and shake hands.

    The transports are tried in the order the hub lists them, leaving out
    those not asked for (``transport=``) and those that cannot carry the
    protocol (MessagePack over Server-Sent Events). A transport that fails
    to start spent its connection, so the next one gets a new negotiate,
    as the official client does.
    """
    if settings.skip_negotiation:
        token = await _token(settings)
        headers = _http_headers(settings, token)
        transport = await _start(settings, HttpTransportType.WEBSOCKETS, nursery, settings.url, None, headers)
        connection = ClientConnection(
            transport, settings.protocol, nursery, url=settings.url, token=None, headers=headers
        )
        return await _handshake(settings, connection, stateful=False)
    url, token, answer = await _negotiate(settings)
    offered = answer.transports
    wanted_format = settings.protocol.transfer_format.value
    failures: list[HubClientError] = []
    for name, formats in offered:
        kind = _TRANSPORTS_BY_NAME.get(name)
        if kind is None or kind not in settings.transports or wanted_format not in formats:
            continue
        if failures:
            url, token, answer = await _negotiate(settings)
        headers = _http_headers(settings, token)
        try:
            transport = await _start(settings, kind, nursery, url, answer.token, headers)
        except HubClientError as exc:
            logger.info(
                "hub client: %s could not start (%s); trying the next transport", name, printable(str(exc))
            )
            failures.append(HubClientError(f"{name}: {exc}", status=exc.status))
            continue
        connection = ClientConnection(
            transport, settings.protocol, nursery, url=url, token=answer.token, headers=headers
        )
        connection.connection_id = answer.connection_id
        stateful = answer.stateful_reconnect and kind is HttpTransportType.WEBSOCKETS
        return await _handshake(settings, connection, stateful=stateful)
    if failures:
        statuses = [failure.status for failure in failures if failure.status is not None]
        raise HubClientError(
            f"no transport could connect to {url}: " + "; ".join(map(str, failures)),
            status=statuses[0] if statuses else None,
        )
    names = ", ".join(f"{name} ({'/'.join(formats)})" for name, formats in offered) or "nothing"
    asked = ", ".join(kind.value for kind in settings.transports)
    raise HubClientError(
        f"the hub at {url} offers {names}; the client asked for {asked} "
        f"with the {wanted_format} transfer format ({settings.protocol.name})"
    )


async def _start(
    settings: ClientSettings,
    kind: HttpTransportType,
    nursery: trio.Nursery,
    url: str,
    token: str | None,
    headers: list[tuple[str, str]],
) -> ClientTransport:
    """Open one transport to the connection ``token`` (``None``: a WebSocket without negotiate)."""
    binary = settings.protocol.transfer_format is TransferFormat.BINARY
    if kind is HttpTransportType.WEBSOCKETS:
        return await open_websocket(
            nursery,
            url,
            token,
            headers,
            binary=binary,
            max_message_size=settings.max_message_size,
            ssl_context=settings.ssl_context,
        )
    assert token is not None
    if kind is HttpTransportType.SERVER_SENT_EVENTS:
        return await ServerSentEventsClientTransport.open(
            url, token, headers, max_message_size=settings.max_message_size, ssl_context=settings.ssl_context
        )
    return await LongPollingClientTransport.open(
        nursery,
        url,
        token,
        headers,
        binary=binary,
        max_message_size=settings.max_message_size,
        ssl_context=settings.ssl_context,
    )


async def _handshake(
    settings: ClientSettings, connection: ClientConnection, *, stateful: bool
) -> ClientConnection:
    """Shake hands (version 2 asks for stateful reconnect); the transport is closed if it fails."""
    try:
        await connection.transport.send(encode_request(settings.protocol.name, 2 if stateful else 1))
        framer = TextFramer(settings.max_message_size)
        with trio.move_on_after(settings.server_timeout) as waiting:
            while (record := framer.next_record()) is None:
                framer.receive_data(await connection.transport.receive())
        if waiting.cancelled_caught:
            raise HubClientError(f"the hub did not answer the handshake within {settings.server_timeout} s")
        assert record is not None
        refusal = parse_response(record)
        if refusal is not None:
            raise HubClientError(f"the hub refused the handshake: {refusal}")
    except BaseException:
        with trio.CancelScope(shield=True):
            await connection.transport.aclose()
        raise
    connection.rest = framer.take_rest()
    if stateful:
        connection.replay = Replay(settings.buffer_size)
    return connection


def _http_headers(settings: ClientSettings, token: str | None) -> list[tuple[str, str]]:
    headers = [(name, value) for name, value in settings.headers if name.lower() != "user-agent"]
    user_agents = [value for name, value in settings.headers if name.lower() == "user-agent"]
    headers.append(("User-Agent", user_agents[0] if user_agents else USER_AGENT))
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    return headers


async def resume(
    settings: ClientSettings, connection: ClientConnection, replay: Replay, lost: HubClientError
) -> HubClientError | None:
    """Stateful reconnect: one new WebSocket to the same token, then Sequence and every unacked message.

    Sending waits meanwhile (the send lock), so nothing overtakes the
    replay. Returns why the connection is lost for good when the hub no
    longer has it (404: it was away longer than the disconnect timeout)
    or cannot be reached; ``None`` once resumed.
    """
    logger.info("hub client: %s; reconnecting to the same connection", printable(str(lost)))
    with trio.CancelScope(shield=True):
        await connection.transport.aclose()
    async with connection.send_lock:
        try:
            with trio.fail_after(settings.server_timeout):
                transport = await _start(
                    settings,
                    HttpTransportType.WEBSOCKETS,
                    connection.nursery,
                    connection.url,
                    connection.token,
                    connection.headers,
                )
        except (HubClientError, trio.TooSlowError) as exc:
            logger.info("hub client: the connection could not be resumed: %s", printable(str(exc)))
            status = exc.status if isinstance(exc, HubClientError) else None
            if status == 404:
                return HubClientError(
                    f"{lost}; the hub no longer has the connection (404): the client was away "
                    "longer than the hub's disconnect timeout",
                    status=404,
                )
            return HubClientError(f"{lost}; resuming the connection failed: {exc}", status=status)
        connection.transport = transport
        replay.reconnected()
        sequence, messages = replay.replay()
        with suppress(HubClientError):  # lost again: the reader finds out, and tries again
            await transport.send(connection.protocol.encode(sequence))
            for data in messages:
                await transport.send(data)
        connection.last_sent = trio.current_time()
    return None


_TRANSPORTS_BY_NAME = {kind.value: kind for kind in HttpTransportType}


def allowed_transports(
    transport: HttpTransportType | Iterable[HttpTransportType] | None,
) -> tuple[HttpTransportType, ...]:
    if transport is None:
        return tuple(HttpTransportType)
    chosen = (transport,) if isinstance(transport, HttpTransportType) else tuple(transport)
    if not chosen or not all(isinstance(kind, HttpTransportType) for kind in chosen):
        raise ValueError(f"transport must be an HttpTransportType or several, got {transport!r}")
    return chosen
