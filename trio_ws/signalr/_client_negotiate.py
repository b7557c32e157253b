"""The trio client's negotiate: one ``POST {hub}/negotiate`` over h11, and what its answer means.

Rules of this module:

* The request is what the official JavaScript client sends (TransportProtocols.md):
  ``POST {url}/negotiate?negotiateVersion=1`` (the URL's own query kept),
  ``X-Requested-With: XMLHttpRequest``, a ``User-Agent``, the caller's headers
  and ``Authorization: Bearer`` when there is a token; an empty body.
* The answer is read within bounds: at most ``_MAX_ANSWER`` bytes, and the
  caller's cancel scopes bound the time (this module imposes no timeout).
* A refusal keeps its status (401, 404...) in ``HubClientError.status``;
  ``{"error": ...}`` is the server's refusal in text; ``{"url": ...}`` is a
  redirect, followed by the caller (at most 100 times, as the official
  client does).
* The connection is plain TCP for ``http://``, TLS for ``https://``, and is
  closed after the one exchange.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import h11
import trio

from .._version import __version__

__all__ = ["HubClientError", "NegotiateAnswer", "negotiate", "negotiate_url", "websocket_url"]

_MAX_ANSWER = 1024 * 1024
USER_AGENT = f"trio_ws/{__version__} (SignalR client)"


class HubClientError(Exception):
    """The client could not connect, or lost its connection: the text says why.

    Attributes:
        status: The HTTP status that refused it (401, 404...), or ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NegotiateAnswer:
    """What a negotiate answered: where to connect next, or with which id."""

    redirect: str | None = None
    access_token: str | None = None
    connection_id: str | None = None
    token: str | None = None


def negotiate_url(url: str) -> str:
    """``{url}/negotiate?...&negotiateVersion=1``, keeping the URL's own query."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/negotiate"
    query = f"{parts.query}&negotiateVersion=1" if parts.query else "negotiateVersion=1"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def websocket_url(url: str, token: str | None) -> str:
    """The WebSocket URL for the hub at ``url``: ``ws(s)://``, with ``id=TOKEN`` added to its query."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    query = parts.query
    if token is not None:
        query = f"{query}&id={token}" if query else f"id={token}"
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


async def negotiate(
    url: str, headers: list[tuple[str, str]], ssl_context: ssl.SSLContext | None = None
) -> NegotiateAnswer:
    """Negotiate with the hub at ``url`` (``http://`` or ``https://``).

    Raises:
        HubClientError: the server refused (a status, or ``{"error": ...}``),
            answered something that is not a negotiate answer, or could not
            be reached.
    """
    status, body = await _post(negotiate_url(url), headers, ssl_context)
    if status != 200:
        raise HubClientError(
            f"negotiate with {url} failed: {status} {h11_reason(status)}"
            + (f": {body[:200].decode('utf-8', 'replace')}" if body else ""),
            status=status,
        )
    try:
        answer = json.loads(body)
    except ValueError:
        raise HubClientError(f"negotiate with {url} answered something that is not JSON") from None
    if not isinstance(answer, dict):
        raise HubClientError(f"negotiate with {url} answered {type(answer).__name__}, not an object")
    if isinstance(answer.get("error"), str):
        raise HubClientError(f"negotiate with {url} was refused: {answer['error']}")
    if isinstance(answer.get("url"), str):
        token = answer.get("accessToken")
        return NegotiateAnswer(redirect=answer["url"], access_token=token if isinstance(token, str) else None)
    connection_id = answer.get("connectionId")
    version = answer.get("negotiateVersion", 0)
    token = answer.get("connectionToken") if version else connection_id
    if not isinstance(connection_id, str) or not isinstance(token, str):
        raise HubClientError(f"negotiate with {url} answered no connection id")
    transports = answer.get("availableTransports") or []
    offered = {t.get("transport") for t in transports if isinstance(t, dict)}
    if "WebSockets" not in offered:
        others = ", ".join(map(str, offered)) or "nothing"
        raise HubClientError(f"the hub at {url} does not offer WebSockets (it offers {others})")
    return NegotiateAnswer(connection_id=connection_id, token=token)


def h11_reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def _post(
    url: str, headers: list[tuple[str, str]], ssl_context: ssl.SSLContext | None
) -> tuple[int, bytes]:
    """POST an empty body to ``url``; the status and the body."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        raise HubClientError(f"a hub URL starts with http:// or https://, not {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        if secure:
            stream: trio.abc.Stream = await trio.open_ssl_over_tcp_stream(
                parts.hostname, port, ssl_context=ssl_context or ssl.create_default_context()
            )
        else:
            stream = await trio.open_tcp_stream(parts.hostname, port)
    except OSError as exc:
        raise HubClientError(f"could not reach {parts.netloc}: {exc}") from None
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=target,
        headers=[
            ("Host", parts.netloc),
            ("Content-Length", "0"),
            ("X-Requested-With", "XMLHttpRequest"),
            ("User-Agent", USER_AGENT),
            ("Connection", "close"),
            *headers,
        ],
    )
    try:
        async with stream:
            await stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
            status = 0
            body = bytearray()
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > _MAX_ANSWER:
                        raise HubClientError(f"negotiate with {url} answered more than {_MAX_ANSWER} bytes")
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, bytes(body)
    except (trio.BrokenResourceError, h11.RemoteProtocolError, OSError) as exc:
        raise HubClientError(f"negotiate with {url} failed: {exc}") from None
