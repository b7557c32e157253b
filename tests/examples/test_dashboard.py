"""examples/dashboard.py: a producer task pushes figures to every subscribed page."""

from __future__ import annotations

import json
import urllib.request

import trio
import trio.testing
from websockets.sync.client import connect

import trio_ws
from trio_ws.testing import open_memory_server

from .programs import load_example, running_example, stop_with_ctrl_c

dashboard = load_example("dashboard")


async def figures(page: trio_ws.WebSocketConnection) -> dict[str, float]:
    received: dict[str, float] = json.loads(await page.get_message())
    return received


async def test_subscribers_get_figures_every_second(autojump_clock: trio.testing.MockClock) -> None:
    """Each tick brings the time, the open connections and the messages per second the pages sent."""
    hub = dashboard.Hub()
    async with open_memory_server(dashboard.dashboard_app(hub)) as served, trio.open_nursery() as producer:
        producer.start_soon(dashboard.produce, served.server, hub)
        async with served.connect() as page:
            assert await figures(page) == {
                "time": 1.0,
                "connections": 1,
                "messages_per_second": 0.0,
                "messages": 0,
            }
            for n in range(5):
                await page.send_message(f"click {n}")
            assert await figures(page) == {
                "time": 2.0,
                "connections": 1,
                "messages_per_second": 5.0,
                "messages": 5,
            }
            async with served.connect() as second:
                assert await figures(second) == {
                    "time": 3.0,
                    "connections": 2,
                    "messages_per_second": 0.0,
                    "messages": 5,
                }
                assert (await figures(page))["connections"] == 2
            # The second page has gone: its handler ended, and so did its subscription.
            assert await figures(page) == {
                "time": 4.0,
                "connections": 1,
                "messages_per_second": 0.0,
                "messages": 5,
            }
        producer.cancel_scope.cancel()


async def test_a_slow_page_misses_figures_but_holds_up_nobody(autojump_clock: trio.testing.MockClock) -> None:
    """A page that stops reading skips figures; the others get every tick, on time."""
    hub = dashboard.Hub()
    async with open_memory_server(dashboard.dashboard_app(hub)) as served, trio.open_nursery() as producer:
        producer.start_soon(dashboard.produce, served.server, hub)
        async with (
            served.connect() as page,
            served.connect(stream_pair=trio.testing.lockstep_stream_pair) as slow,
        ):
            for tick in range(1, 11):
                assert await figures(page) == {
                    "time": float(tick),
                    "connections": 2,
                    "messages_per_second": 0.0,
                    "messages": 0,
                }
                assert trio.current_time() == tick  # on schedule, though slow reads nothing
            times = [(await figures(slow))["time"]]
            while times[-1] <= 10:
                times.append((await figures(slow))["time"])
            assert times == sorted(times) and times[0] == 1.0
            assert len(times) < 10, "the slow page should have missed some figures"
        producer.cancel_scope.cancel()


def test_dashboard_program_pushes_figures_and_stops_on_ctrl_c() -> None:
    """python examples/dashboard.py prints its URLs, serves its page, pushes figures, exits 0 on SIGINT."""
    with running_example("dashboard", "--period", "0.05") as (proc, url, ws_url):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert '<script src="/static/dashboard.js"' in response.read().decode()
        with urllib.request.urlopen(url + "static/dashboard.js", timeout=10) as response:
            assert "getContext" in response.read().decode()
        with connect(ws_url, open_timeout=10) as ws:
            ws.send("one")
            seen = json.loads(ws.recv(timeout=10))
            while seen["messages"] < 1:
                seen = json.loads(ws.recv(timeout=10))
            assert seen["connections"] == 1
            stop_with_ctrl_c(proc)
            assert ws.close_code == 1001
