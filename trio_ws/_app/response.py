"""What an HTTP handler answers with: :class:`Response`, whole or streamed.

Rules of this module:

* Pure data: a ``Response`` says what to send; ``_http/connection.py`` sends it.
* A body is either ``bytes`` (sent with ``Content-Length``) or an async
  iterable of ``bytes`` (sent chunked, each chunk as soon as it is produced,
  so a chunk is a flush). A streamed body may wait as long as it likes
  before its first chunk (a long poll) or between chunks (Server-Sent
  Events); when the client goes away it is cancelled, and ``aclose()`` is
  called on it if it has one (async generators do).
* Helpers build the common answers, so every refusal says the same thing the
  same way: :meth:`Response.text`, :meth:`Response.json`,
  :meth:`Response.empty` and :meth:`Response.unauthorized`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass

__all__ = ["Response"]


@dataclass(frozen=True)
class Response:
    """An HTTP response.

    Attributes:
        status: The status code.
        body: The whole body as ``bytes``, or an async iterable of ``bytes``
            chunks, each sent as soon as it comes (``Transfer-Encoding: chunked``).
        content_type: The ``Content-Type``; ``None`` sends none (for 204, say).
        headers: More headers as ``(name, value)`` strings. ``Connection``
            tokens are added to the server's own; ``Content-Length`` and
            ``Transfer-Encoding`` are the server's to set.
    """

    status: int
    body: bytes | AsyncIterable[bytes] = b""
    content_type: str | None = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 200 <= self.status <= 599:
            raise ValueError(
                f"a response status must be from 200 to 599, got {self.status!r} "
                "(the server sends 1xx answers itself)"
            )

    @property
    def streamed(self) -> bool:
        """Whether the body is an async iterable, sent chunk by chunk."""
        return not isinstance(self.body, bytes)

    @classmethod
    def text(cls, status: int, text: str, *, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """A plain-text response; a newline is added so ``curl`` output ends cleanly."""
        return cls(status, (text + "\n").encode(), headers=tuple(headers))

    @classmethod
    def json(cls, status: int, value: object, *, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """``value`` as compact JSON (``application/json``)."""
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(status, body, "application/json", tuple(headers))

    @classmethod
    def empty(cls, status: int = 204, *, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """A response with no body and no ``Content-Type`` (204 No Content by default)."""
        return cls(status, b"", None, tuple(headers))

    @classmethod
    def unauthorized(
        cls,
        *,
        scheme: str = "Bearer",
        realm: str = "trio_ws",
        error: str | None = None,
        text: str = "Unauthorized: this needs credentials",
    ) -> Response:
        """401 with the ``WWW-Authenticate`` challenge RFC 9110 section 11.6.1 requires.

        Args:
            scheme: The authentication scheme the client should use.
            realm: The protection space, shown by some clients.
            error: For Bearer, RFC 6750's error code, such as ``"invalid_token"``.
            text: The plain-text body.
        """
        challenge = f'{scheme} realm="{_quoted(realm)}"'
        if error is not None:
            challenge += f', error="{_quoted(error)}"'
        return cls.text(401, text, headers=[("www-authenticate", challenge)])


def _quoted(value: str) -> str:
    """``value`` as the inside of an HTTP quoted-string (RFC 9110 section 5.6.4)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
