"""The request target (RFC 9112 section 3.2): which path, which query, and which host, if it says.

Rules of this module:

* Pure: bytes in, a :class:`Target` out; no I/O.
* The query is split off *before* anything is percent-decoded, so a decoded
  ``%3F`` never starts a query (``/app.js%3Fx`` is the path ``/app.js?x``).
* The path is split into segments at its literal ``/`` and each segment is
  decoded on its own, so a decoded ``%2F`` never becomes a separator
  (RFC 3986 section 2.2): ``/a%2Fb`` is the one segment ``a/b``, not the
  path ``/a/b``. Routing compares segments, never the decoded string.
* Two forms are accepted: the origin form (``/path?query``) and the absolute
  form (``http://host/path?query``), which RFC 9112 section 3.2.2 says a
  server must accept; its host then stands in for the ``Host`` header.
  Anything else is not a target this server serves (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["Target", "parse_target", "path_segments"]


@dataclass(frozen=True, slots=True)
class Target:
    """A request target taken apart."""

    raw_path: str
    """The path as sent, still percent-encoded, without the query."""
    query: str
    """The query string as sent (after ``?``, still percent-encoded), or ``""``."""
    segments: tuple[str, ...]
    """The path's segments, each percent-decoded: ``/a%20b/c`` is ``("a b", "c")``."""
    authority: str | None = None
    """The host (and port) of an absolute-form target, which replaces the ``Host`` header."""

    @property
    def path(self) -> str:
        """The decoded path, for display: a segment holding ``/`` (from ``%2F``) looks like two here."""
        return "/" + "/".join(self.segments)


def parse_target(target: bytes) -> Target | None:
    """Take a request target apart, or return ``None`` if it is neither origin nor absolute form.

    h11 has already checked that ``target`` is visible ASCII.
    """
    text = target.decode("ascii", "replace")
    authority = None
    if not text.startswith("/"):
        scheme = text.partition(":")[0].lower()
        if scheme not in ("http", "https") or not text[len(scheme) :].startswith("://"):
            return None
        try:
            parts = urlsplit(text)
        except ValueError:  # a malformed authority, such as an unclosed IPv6 bracket
            return None
        if not parts.netloc or "@" in parts.netloc:  # userinfo is not allowed in a request (RFC 9110 4.2.4)
            return None
        authority = parts.netloc
        text = (parts.path or "/") + (f"?{parts.query}" if parts.query or text.endswith("?") else "")
    raw_path, _, query = text.partition("?")
    return Target(raw_path, query, path_segments(raw_path), authority)


def path_segments(raw_path: str) -> tuple[str, ...]:
    """The segments of a percent-encoded path, each decoded: ``/a%2Fb/c`` is ``("a/b", "c")``."""
    return tuple(unquote(segment) for segment in raw_path[1:].split("/"))
