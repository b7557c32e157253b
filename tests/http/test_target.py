"""Request targets (``_http/target.py``): split into path segments and query, then decoded."""

from __future__ import annotations

import pytest

from trio_ws._http.target import Target, parse_target


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        (b"/", Target("/", "", ("",))),
        (b"/a%2Fb/c?x=%2F", Target("/a%2Fb/c", "x=%2F", ("a/b", "c"))),
        (b"/app.js%3Fx", Target("/app.js%3Fx", "", ("app.js?x",))),
        (b"/a?", Target("/a", "", ("a",))),
        (b"http://h:1/a?q", Target("/a", "q", ("a",), "h:1")),
        (b"HTTPS://[::1]:8443", Target("/", "", ("",), "[::1]:8443")),
        (b"*", None),
        (b"h:1", None),
        (b"ftp://h/a", None),
        (b"http://u@h/a", None),
        (b"http:///a", None),
        (b"http://[/a", None),
    ],
)
def test_request_targets_are_split_before_they_are_decoded(target: bytes, parsed: Target | None) -> None:
    """Origin and absolute forms split into path segments and query first, then each segment is decoded."""
    assert parse_target(target) == parsed
