"""examples/timeouts.py: a soft deadline per message, a hard idle deadline, and cancellation's cleanup."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from websockets.sync.client import connect

import trio_ws
from trio_ws.testing import open_memory_server

from ..helpers import close_of
from .programs import load_example, running_example, stop_with_ctrl_c

timeouts = load_example("timeouts")


def _app() -> tuple[trio_ws.App, trio.Semaphore, Any]:
    workers = trio.Semaphore(2)
    jobs = timeouts.Jobs()
    return timeouts.timeouts_app(workers, jobs, work_deadline=2.0, idle_timeout=10.0), workers, jobs


async def test_work_within_the_deadline_is_done_and_longer_work_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """0.5 s of work is done at 0.5 s; 5 s is given up at 2 s, its worker given back; the connection stays."""
    app, workers, jobs = _app()
    async with open_memory_server(app) as served, served.connect() as ws:
        start = trio.current_time()
        await ws.send_message("0.5")
        assert await ws.get_message() == "done: 0.5 s of work"
        assert trio.current_time() - start == 0.5
        await ws.send_message("5")
        assert await ws.get_message() == "gave up: 5 s of work did not finish within 2 s"
        assert trio.current_time() - start == 2.5
        assert (jobs.running, jobs.finished, jobs.cancelled) == (0, 1, 1)
        assert workers.value == 2  # the cancelled job's `async with` gave its worker back
        await ws.send_message("soon")
        assert await ws.get_message() == "send a number of seconds, such as 0.5 (not 'soon')"
        await ws.send_message("0")
        assert await ws.get_message() == "done: 0 s of work"


async def test_waiting_for_a_worker_counts_against_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With two workers, a third 1.5 s job waits 1.5 s for one, so it can't finish by 2 s and is given up."""
    app, workers, jobs = _app()
    async with (
        open_memory_server(app) as served,
        served.connect() as a,
        served.connect() as b,
        served.connect() as c,
    ):
        for ws in (a, b):
            await ws.send_message("1.5")
        await trio.testing.wait_all_tasks_blocked()  # a and b hold both workers
        assert workers.value == 0
        await c.send_message("1.5")
        assert await a.get_message() == await b.get_message() == "done: 1.5 s of work"
        assert await c.get_message() == "gave up: 1.5 s of work did not finish within 2 s"
        assert trio.current_time() == 2.0
        assert (jobs.finished, jobs.cancelled, workers.value) == (2, 1, 2)


async def test_a_silent_client_is_closed_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """fail_after: ten seconds without a message closes the connection with 1000 "idle for 10 s"."""
    app, _, _ = _app()
    async with open_memory_server(app) as served, served.connect() as ws:
        start = trio.current_time()
        with pytest.raises(trio_ws.ConnectionClosed) as closed:
            await ws.get_message()
        assert close_of(closed.value) == (1000, "idle for 10 s")
        assert trio.current_time() - start == 10.0


def test_timeouts_program_works_and_stops_on_ctrl_c() -> None:
    """python examples/timeouts.py prints its WebSocket URL, does quick work, and exits 0 on SIGINT."""
    with running_example("timeouts") as (proc, url, ws_url):
        assert url == ""  # no page
        with connect(ws_url, open_timeout=10) as ws:
            ws.send("0.01")
            assert ws.recv(timeout=10) == "done: 0.01 s of work"
            stop_with_ctrl_c(proc)
            assert ws.close_code == 1001
