"""``printable`` (``_printable.py``): what a peer sent, made safe to log."""

from __future__ import annotations

from trio_ws._printable import printable


def test_printable_escapes_what_is_not_visible_text() -> None:
    """Controls, C1, line separators, bidi overrides, backslashes and stray bytes are escaped; long
    values are cut."""
    assert printable("plain /path?q=1 ok") == "plain /path?q=1 ok"
    assert printable("a\r\n\x1b[2J\x00\\") == "a\\x0d\\x0a\\x1b[2J\\x00\\\\"
    assert (
        printable("\u0085\u009b\u2028\u2029\u202e\U000e0001é✓")
        == "\\x85\\x9b\\u2028\\u2029\\u202e\\U000e0001é✓"
    )
    assert printable(b"caf\xc3\xa9 \xff") == "café \\xff"
    assert printable("x" * 300) == "x" * 200 + "..."
    assert printable("\n" * 300, limit=2) == "\\x0a\\x0a..."
