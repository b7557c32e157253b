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
* ``availableTransports`` is kept in the server's order, each with its
  transfer formats: the client tries them in that order.
* ``useStatefulReconnect=true`` is asked only when the caller wants stateful
  reconnect; the answer's ``useStatefulReconnect`` says whether it got it.
* The connection is plain TCP for ``http://``, TLS for ``https://``, and is
  closed after the one exchange.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .http import USER_AGENT, HttpChannel, HubClientError

__all__ = [
    "USER_AGENT",
    "HubClientError",
    "NegotiateAnswer",
    "negotiate",
    "negotiate_url",
    "transport_url",
    "websocket_url",
]

_MAX_ANSWER = 1024 * 1024


@dataclass(frozen=True)
class NegotiateAnswer:
    """What a negotiate answered: where to connect next, or with which id."""

    redirect: str | None = None
    access_token: str | None = None
    connection_id: str | None = None
    token: str | None = None
    transports: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """The transports offered, in the server's order, each with its transfer formats."""
    stateful_reconnect: bool = False


def negotiate_url(url: str, *, stateful_reconnect: bool = False) -> str:
    """``{url}/negotiate?...&negotiateVersion=1``, keeping the URL's own query."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/negotiate"
    ask = "negotiateVersion=1" + ("&useStatefulReconnect=true" if stateful_reconnect else "")
    query = f"{parts.query}&{ask}" if parts.query else ask
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def transport_url(url: str, token: str | None) -> str:
    """The hub's ``url`` with ``id=TOKEN`` added to its query (every transport request has it)."""
    parts = urlsplit(url)
    query = parts.query
    if token is not None:
        query = f"{query}&id={token}" if query else f"id={token}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def websocket_url(url: str, token: str | None) -> str:
    """The WebSocket URL for the hub at ``url``: ``ws(s)://``, with ``id=TOKEN`` added to its query."""
    parts = urlsplit(transport_url(url, token))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


async def negotiate(
    url: str,
    headers: list[tuple[str, str]],
    ssl_context: ssl.SSLContext | None = None,
    *,
    stateful_reconnect: bool = False,
) -> NegotiateAnswer:
    """Negotiate with the hub at ``url`` (``http://`` or ``https://``).

    Raises:
        HubClientError: the server refused (a status, or ``{"error": ...}``),
            answered something that is not a negotiate answer, or could not
            be reached.
    """
    target = urlsplit(negotiate_url(url, stateful_reconnect=stateful_reconnect))
    channel = HttpChannel(url, ssl_context)
    try:
        status, body = await channel.request(
            "POST",
            f"{target.path}?{target.query}",
            [("X-Requested-With", "XMLHttpRequest"), ("Connection", "close"), *headers],
            max_body=_MAX_ANSWER,
        )
    finally:
        await channel.aclose()
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
    transports = answer.get("availableTransports")
    offered = tuple(
        (str(t["transport"]), tuple(str(f) for f in t.get("transferFormats") or ()))
        for t in (transports if isinstance(transports, list) else ())
        if isinstance(t, dict) and "transport" in t
    )
    return NegotiateAnswer(
        connection_id=connection_id,
        token=token,
        transports=offered,
        stateful_reconnect=answer.get("useStatefulReconnect") is True,
    )


def h11_reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
