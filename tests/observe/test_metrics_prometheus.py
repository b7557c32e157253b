"""A real Prometheus server scrapes the conformance hub on two workers, under load, and is asked
through its HTTP API what it saw.

``python -m trio_ws examples.signalr.testhub:app --workers 2 --backplane redis://... --metrics``
runs as a user runs it; Debian's ``prometheus`` scrapes its one port twice a second. Each scrape
reaches whichever worker accepts it, so the totals Prometheus stores are right only if every
worker answers for all of them: that is what is checked, against the counts the clients made.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from ..processes import RunningWorkers, running_workers
from ..signalr.helpers import WebSocketHubClient, open_hub_websocket
from ..signalr.redis_helpers import RedisServer, free_port, redis, redis_server
from .test_grafana_dashboard import dashboard, expressions, runnable

__all__ = ["redis", "redis_server"]  # fixtures, imported for pytest

DEADLINE = 18
CLIENTS = 8
MOST_CLIENTS = 40  # if every one of these lands on one worker, the other is not accepting
CALLS = 25
_databases = itertools.count(15, -1)  # Redis has 16 databases; test_scale_out.py counts up from 1


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        reason = "prometheus is not installed (apt-get install prometheus)"
        if os.environ.get("TRIO_WS_REQUIRE_REDIS"):  # CI installs both, and skips neither
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@contextmanager
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus, started now (it takes a few seconds), scraping twice a second what ``scrape`` names."""
    binary = prometheus_binary()
    port = free_port()
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 500ms\n"
        "  scrape_timeout: 500ms\n"
        "scrape_configs:\n"
        "  - job_name: trio_ws\n"
        "    file_sd_configs:\n"
        f"      - files: ['{targets}']\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Prometheus(f"http://127.0.0.1:{port}", targets)
    finally:
        proc.kill()  # its database is the test's, and goes with it: no clean shutdown needed
        proc.wait(10)


class Prometheus:
    def __init__(self, base: str, targets: Path) -> None:
        self.base = base
        self._targets = targets

    def scrape(self, port: int) -> None:
        """Scrape 127.0.0.1:``port`` from now on (Prometheus watches the file)."""
        written = self._targets.with_suffix(".tmp")
        written.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"]}]))
        written.replace(self._targets)


def _ask(base: str, promql: str) -> dict[str, Any]:
    """Prometheus's answer to an instant query (``label_values(m, l)`` asks for the label's values)."""
    variable = re.fullmatch(r"label_values\((\w+), (\w+)\)", promql)
    if variable is not None:
        url = f"{base}/api/v1/label/{variable.group(2)}/values?match[]={variable.group(1)}"
    else:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=2) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def _query(base: str, promql: str) -> float | None:
    """The value of an instant query with one result, or ``None`` (no data yet, or Prometheus not up)."""
    try:
        answer = _ask(base, promql)
    except OSError:
        return None
    result = answer["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


async def until_prometheus_says(base: str, promql: str, expected: float) -> None:
    """Ask Prometheus ``promql`` until it answers ``expected`` (it scrapes twice a second)."""
    seen = None
    while seen != expected:
        seen = await trio.to_thread.run_sync(_query, base, promql)
        if seen != expected:
            await trio.sleep(0.2)  # Prometheus has no way to announce a scrape: ask again


@contextmanager
def hub_workers(redis: RedisServer) -> Iterator[RunningWorkers]:
    url = f"redis://127.0.0.1:{redis.port}/{next(_databases)}"
    args = ("examples.signalr.testhub:app", "--workers", "2", "--backplane", url, "--metrics")
    with running_workers(*args) as served:
        assert "Metrics: " in served.banner
        yield served
        code, _ = served.stop(signal.SIGTERM)
        assert code == 0
        assert "Traceback" not in served.log.text()


async def negotiated(stack: AsyncExitStack, port: int) -> WebSocketHubClient:
    async with httpx.AsyncClient() as http:  # a new connection: any worker
        answer = await http.post(f"http://127.0.0.1:{port}/testhub/negotiate?negotiateVersion=1")
    token = answer.json()["connectionToken"]
    return await stack.enter_async_context(open_hub_websocket(f"ws://127.0.0.1:{port}/testhub?id={token}"))


async def _calls(client: WebSocketHubClient, count: int) -> None:
    for number in range(count):
        assert await client.call("Echo", f"call {number}") == f"call {number}"


async def test_prometheus_scrapes_every_worker_through_one_port(redis: RedisServer, tmp_path: Path) -> None:
    with prometheus(tmp_path) as server, hub_workers(redis) as served, trio.fail_after(DEADLINE):
        server.scrape(served.port)
        base = server.base
        async with AsyncExitStack() as stack:
            # The kernel spreads new connections over the workers by a hash of their ports: open
            # more until both hold some (8 land on one worker about once in 128 runs).
            clients: list[WebSocketHubClient] = []
            workers: set[int] = set()
            while len(clients) < CLIENTS or workers != set(served.pids):
                assert len(clients) < MOST_CLIENTS, f"every client landed on worker {workers}"
                clients.append(await negotiated(stack, served.port))
                workers.add(await clients[-1].call("WorkerId"))
            opened = len(clients)
            for client in clients:
                await client.call("JoinGroup", "everyone")
            async with trio.open_nursery() as load:
                for client in clients:
                    load.start_soon(_calls, client, CALLS)
                # Under load: Prometheus sees every open connection, on both workers.
                await until_prometheus_says(base, "sum(signalr_server_active_connections)", opened)
            await clients[0].call("SendToGroup", "everyone", "hello")  # published through Redis
            await until_prometheus_says(
                base, 'sum(trio_ws_hub_invocations_total{method="Echo",outcome="ok"})', opened * CALLS
            )
            # The histogram is merged too: its count is every call's, from either worker.
            await until_prometheus_says(
                base, 'sum(trio_ws_hub_invocation_duration_seconds_count{method="Echo"})', opened * CALLS
            )
            negotiates = 'sum(http_server_request_duration_seconds_count{http_route="/testhub/negotiate"})'
            await until_prometheus_says(base, negotiates, opened)
            # Each worker: 3 hubs and the /echo connection handler, each with its backplane.
            await until_prometheus_says(base, "sum(trio_ws_backplane_connected)", 2 * 4)
            # One target, one series: the workers' figures arrive combined, not side by side.
            series = await trio.to_thread.run_sync(_query, base, "count(signalr_server_active_connections)")
            assert series == 1
            # Every expression of the shipped Grafana dashboard is PromQL this Prometheus runs.
            for expression in expressions(dashboard()):
                answer = await trio.to_thread.run_sync(_ask, base, runnable(expression))
                assert answer["status"] == "success", (expression, answer)
            # Scrapes on new connections reach either worker, and agree.
            totals = {await _echo_total(served.port) for _ in range(6)}
            assert totals == {opened * CALLS}
        await until_prometheus_says(base, "sum(signalr_server_active_connections)", 0)
        ended = 'sum(signalr_server_connection_duration_seconds_count{signalr_transport="web_sockets"})'
        await until_prometheus_says(base, ended, opened)


async def _echo_total(port: int) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "trio_ws_hub_invocations":
            return sum(s.value for s in family.samples if s.labels.get("method") == "Echo")
    return 0.0
