"""Making a peer's bytes safe to print: one helper for every log line and error body.

Anything a peer sends (a request target, a header, a close reason) may hold
characters that a log viewer or a terminal acts on: CR and LF forge a new
line, NEL (U+0085) and LINE SEPARATOR (U+2028) do the same in viewers that
split on them, ESC and CSI (U+009B) reach a terminal as commands, and bidi
overrides (U+202E) make text read backwards. Rules of this module:

* Every value from a peer goes through :func:`printable` before it is
  logged or echoed in an error body, however harmless its source looks.
* Every character that is not visible text is escaped as ``\\xNN``,
  ``\\uNNNN`` or ``\\UNNNNNNNN`` (Unicode categories Cc, Cf, Cs, Co, Cn, Zl,
  Zp), and so is the backslash itself, so an escape in the output always
  came from us and the original can be read back. Bytes are decoded as
  UTF-8; bytes that are not UTF-8 are escaped as ``\\xNN``.
* The result is bounded: at most ``limit`` characters of the value are
  kept, then ``...``.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

LIMIT = 200
# Categories of characters that are not visible text: controls (C0, DEL, C1), format
# characters (bidi overrides, zero-width joiners), surrogates, private use,
# unassigned, and the line and paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(value: str | bytes, limit: int = LIMIT) -> str:
    """``value`` with every invisible character escaped, cut to ``limit`` characters plus ``...``."""
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
    cut = len(text) > limit
    text = text[:limit]
    if text.isascii() and text.isprintable() and "\\" not in text:
        escaped = text  # the common case: nothing to escape
    else:
        escaped = "".join(_escape(c) for c in text)
    return escaped + "..." if cut else escaped


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, from surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(char) not in _INVISIBLE:
        return char
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
