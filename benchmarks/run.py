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
import sys
from dataclasses import dataclass
from pathlib import Path

from .harness import (
    STARTUP_DEADLINE,
    Metric,
    ServerSpec,
    load_check,
    parse_servers,
    pick_cpus,
    ratio_table,
    read_port,
    run_generator,
    run_rounds,
    server_process,
)
from .load import IDLE_TITLE, SCENARIOS
from .servers import SERVERS

BASELINE = "trio-websocket"
DEFAULT_SERVERS = ["trio-websocket", "trio_ws", "websockets-trio", "websockets-asyncio", "raw-trio-tcp"]
ROOT = Path(__file__).resolve().parent.parent

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
    specs = parse_servers(args.servers, list(SERVERS))
    if BASELINE not in [s.label for s in specs]:
        specs.insert(0, ServerSpec.parse(BASELINE, list(SERVERS)))
    scenarios = args.scenarios.split(",")
    cpus = pick_cpus()
    plan = Plan(scenarios, warmup, duration, idle)

    print(
        f"trio_ws benchmark: {rounds} round(s), {duration} s per scenario, {idle} idle connections; "
        + (f"server on CPU {cpus[0]}, load on CPU {cpus[1]}" if cpus else "not pinned (fewer than 2 CPUs)"),
        flush=True,
    )
    results = run_rounds(
        specs,
        rounds,
        lambda spec: _measure(spec, cpus, plan),
        lambda line: print(line, file=sys.stderr, flush=True),
    )
    metrics = [m for m in METRICS if m.scenario in scenarios]
    print(ratio_table(results, [s.label for s in specs], BASELINE, metrics, TITLES))
    print(load_check(results, scenarios, TITLES))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


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
    with server_process(command, cpus[0] if cpus else None, ROOT, spec.label) as server:
        port = read_port(server)
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
        return run_generator(load_command, cpus[1] if cpus else None, ROOT, spec.label, budget)
