"""The hub benchmark harness runs end to end in its quickest mode (it asserts nothing about speed).

It needs the peers' virtual environment and the Node clients (``python -m
benchmarks.hubs --setup``), and Redis for the backplane; without them these
tests skip with the reason, unless TRIO_WS_REQUIRE_HUB_BENCH=1 (set by
.ci/run), which turns the skip into a failure. trio_ws's own server is left
out, with its reason, until trio_ws serves hubs over HTTP.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import ServerSpec
from benchmarks.hubs.run import (
    BUSY_SCENARIOS,
    DEFAULT_SERVERS,
    HERE,
    METRICS,
    PEERS_PYTHON,
    SCENARIOS,
    Config,
)
from benchmarks.hubs.servers import HUB_SERVERS, TRIO_WS_WAITING

ROOT = Path(__file__).resolve().parent.parent


def _require(what: str, present: bool) -> None:
    if present:
        return
    reason = f"{what} is missing: run `.venv/bin/python -m benchmarks.hubs --setup`"
    if os.environ.get("TRIO_WS_REQUIRE_HUB_BENCH") == "1":
        pytest.fail(f"TRIO_WS_REQUIRE_HUB_BENCH=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def set_up() -> None:
    _require("the peers' virtual environment (benchmarks/hubs/.venv)", PEERS_PYTHON.exists())
    _require("the Node clients (benchmarks/hubs/node_modules)", (HERE / "node_modules").is_dir())
    _require("node", shutil.which("node") is not None)


def _config(text: str, transport: str = "websockets") -> Config:
    return Config.resolve(ServerSpec.parse(text, list(HUB_SERVERS)), transport, 1, "none")


def _quick_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """``python -m benchmarks.hubs --quick ARGS``, and the measurements it wrote as JSON."""
    out = tmp_path / "hubs.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.hubs", "--quick", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote to stderr" not in result.stderr, result.stderr
    measured: dict[str, object] = json.loads(out.read_text())
    return result, measured


def _assert_measured(measured: dict[str, object], labels: list[str]) -> None:
    """Each server ran once, through every scenario, with every figure the table shows."""
    assert sorted(measured) == sorted(labels)
    for label, rounds in measured.items():
        assert isinstance(rounds, list) and len(rounds) == 1, label
        assert sorted(rounds[0]) == sorted(SCENARIOS), label
        for metric in METRICS:
            value = rounds[0][metric.scenario][metric.key]
            if metric.key.endswith("_per_cpu_s") and rounds[0][metric.scenario]["server_cpu"] == 0:
                continue  # the server got no clock tick of CPU in the quick window: a busy machine
            if metric.key.startswith("rss_"):
                # A few quick connections may fit in memory the allocator already holds: 0 (or
                # less) is a real reading there, so only its being measured is checked.
                assert math.isfinite(value), (label, metric)
                continue
            assert math.isfinite(value) and value > 0, (label, metric)
        for scenario in BUSY_SCENARIOS:
            assert 0 < rounds[0][scenario]["client_cpu"] < 2, (label, scenario)


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("set_up")
def test_quick_run_measures_every_peer_in_every_scenario(tmp_path: Path) -> None:
    """`python -m benchmarks.hubs --quick` measures each peer in each scenario and prints the ratio table."""
    result, measured = _quick_run(tmp_path)
    runnable = [name for name in DEFAULT_SERVERS if _config(name).why_not() is None]
    assert {"aiosignalr", "python-socketio", "socket.io"} <= set(runnable)
    _assert_measured(measured, runnable)
    header = next(line for line in result.stdout.splitlines() if line.startswith("scenario  "))
    assert header.split()[2:] == [runnable[0], "(abs.)", *runnable[1:]]
    rows = [line for line in result.stdout.splitlines() if "is better)" in line]
    assert len(rows) == len(METRICS)
    assert "had CPU to spare" in result.stdout or "near saturation" in result.stdout
    if "trio_ws" not in runnable:
        assert f"trio_ws: {TRIO_WS_WAITING}" in result.stdout


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("set_up")
def test_trio_ws_joins_the_quick_run(tmp_path: Path) -> None:
    """Once trio_ws serves hubs over HTTP, the quick run measures its conformance hub beside aiosignalr."""
    reason = _config("trio_ws").why_not()
    if reason is not None:
        pytest.skip(f"trio_ws is {reason}")
    _, measured = _quick_run(tmp_path, "--servers", "aiosignalr,trio_ws")
    _assert_measured(measured, ["aiosignalr", "trio_ws"])


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("set_up")
def test_trio_ws_over_server_sent_events_long_polling_and_messagepack(tmp_path: Path) -> None:
    """The quick run measures trio_ws over Server-Sent Events and Long Polling, beside aiosignalr's
    Server-Sent Events, and with MessagePack, in every scenario."""
    reason = _config("trio_ws").why_not()
    if reason is not None:
        pytest.skip(f"trio_ws is {reason}")
    labels = [
        "aiosignalr:transport=sse",
        "trio_ws:transport=sse",
        "trio_ws:transport=longpolling",
        "trio_ws:protocol=messagepack",
    ]
    _, measured = _quick_run(tmp_path, "--servers", ",".join(labels))
    _assert_measured(measured, labels)


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("set_up")
def test_quick_run_scales_out_over_a_redis_backplane(tmp_path: Path) -> None:
    """Two python-socketio workers on a private redis-server: every client still gets every broadcast."""
    _require("redis-server (apt-get install redis-server)", shutil.which("redis-server") is not None)
    spec = "python-socketio:workers=2,backplane=redis"
    result, measured = _quick_run(tmp_path, "--servers", spec, "--scenarios", "fanout")
    rounds = measured[spec]
    assert isinstance(rounds, list)
    assert rounds[0]["fanout"]["deliveries_per_s"] > 0
    assert "Broadcast to 20 clients" in result.stdout


@pytest.mark.parametrize(
    ("text", "transport", "reason"),
    [
        ("python-socketio", "sse", "python-socketio has no sse transport"),
        (
            "aiosignalr:workers=2,backplane=redis",
            "websockets",
            "aiosignalr has no backplane: it runs as one process",
        ),
        ("python-socketio:workers=2", "websockets", "several workers need a backplane (backplane=redis)"),
        (
            "python-socketio:workers=2,backplane=redis",
            "longpolling",
            "socket.io's long polling needs sticky sessions across workers",
        ),
        ("aiosignalr", "longpolling", HUB_SERVERS["aiosignalr"].unusable["longpolling"]),
        ("aiosignalr:protocol=messagepack", "websockets", "aiosignalr is measured with JSON only"),
        ("socket.io:protocol=messagepack", "websockets", "socket.io is not SignalR"),
        (
            "socket.io:workers=2,backplane=redis",
            "websockets",
            "socket.io has no backplane: it runs as one process",
        ),
    ],
)
def test_a_configuration_a_server_cannot_run_is_left_out_with_its_reason(
    text: str, transport: str, reason: str
) -> None:
    """Configurations a server cannot run are named with the reason, not measured."""
    assert _config(text, transport).why_not() == reason


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python-socketio:worker=2", "unknown option"),
        ("python-socketio:workers=two", "give a whole number"),
        ("python-socketio:workers=0", "give a whole number"),
        ("python-socketio:backplane=kafka", "choose none or redis"),
        ("python-socketio:transport=grpc", "choose from websockets, sse, longpolling"),
        ("trio_ws:protocol=xml", "choose from json, messagepack"),
    ],
)
def test_a_mistaken_server_option_is_refused(text: str, message: str) -> None:
    """A mistaken server option stops the run before anything starts, saying what to change."""
    with pytest.raises(SystemExit, match=message):
        _config(text)


@pytest.mark.timeout(120)
def test_backplane_benchmark_runs_two_worker_processes() -> None:
    """``benchmarks.backplane`` sends through a private redis-server to a listening worker in its own process.

    The listening worker checks every message arrives once and in order (it stops the run otherwise),
    and each process reports its own CPU time per send, in the throughput run and for sends spaced
    apart (each a publish and a read of its own).
    """
    _require("redis-server (apt-get install redis-server)", shutil.which("redis-server") is not None)
    command = [
        sys.executable,
        "-m",
        "benchmarks.backplane",
        "--sends",
        "320",
        "--latency-sends",
        "20",
        "--spaced-sends",
        "20",
    ]
    result = subprocess.run(
        [*command, "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )
    assert result.returncode == 0, result.stderr
    rows = {line[:38].strip(): line[38:].split() for line in result.stdout.splitlines()[2:]}
    sender_us = float(rows["CPU per send: sending worker"][0])
    listener_us = float(rows["CPU per send: listening worker"][0])
    assert sender_us > 0 and listener_us > 0  # each measured in its own process
    per_worker = float(rows["sends per worker CPU-second"][0].replace(",", ""))
    assert per_worker == pytest.approx(1e6 / max(sender_us, listener_us), rel=0.02)
    assert float(rows["sends/s, first send to last receipt"][0].replace(",", "")) > 0
    spaced_sender = float(rows["CPU per spaced send: sending worker"][0].replace(",", ""))
    spaced_listener = float(rows["CPU per spaced send: listening worker"][0].replace(",", ""))
    assert spaced_sender > 0 and spaced_listener > 0
