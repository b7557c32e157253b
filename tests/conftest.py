"""House rules for trio_ws's tests (the way trio-websocket's test module states them).

* Servers bind 127.0.0.1 and port 0; no test talks to anything off this machine.
* Anything about time (keep-alive, timeouts, grace periods) runs over
  ``trio.testing`` memory streams with the ``autojump_clock`` fixture, so it
  takes no real time and never depends on the machine's speed. No test
  sleeps to wait for something to happen.
* Real-socket tests use independent clients (the ``websockets`` library, raw
  h11/wsproto bytes, headless Chromium), and each carries an absolute
  deadline, so a hang fails the test instead of the run.
* Each test says in its docstring the behaviour it pins down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

import trio_ws
import trio_ws.testing

from .helpers import MemoryListener


@pytest.fixture
async def echo_server(nursery: trio.Nursery) -> trio_ws.Server:
    """The echo app on a real socket, stopped (hard) when the test ends."""
    return await trio_ws.testing.start_server(nursery, trio_ws.echo_app())


@pytest.fixture
async def memory_listener() -> AsyncIterator[MemoryListener]:
    listener = MemoryListener()
    yield listener
    await listener.aclose()
