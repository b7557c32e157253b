"""``python -m benchmarks``: every server through every scenario, in rotation, as ratios.

Method:

* Each server runs in its own process pinned to one CPU (``taskset -c``), and
  the load generator (``load.py``) runs in another process pinned to the
  other, so the two never compete for a core. The generator reports its own
  CPU share: well under 1.0 means it had CPU to spare and the server was
  the bottleneck.
* One round runs every server once, each on a fresh process: first the
  idle scenario (server RSS growth over N connections, each echoed once),
  then the throughput scenarios. Rounds rotate the order of the servers, so
  a burst of noise from other work on the machine does not always hit the
  same one.
* Absolute numbers on a shared machine drift from minute to minute, so
  every figure is divided by the bare trio-websocket server's figure from
  the same round, and the table shows the median of those ratios over the
  rounds. Only ratios from one run are comparable.
* Throughput is also shown per second of CPU the server process got, which
  other work on the machine (taking the server's CPU away now and then)
  disturbs much less than throughput per wall-clock second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .load import IDLE_TITLE, SCENARIOS
from .servers import SERVERS

BASELINE = "trio-websocket"
DEFAULT_SERVERS = ["trio-websocket", "trio_ws", "websockets-trio", "websockets-asyncio", "raw-trio-tcp"]
ROOT = Path(__file__).resolve().parent.parent
STARTUP_DEADLINE = 30.0


@dataclass(frozen=True)
class Metric:
    scenario: str
    key: str
    label: str
    higher_is_better: bool
    unit: str


METRICS = [
    Metric("idle", "rss_per_connection", "RSS/conn", False, "KiB"),
    Metric("rtt1", "messages_per_s", "msg/s", True, "/s"),
    Metric("rtt1", "p50_us", "p50 latency", False, "us"),
    Metric("rtt1", "p99_us", "p99 latency", False, "us"),
    Metric("rtt50", "messages_per_s", "msg/s", True, "/s"),
    Metric("rtt50", "p99_us", "p99 latency", False, "us"),
    Metric("rtt50", "messages_per_cpu_s", "msg per server CPU-s", True, "/s"),
    Metric("pipe50", "messages_per_s", "msg/s", True, "/s"),
    Metric("pipe50", "messages_per_cpu_s", "msg per server CPU-s", True, "/s"),
    Metric("bin4", "mb_per_s", "MB/s", True, "MB/s"),
    Metric("bin4", "mb_per_cpu_s", "MB per server CPU-s", True, "MB/s"),
    Metric("deflate50", "messages_per_s", "msg/s", True, "/s"),
    Metric("deflate4", "mb_per_s", "MB/s", True, "MB/s"),
]
TITLES = {"idle": IDLE_TITLE, **{name: s.title for name, s in SCENARIOS.items()}}


@dataclass(frozen=True)
class ServerSpec:
    """A server name, with trio_ws ``Options`` overrides for experiments: ``trio_ws:key=value,...``."""

    label: str
    name: str
    options: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> ServerSpec:
        name, _, options = text.partition(":")
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
        return cls(text, name, tuple(o for o in options.split(",") if o))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke test: 1 round, short scenarios")
    parser.add_argument("--rounds", type=int, help="rounds of every server (default 5; quick 1)")
    parser.add_argument(
        "--duration", type=float, help="seconds measured per scenario (default 1.5; quick 0.08)"
    )
    parser.add_argument("--idle", type=int, help="idle connections opened (default 5000; quick 50)")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help="comma-separated; trio_ws:KEY=VALUE[,KEY=VALUE] adds a trio_ws with other Options",
    )
    parser.add_argument("--scenarios", default=",".join(["idle", *SCENARIOS]))
    parser.add_argument("--json", metavar="FILE", help="also write every measurement here")
    args = parser.parse_args(argv)

    rounds = args.rounds or (1 if args.quick else 5)
    duration = args.duration or (0.08 if args.quick else 1.5)
    warmup = 0.02 if args.quick else 0.3
    idle = args.idle or (50 if args.quick else 5000)
    specs = _parse_servers(args.servers)
    if BASELINE not in [s.label for s in specs]:
        specs.insert(0, ServerSpec.parse(BASELINE))
    scenarios = args.scenarios.split(",")
    cpus = _pick_cpus()
    plan = Plan(scenarios, warmup, duration, idle)

    print(
        f"trio_ws benchmark: {rounds} round(s), {duration} s per scenario, {idle} idle connections; "
        + (f"server on CPU {cpus[0]}, load on CPU {cpus[1]}" if cpus else "not pinned (fewer than 2 CPUs)"),
        flush=True,
    )
    results: dict[str, list[dict[str, dict[str, float]]]] = {s.label: [] for s in specs}
    for round_number in range(rounds):
        shift = round_number % len(specs)
        for spec in specs[shift:] + specs[:shift]:
            print(f"  round {round_number + 1}/{rounds}: {spec.label}", file=sys.stderr, flush=True)
            results[spec.label].append(_measure(spec, cpus, plan))

    print(_table(results, [s.label for s in specs], scenarios, rounds))
    print(_load_check(results, scenarios))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _parse_servers(text: str) -> list[ServerSpec]:
    """``a,b,trio_ws:k=v,k2=v2`` -> specs; a ``k=v`` item belongs to the server before it."""
    specs: list[ServerSpec] = []
    for item in text.split(","):
        if not item:
            continue
        if "=" in item and ":" not in item and specs:
            last = specs.pop()
            specs.append(ServerSpec(f"{last.label},{item}", last.name, (*last.options, item)))
        else:
            specs.append(ServerSpec.parse(item))
    return specs


def _pick_cpus() -> tuple[int, int] | None:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return available[0], available[1]


def _pinned(command: list[str], cpu: int | None) -> list[str]:
    if cpu is None:
        return command
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command  # no util-linux: run unpinned rather than not at all


@dataclass(frozen=True)
class Plan:
    """What the load generator runs against each server."""

    scenarios: list[str]
    warmup: float
    duration: float
    idle: int


def _measure(spec: ServerSpec, cpus: tuple[int, int] | None, plan: Plan) -> dict[str, dict[str, float]]:
    """Start ``spec`` on a fresh process, run the load generator through ``scenarios``, stop it."""
    command = [sys.executable, "-m", "benchmarks.servers", spec.name, "--port", "0"]
    for option in spec.options:
        command += ["--option", option]
    # stderr goes to a file: a server that logs a lot must never block on a full pipe.
    with tempfile.TemporaryFile(mode="w+") as server_log:
        server = subprocess.Popen(
            _pinned(command, cpus[0] if cpus else None),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=server_log,
            text=True,
        )
        try:
            return _run_load(spec, server, cpus, plan)
        finally:
            server.kill()
            server.communicate(timeout=10)
            server_log.seek(0)
            stderr = server_log.read()
            if stderr.strip():
                print(f"{spec.label} wrote to stderr (the end of it):\n{stderr[-2000:]}", file=sys.stderr)


def _run_load(
    spec: ServerSpec, server: subprocess.Popen[str], cpus: tuple[int, int] | None, plan: Plan
) -> dict[str, dict[str, float]]:
    port = _read_port(server)
    load_command = [
        sys.executable,
        "-m",
        "benchmarks.load",
        "--port",
        str(port),
        "--server-pid",
        str(server.pid),
        "--scenarios",
        ",".join(plan.scenarios),
        "--warmup",
        str(plan.warmup),
        "--duration",
        str(plan.duration),
        "--idle-connections",
        str(plan.idle),
    ]
    if spec.name == "raw-trio-tcp":
        load_command.append("--raw")
    budget = STARTUP_DEADLINE + len(plan.scenarios) * (plan.warmup + plan.duration + 30)
    load = subprocess.run(
        _pinned(load_command, cpus[1] if cpus else None),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=budget,
    )
    if load.returncode != 0:
        raise SystemExit(f"load generator failed against {spec.label}:\n{load.stderr}")
    measured = [json.loads(line) for line in load.stdout.splitlines() if line.startswith("{")]
    return {m.pop("scenario"): m for m in measured}


def _read_port(server: subprocess.Popen[str]) -> int:
    assert server.stdout is not None
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on \w+://[^:]+:(\d+)/", line)
        if match:
            return int(match.group(1))
    server.kill()
    server.communicate(timeout=10)
    raise SystemExit(f"server {server.args!r} did not start (it wrote nothing we expected)")


def _table(
    results: dict[str, list[dict[str, dict[str, float]]]],
    labels: list[str],
    scenarios: list[str],
    rounds: int,
) -> str:
    """The ratio table: median over rounds of (server's figure / baseline's figure in that round)."""
    others = [label for label in labels if label != BASELINE]
    header = ["scenario", "metric", f"{BASELINE} (abs.)", *others]
    rows = [header]
    previous = None
    for metric in METRICS:
        if metric.scenario not in scenarios:
            continue
        base = [r[metric.scenario][metric.key] for r in results[BASELINE]]
        row = [
            TITLES[metric.scenario] if metric.scenario != previous else "",
            f"{metric.label} ({'higher' if metric.higher_is_better else 'lower'} is better)",
            _absolute(statistics.median(base), metric.unit),
        ]
        previous = metric.scenario
        for label in others:
            ratios = [
                r[metric.scenario][metric.key] / b
                for r, b in zip(results[label], base, strict=True)
                if b and b == b  # skip a zero or NaN baseline
            ]
            row.append(f"{statistics.median(ratios):.2f}x" if ratios else "n/a")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    note = (
        f"\nEach cell: the server's figure divided by {BASELINE}'s in the same round, median of "
        f"{rounds} round(s).\nThe {BASELINE} column shows its median absolute figure for this run only."
    )
    return "\n" + "\n".join(lines) + note


def _absolute(value: float, unit: str) -> str:
    if unit == "KiB":
        return f"{value / 1024:,.1f} KiB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "us":
        return f"{value:,.0f} us"
    return f"{value:,.1f} {unit}"


def _load_check(results: dict[str, list[dict[str, dict[str, float]]]], scenarios: list[str]) -> str:
    """Was the generator the bottleneck? Its highest CPU share per scenario, beside the server's."""
    lines = ["\nCPU share (CPU seconds / wall seconds), highest over servers and rounds:"]
    for name in scenarios:
        if name == "idle":
            continue
        client = max(r[name]["client_cpu"] for runs in results.values() for r in runs)
        server = statistics.median(r[name]["server_cpu"] for runs in results.values() for r in runs)
        verdict = "generator had CPU to spare" if client < 0.9 else "WARNING: generator near saturation"
        lines.append(
            f"  {TITLES[name]:<38} load generator {client:.2f}, server (median) {server:.2f}: {verdict}"
        )
    return "\n".join(lines)
