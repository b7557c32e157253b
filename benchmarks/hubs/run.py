"""``python -m benchmarks.hubs``: hub servers through the hub scenarios, in rotation, as ratios.

The scenarios, each run by real hub clients in Node (``load.js``):

* ``echo-one``: one client calls ``Echo``, one call at a time: calls per
  second, p50 and p99 latency, and calls per server CPU-second.
* ``echo-many``: ``--echo-clients`` clients (50) do the same at once.
* ``echo-pipe``: the same clients, each keeping ``--pipe-depth`` calls (16)
  in flight (pipelined).
* ``fanout``: ``--fanout-clients`` clients (1,000) connected; one of them
  calls ``Broadcast`` with ``--fanout-window`` broadcasts (4) in flight, and
  every client receives every broadcast. Messages delivered per second, and
  the latency from the send to each receipt (the send time travels in the
  message). Also the server's memory per hub connection, from its RSS
  before and after the clients connected.
* ``idle``: ``--idle-clients`` (5,000) hub connections opened (WebSocket,
  handshaken) and left idle: the server's RSS per connection.

Every figure that counts work is also given per server CPU-second, the
figure that a loaded machine bends least; the table divides each server's
figure by the baseline's (trio_ws by default) from the same round.
``python -m benchmarks.hubs.instructions`` adds callgrind's instruction
counts per call and per delivery, the steady yardstick.

Method (shared with ``python -m benchmarks``, see ``benchmarks/harness.py``):
each server runs on a fresh process (its workers, and Redis, too) pinned to
one CPU, the generator on the other; rounds rotate the servers' order; every
figure is divided by the baseline's from the same round, and the table
shows the medians. The generator reports its own CPU share beside the
server's, so a reader sees which was the bottleneck.

Knobs: ``--transport`` (WebSockets, Server-Sent Events, Long Polling),
``--protocol`` (json, messagepack), ``--workers`` and ``--backplane redis``,
each also per server (``trio_ws:protocol=messagepack``,
``trio_ws:workers=2,backplane=redis``), so one run can hold several
configurations. A server that cannot run a configuration is
left out with its reason, and so is trio_ws while it waits for its HTTP side.

``--setup`` installs what the benchmark runs: the peers in a virtual
environment of their own (``benchmarks/hubs/.venv``, from
``requirements-peers.txt``) and the Node clients and socket.io (``npm ci``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..harness import (
    STARTUP_DEADLINE,
    Metric,
    ServerSpec,
    cpu_table,
    parse_servers,
    pick_cpus,
    pinned,
    raise_file_limit,
    ratio_table,
    read_port,
    run_generator,
    run_rounds,
    server_process,
)
from .servers import (
    HUB_SERVERS,
    TRANSPORTS,
    TRIO_WS_SCALE_OUT_WAITING,
    TRIO_WS_WAITING,
    HubServerInfo,
    trio_ws_app,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERS_PYTHON = HERE / ".venv" / "bin" / "python"
DEFAULT_SERVERS = ["trio_ws", "aiosignalr", "python-socketio", "socket.io"]
SCENARIOS = ["echo-one", "echo-many", "echo-pipe", "fanout", "idle"]
PROTOCOLS = ("json", "messagepack")
SETUP_HINT = "run `.venv/bin/python -m benchmarks.hubs --setup` first"


@dataclass(frozen=True)
class Plan:
    """What the load generator runs against each server."""

    scenarios: list[str]
    warmup: float
    duration: float
    echo_clients: int
    pipe_depth: int
    fanout_clients: int
    idle_clients: int
    fanout_window: int
    payload: int
    connect_batch: int

    def titles(self) -> dict[str, str]:
        return {
            "echo-one": "Echo, 1 client x 1 in flight",
            "echo-many": f"Echo, {self.echo_clients} clients x 1 in flight",
            "echo-pipe": f"Echo, {self.echo_clients} clients x {self.pipe_depth} in flight (pipelined)",
            "fanout": f"Broadcast to {self.fanout_clients:,} clients, {self.fanout_window} in flight",
            "idle": f"{self.idle_clients:,} idle hub connections",
        }


METRICS = [
    *(
        metric
        for scenario in ("echo-one", "echo-many", "echo-pipe")
        for metric in (
            Metric(scenario, "calls_per_cpu_s", "calls per server CPU-s", True, "/s"),
            Metric(scenario, "calls_per_s", "calls/s", True, "/s"),
            Metric(scenario, "p50_us", "p50 latency", False, "us"),
            Metric(scenario, "p99_us", "p99 latency", False, "us"),
        )
    ),
    Metric("fanout", "deliveries_per_cpu_s", "delivered per server CPU-s", True, "/s"),
    Metric("fanout", "deliveries_per_s", "messages delivered/s", True, "/s"),
    Metric("fanout", "p50_us", "p50 send-to-receipt", False, "us"),
    Metric("fanout", "p99_us", "p99 send-to-receipt", False, "us"),
    Metric("fanout", "rss_per_connection", "server RSS per connection", False, "KiB"),
    Metric("idle", "rss_per_connection", "server RSS per idle connection", False, "KiB"),
]
# The scenarios that keep the server busy, whose CPU shares the CPU table shows.
BUSY_SCENARIOS = ["echo-one", "echo-many", "echo-pipe", "fanout"]


@dataclass(frozen=True)
class Config:
    """One server spec, resolved: which server, over which transport, how many workers, what backplane."""

    spec: ServerSpec
    info: HubServerInfo
    transport: str
    workers: int
    backplane: bool
    protocol: str = "json"
    metrics: bool = False  # trio_ws with --metrics (GET /metrics served, everything counted)

    @classmethod
    def resolve(
        cls, spec: ServerSpec, transport: str, workers: int, backplane: str, protocol: str = "json"
    ) -> Config:
        values = spec.option_values()
        unknown = set(values) - {"transport", "workers", "backplane", "protocol", "metrics"}
        if unknown:
            raise SystemExit(f"{spec.label}: unknown option(s) {', '.join(sorted(unknown))}")
        transport = values.get("transport", transport)
        if transport not in TRANSPORTS:
            raise SystemExit(f"{spec.label}: transport {transport!r}; choose from {', '.join(TRANSPORTS)}")
        backplane = values.get("backplane", backplane)
        if backplane not in ("none", "redis"):
            raise SystemExit(f"{spec.label}: backplane {backplane!r}; choose none or redis")
        count = values.get("workers", str(workers))
        if not count.isdigit() or int(count) < 1:
            raise SystemExit(f"{spec.label}: workers {count!r}; give a whole number, 1 or more")
        protocol = values.get("protocol", protocol)
        if protocol not in PROTOCOLS:
            raise SystemExit(f"{spec.label}: protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        metrics = values.get("metrics", "off")
        if metrics not in ("on", "off") or (metrics == "on" and spec.name != "trio_ws"):
            raise SystemExit(f"{spec.label}: metrics {metrics!r}; trio_ws takes metrics=on or metrics=off")
        return cls(
            spec,
            HUB_SERVERS[spec.name],
            transport,
            int(count),
            backplane == "redis",
            protocol,
            metrics == "on",
        )

    def why_not(self) -> str | None:
        """Why this server cannot run this configuration, or ``None`` if it can."""
        name = self.info.name
        if self.transport in self.info.unusable:
            return self.info.unusable[self.transport]
        if self.transport not in self.info.transports:
            return f"{name} has no {self.transport} transport"
        if self.protocol not in self.info.protocols:
            return (
                f"{name} is measured with JSON only"
                if self.info.kind == "signalr"
                else f"{name} is not SignalR"
            )
        if (self.workers > 1 or self.backplane) and not self.info.scale_out:
            return f"{name} has no backplane: it runs as one process"
        if self.workers > 1 and not self.backplane:
            return "several workers need a backplane (backplane=redis)"
        if self.info.kind == "socketio" and self.workers > 1 and self.transport != "websockets":
            return "socket.io's long polling needs sticky sessions across workers"
        if self.info.interpreter == "peers" and not PEERS_PYTHON.exists():
            return f"its virtual environment is missing: {SETUP_HINT}"
        if self.info.interpreter == "node" and not (HERE / "node_modules" / self.info.name).is_dir():
            return f"{name} is not installed in benchmarks/hubs/node_modules: {SETUP_HINT}"
        if name == "trio_ws":
            if trio_ws_app() is None:
                return TRIO_WS_WAITING
            if (self.workers > 1 or self.backplane) and not _trio_ws_cli_scales_out():
                return TRIO_WS_SCALE_OUT_WAITING
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hubs", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--setup", action="store_true", help="install the peers' venv and the Node clients")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test of a few seconds: 1 round, few clients"
    )
    parser.add_argument("--rounds", type=int, help="rounds of every server (default 5; quick 1)")
    parser.add_argument("--duration", type=float, help="seconds measured per scenario (default 2; quick 0.2)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default 0.5; quick 0.1)")
    parser.add_argument(
        "--echo-clients", type=int, help="clients of echo-many and echo-pipe (default 50; quick 5)"
    )
    parser.add_argument("--pipe-depth", type=int, default=16, help="calls in flight per echo-pipe client")
    parser.add_argument("--fanout-clients", type=int, help="clients of fanout (default 1000; quick 20)")
    parser.add_argument("--idle-clients", type=int, help="connections of idle (default 5000; quick 20)")
    parser.add_argument("--fanout-window", type=int, default=4, help="broadcasts in flight (default 4)")
    parser.add_argument("--payload", type=int, default=32, help="characters per message (default 32)")
    parser.add_argument(
        "--connect-batch", type=int, default=50, help="clients connecting at once (default 50)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help="comma-separated; NAME:transport=T,workers=N,backplane=redis for one configuration",
    )
    parser.add_argument("--baseline", help="the server the ratios divide by (default: the first that runs)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--transport", choices=TRANSPORTS, default="websockets", help="for every server")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="json", help="for every SignalR server")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each server")
    parser.add_argument("--backplane", choices=("none", "redis"), default="none", help="for every server")
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="the backplane's Redis (default: start redis-server on a free port)",
    )
    parser.add_argument(
        "--cpus",
        metavar="SERVERS:LOAD",
        help="taskset CPU lists, as in 0-2:3 (default: the first CPU for servers, the second for load)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every measurement here")
    args = parser.parse_args(argv)
    if args.setup:
        setup()
        return
    if not (HERE / "node_modules").is_dir():
        raise SystemExit(f"the Node clients are missing: {SETUP_HINT}")

    plan = Plan(
        scenarios=args.scenarios.split(","),
        warmup=args.warmup or (0.1 if args.quick else 0.5),
        duration=args.duration or (0.2 if args.quick else 2.0),
        echo_clients=args.echo_clients or (5 if args.quick else 50),
        pipe_depth=args.pipe_depth,
        fanout_clients=args.fanout_clients or (20 if args.quick else 1000),
        idle_clients=args.idle_clients or (20 if args.quick else 5000),
        fanout_window=args.fanout_window,
        payload=args.payload,
        connect_batch=args.connect_batch,
    )
    unknown = set(plan.scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}"
        )
    if plan.fanout_clients < 2 or plan.idle_clients < 2:
        raise SystemExit("--fanout-clients and --idle-clients must be at least 2")
    _allow_sockets(plan)
    rounds = args.rounds or (1 if args.quick else 5)
    configs = [
        Config.resolve(spec, args.transport, args.workers, args.backplane, args.protocol)
        for spec in parse_servers(args.servers, list(HUB_SERVERS))
    ]
    runnable = [c for c in configs if c.why_not() is None]
    if not runnable:
        raise SystemExit("no server can run:\n" + _not_measured(configs))
    baseline = args.baseline or runnable[0].spec.label
    if baseline not in [c.spec.label for c in runnable]:
        raise SystemExit(f"the baseline {baseline!r} is not among the servers that run")
    cpus = _cpus(args.cpus)

    print(
        f"hub benchmark: {rounds} round(s), {plan.duration} s per scenario after {plan.warmup} s; "
        + (f"servers on CPU {cpus[0]}, load on CPU {cpus[1]}" if cpus else "not pinned (fewer than 2 CPUs)")
        + f"; load average {_load_average()} at the start",
        flush=True,
    )
    with ExitStack() as stack:
        redis_url = args.redis_url
        if redis_url is None and any(c.backplane for c in runnable):
            redis_url = stack.enter_context(redis_server(cpus[0] if cpus else None))
        by_label = {c.spec.label: c for c in runnable}
        results = run_rounds(
            [c.spec for c in runnable],
            rounds,
            lambda spec: _measure(by_label[spec.label], cpus, plan, redis_url),
            lambda line: print(line, file=sys.stderr, flush=True),
        )
    labels = [baseline, *(c.spec.label for c in runnable if c.spec.label != baseline)]
    metrics = [m for m in METRICS if m.scenario in plan.scenarios]
    titles = plan.titles()
    print(ratio_table(results, labels, baseline, metrics, titles, absolute_for_all=True))
    print(cpu_table(results, labels, [s for s in plan.scenarios if s in BUSY_SCENARIOS], titles))
    print(f"\nLoad average {_load_average()} at the end (other work on the machine shows here).")
    skipped = [c for c in configs if c not in runnable]
    if skipped:
        print("\nNot measured:\n" + _not_measured(skipped))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _allow_sockets(plan: Plan) -> None:
    """Raise this process's soft limit on open files to the hard one (the servers and the generator
    inherit it), and say what to change if even that is too few for the scenarios' connections."""
    raise_file_limit()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max(plan.fanout_clients, plan.idle_clients if "idle" in plan.scenarios else 0) + 100
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(
            f"{needed} open files are needed and the hard limit is {soft}: raise it (ulimit -Hn) "
            "or pass fewer --idle-clients / --fanout-clients"
        )


def _cpus(text: str | None) -> tuple[str, str] | None:
    """The servers' CPU list and the generator's, for ``taskset -c``; ``None`` leaves them unpinned."""
    if text is None:
        picked = pick_cpus()
        return (str(picked[0]), str(picked[1])) if picked else None
    servers, _, load = text.partition(":")
    if not servers or not load:
        raise SystemExit(f"--cpus {text!r}: give the servers' CPUs and the generator's, as in 0-2:3")
    return servers, load


def _not_measured(configs: list[Config]) -> str:
    return "\n".join(f"  {c.spec.label}: {c.why_not()}" for c in configs if c.why_not())


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def setup() -> None:
    """Make the peers' virtual environment and install the Node clients, both from pinned lists."""
    if not PEERS_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(HERE / ".venv")], check=True)
    pip = [str(PEERS_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(HERE / "requirements-peers.txt")], check=True)
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is missing: the load generator runs in Node 20 or later")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)
    print(
        "hub benchmark set up: peers in benchmarks/hubs/.venv, Node clients in benchmarks/hubs/node_modules"
    )


@functools.cache
def _trio_ws_cli_scales_out() -> bool:
    """Does ``python -m trio_ws`` take an APP with ``--workers`` and ``--backplane`` (issue 13)?"""
    result = subprocess.run(
        [sys.executable, "-m", "trio_ws", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    return "--workers" in result.stdout and "--backplane" in result.stdout


# -- one measurement: start the server, run the generator, stop the server ----------


@dataclass(frozen=True)
class Started:
    """A running server: the processes it is made of (workers too), and its port."""

    processes: list[subprocess.Popen[str]]
    port: int


def _measure(
    config: Config, cpus: tuple[str, str] | None, plan: Plan, redis_url: str | None
) -> dict[str, dict[str, float]]:
    with _started(config, cpus[0] if cpus else None, redis_url) as started:
        pids = _process_tree([p.pid for p in started.processes])
        path = config.info.path if config.info.kind == "signalr" else ""  # socket.io takes its path itself
        command = [
            "node",
            str(HERE / "load.js"),
            "--kind",
            config.info.kind,
            "--url",
            f"http://127.0.0.1:{started.port}{path}",
            "--transport",
            config.transport,
            "--scenarios",
            ",".join(plan.scenarios),
            "--protocol",
            config.protocol,
            "--echo-clients",
            str(plan.echo_clients),
            "--pipe-depth",
            str(plan.pipe_depth),
            "--fanout-clients",
            str(plan.fanout_clients),
            "--idle-clients",
            str(plan.idle_clients),
            "--fanout-window",
            str(plan.fanout_window),
            "--payload",
            str(plan.payload),
            "--warmup",
            str(plan.warmup),
            "--duration",
            str(plan.duration),
            "--connect-batch",
            str(plan.connect_batch),
            "--server-pids",
            ",".join(map(str, pids)),
            "--clk-tck",
            str(os.sysconf("SC_CLK_TCK")),
        ]
        if config.info.text_frames:
            command.append("--text-frames")
        # Opening thousands of connections over Long Polling takes a while on a busy machine.
        budget = (
            STARTUP_DEADLINE
            + len(plan.scenarios) * (plan.warmup + plan.duration + 60)
            + plan.idle_clients / 20
        )
        return run_generator(command, cpus[1] if cpus else None, HERE, config.spec.label, budget)


@contextmanager
def _started(config: Config, cpu: str | None, redis_url: str | None) -> Iterator[Started]:
    """Start the server's processes pinned to ``cpu``; stop them all at the end, showing what they logged."""
    backplane = redis_url if config.backplane else None
    label = config.spec.label
    with ExitStack() as stack:
        if config.info.name == "trio_ws" and backplane:
            port = _free_port()
            command = _trio_ws_cli(port, config.workers, backplane) + (
                ["--metrics"] if config.metrics else []
            )
            supervisor = stack.enter_context(server_process(command, cpu, ROOT, label, read_stdout=False))
            _wait_until_serving(port, config)
            yield Started([supervisor], port)
            return
        if config.info.interpreter == "node":
            command = ["node", str(HERE / "socketio_server.js")]
        else:
            python = str(PEERS_PYTHON) if config.info.interpreter == "peers" else sys.executable
            command = [python, "-m", "benchmarks.hubs.servers", config.info.name]
        if backplane:
            command += ["--backplane", backplane, "--reuse-port"]
        if config.metrics:
            command.append("--metrics")
        first = stack.enter_context(server_process([*command, "--port", "0"], cpu, ROOT, label))
        port = read_port(first)
        workers = [first]
        for _ in range(config.workers - 1):
            workers.append(
                stack.enter_context(server_process([*command, "--port", str(port)], cpu, ROOT, label))
            )
            read_port(workers[-1])
        yield Started(workers, port)


def _trio_ws_cli(port: int, workers: int, backplane: str) -> list[str]:
    """trio_ws's own workers and backplane, as issue 13 specifies its command line."""
    return [
        sys.executable,
        "-m",
        "trio_ws",
        "examples.signalr.testhub:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backplane",
        backplane,
        "--max-connections",
        "0",
        "--max-idle-connections",
        "0",
        "--log-level",
        "warning",
    ]


def _wait_until_serving(port: int, config: Config) -> None:
    """Wait until negotiate answers and every worker process is there."""
    url = f"http://127.0.0.1:{port}{config.info.path}/negotiate?negotiateVersion=1"
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=1) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{config.spec.label} did not answer {url} within {STARTUP_DEADLINE} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _process_tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants (a supervisor's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it ended meanwhile
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


@contextmanager
def redis_server(cpu: str | None) -> Iterator[str]:
    """A private ``redis-server`` on a free port, for the run's backplanes; its URL."""
    if shutil.which("redis-server") is None:
        raise SystemExit("a backplane needs redis-server (apt-get install redis-server), or pass --redis-url")
    port = _free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(pinned(command, cpu), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as redis:
                    redis.sendall(b"PING\r\n")
                    if redis.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"redis-server did not answer on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(10)
