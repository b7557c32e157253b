"""The undocumented parts of trio-websocket that trio_ws still reaches into, one check each.

The server side reaches into nothing: its WebSocket protocol is trio_ws's
own (``trio_ws/_websocket/protocol.py``), and wsproto is used through its
documented handshake API only. What is left is the client of
``trio_ws.testing`` (``trio_ws/_websocket/client.py``), which is
trio-websocket's own client with one fix, no Pong after our Close, made by
overriding its ping handler. ``pyproject.toml`` pins trio-websocket for
that; when a new release is tried, these tests say which of those internals
moved, by name, before anything else fails in a puzzling way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from wsproto import ConnectionType, WSConnection


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


_CLIENT = "trio_ws/_websocket/client.py"


def _trio_websocket_checks() -> dict[str, tuple[str, Callable[[], bool]]]:
    """Each internal of trio-websocket's WebSocketConnection that trio_ws's test client uses."""
    left, _ = trio.testing.memory_stream_pair()
    ws = trio_websocket.WebSocketConnection(
        left,
        WSConnection(ConnectionType.CLIENT),
        host="localhost",
        path="/",
        message_queue_size=1,
        max_message_size=1024,
    )
    cls = trio_websocket.WebSocketConnection
    checks: dict[str, tuple[str, Callable[[], bool]]] = {
        "WebSocketConnection._open_handshake (a trio.Event)": (
            _CLIENT,
            lambda: isinstance(ws._open_handshake, trio.Event),
        ),
        "WebSocketConnection._wsproto (the WSConnection)": (
            _CLIENT,
            lambda: isinstance(ws._wsproto, WSConnection),
        ),
    }
    methods = {"_handle_ping_event": ["self", "event"], "_reader_task": ["self"]}
    for name, parameters in methods.items():
        checks[f"WebSocketConnection.{name}({', '.join(parameters[1:])}) (a coroutine function)"] = (
            _CLIENT,
            partial(_coroutine_method, cls, name, parameters),
        )
    return checks


def _coroutine_method(cls: type, name: str, parameters: list[str]) -> bool:
    method = getattr(cls, name, None)
    return inspect.iscoroutinefunction(method) and _parameters(method) == parameters


def _run_check(package: str, internal: str, where: str, check: Callable[[], bool]) -> None:
    advice = (
        f"{package} {version(package)} changed an internal that trio_ws relies on: {internal}. "
        f"See the list of reaches in {where}, adapt it, and bound {package} in pyproject.toml "
        f"to the versions the suite passes on."
    )
    try:
        held = check()
    except Exception as exc:  # an attribute gone, a signature changed: the message names it
        pytest.fail(f"{advice} ({type(exc).__name__}: {exc})")
    if not held:
        pytest.fail(advice)


# Only the names, at collection: each test builds the live objects it checks, so none stays alive.
TRIO_WEBSOCKET_INTERNALS = list(_trio_websocket_checks())


@pytest.mark.parametrize("internal", TRIO_WEBSOCKET_INTERNALS)
def test_trio_websocket_internal(internal: str) -> None:
    """Each internal of trio-websocket's WebSocketConnection that trio_ws uses is there, as expected."""
    where, check = _trio_websocket_checks()[internal]
    _run_check("trio-websocket", internal, where, check)
