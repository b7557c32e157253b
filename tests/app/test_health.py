"""The health check: 200 while every check passes, 503 while one fails or the server shuts down."""

from __future__ import annotations

import logging

import pytest
import trio

import trio_ws

from ..helpers import MemoryListener, start_memory_server
from ..raw import parse_response, read_response

_GET = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _health(listener: MemoryListener) -> tuple[int, bytes]:
    stream = await listener.connect()
    async with stream:
        await stream.send_all(_GET)
        status, _, body = parse_response(await read_response(stream))
    return status, body


async def test_without_checks_the_answer_is_ok(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """An app with no checks answers 200 "ok", as it always did."""
    await start_memory_server(nursery, trio_ws.App(), memory_listener)
    assert await _health(memory_listener) == (200, b"ok\n")


async def test_a_failing_check_answers_503_until_it_passes(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Each check is reported on its own line; while any fails the answer is 503 "unhealthy"."""
    state = {"up": False}
    app = trio_ws.App()
    app.add_health_check("disk", lambda: trio_ws.Health(True, "12 GiB free"))
    app.add_health_check(
        "backplane", lambda: trio_ws.Health(state["up"], "connected" if state["up"] else "unreachable\n")
    )
    await start_memory_server(nursery, app, memory_listener)
    assert await _health(memory_listener) == (
        503,
        b"unhealthy\ndisk: 12 GiB free\nbackplane: unreachable\\x0a\n",  # a detail is escaped onto its line
    )
    state["up"] = True
    assert await _health(memory_listener) == (200, b"ok\ndisk: 12 GiB free\nbackplane: connected\n")
    app.remove_health_check("disk")
    assert await _health(memory_listener) == (200, b"ok\nbackplane: connected\n")


async def test_a_check_that_raises_counts_as_failing(
    nursery: trio.Nursery, memory_listener: MemoryListener, caplog: pytest.LogCaptureFixture
) -> None:
    """A check that raises is a bug in it: 503, and the error is logged with its traceback."""

    def broken() -> trio_ws.Health:
        raise KeyError("oops")

    app = trio_ws.App()
    app.add_health_check("cache", broken)
    await start_memory_server(nursery, app, memory_listener)
    assert await _health(memory_listener) == (503, b"unhealthy\ncache: the check raised KeyError\n")
    [record] = [r for r in caplog.records if r.name == "trio_ws.health"]
    assert record.levelno == logging.ERROR and record.exc_info is not None


async def test_shutting_down_answers_503_whatever_the_checks(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """While the server shuts down, the health check answers 503 "shutting down"."""
    app = trio_ws.App()
    app.add_health_check("disk", lambda: trio_ws.Health(True))
    server = await start_memory_server(nursery, app, memory_listener)
    stream = await memory_listener.connect()  # open before the shutdown, so it is still served
    async with trio.open_nursery() as closing:
        closing.start_soon(server.aclose)
        await trio.testing.wait_all_tasks_blocked()
        async with stream:
            await stream.send_all(_GET)
            status, _, body = parse_response(await read_response(stream))
    assert (status, body) == (503, b"shutting down\n")
