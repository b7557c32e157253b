"""One root for the errors users catch: every public exception derives from trio_ws.TrioWsError."""

from __future__ import annotations

import re
from pathlib import Path

import trio_websocket

import trio_ws
import trio_ws._errors
import trio_ws.signalr
import trio_ws.testing

# Exceptions that are public but not trio_ws's own: trio-websocket's, re-exported for except clauses.
NOT_OURS = {trio_ws.ConnectionClosed}


def public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in (trio_ws, trio_ws.signalr, trio_ws.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException) and value not in NOT_OURS:
                found[name] = value
    return found


def test_every_public_exception_derives_from_the_root() -> None:
    """Each exception in the public __all__ lists is a TrioWsError (the root itself included)."""
    exceptions = public_exceptions()
    assert "TrioWsError" in exceptions and "HubClientError" in exceptions
    strays = sorted(name for name, cls in exceptions.items() if not issubclass(cls, trio_ws.TrioWsError))
    assert not strays, f"public exceptions outside trio_ws.TrioWsError: {strays}"


def test_the_root_module_lists_every_public_exception() -> None:
    """trio_ws._errors draws the whole tree: every public exception appears in it, and nothing else."""
    doc = trio_ws._errors.__doc__ or ""
    drawn = set(re.findall(r"[├└]─ (\w+)", doc)) - {"TrioWsError"}
    assert drawn == set(public_exceptions()) - {"TrioWsError"}


def test_the_root_is_documented_with_every_exception() -> None:
    """Every public exception says when it is raised ("Raised ..." in its docstring)."""
    for name, cls in public_exceptions().items():
        doc = cls.__doc__ or ""
        if cls is trio_ws.TrioWsError:
            continue
        assert "raise" in doc.lower(), f"{name}'s docstring does not say when it is raised"


def test_bases_users_may_rely_on_are_kept() -> None:
    """The root comes beside old bases, not instead of them, and ConnectionClosed stays trio-websocket's."""
    assert issubclass(trio_ws.AppNotFound, ValueError)
    assert issubclass(trio_ws.signalr.ClientResultError, trio_ws.signalr.HubError)
    assert issubclass(trio_ws.signalr.BackplaneError, trio_ws.signalr.HubError)
    assert trio_ws.ConnectionClosed is trio_websocket.ConnectionClosed


def test_except_the_root_catches_a_real_error() -> None:
    """load_app's refusal is caught by `except trio_ws.TrioWsError`, and by `except ValueError` as before."""
    try:
        trio_ws.load_app("no colon here")
    except trio_ws.TrioWsError as exc:
        assert isinstance(exc, trio_ws.AppNotFound)
        assert isinstance(exc, ValueError)
        assert "module:attribute" in str(exc)
    else:
        raise AssertionError("load_app accepted a name without a colon")


def test_the_errors_page_lists_every_public_exception() -> None:
    """docs/reference/errors.md draws the same tree and has a row for each exception."""
    page = (Path(__file__).parent.parent / "docs" / "reference" / "errors.md").read_text()
    drawn = set(re.findall(r"[├└]─ (\w+)", page)) - {"TrioWsError"}
    rows = set(re.findall(r"^\| \[`(\w+)`\]", page, re.MULTILINE))
    assert drawn == rows == set(public_exceptions()) - {"TrioWsError"}
