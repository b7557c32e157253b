"""Soak: stateful-reconnect clients, cut again and again, across two workers sharing Redis.

Starts a ``redis-server`` and ``python -m trio_ws --workers 2 --backplane
redis://...`` serving this module's ``app`` (a hub at ``/soak`` with
stateful reconnect), puts a TCP proxy in front that cuts every connection
after a random 30 to 60 s (both sides closed, no WebSocket Close: the
client sees 1006 and reconnects, landing on whichever worker the kernel
picks), and runs ``--clients`` official clients
(``benchmarks/stateful_soak.js``, ``withStatefulReconnect()``) that call
``Echo`` every 200 ms; each call makes the hub push a message to the
caller's own group, which travels over the backplane.

It prints the clients' figures (calls made and failed, Echo latency p50 and
p99, pushes lost, duplicated or out of order, fallbacks to a new
connection), what the workers logged (take-overs, reconnects, closes as too
slow), and the workers' RSS at the start and end of the run with its growth
per minute. Nothing may be lost, duplicated or failed.

    python -m benchmarks.stateful_soak                    # 20 clients, 10 minutes
    python -m benchmarks.stateful_soak --clients 5 --duration 60 --cut-min 3 --cut-max 6
    python -m benchmarks.stateful_soak --size 4096 --interval-ms 50   # replies outrun the Acks

Needs ``redis-server`` on PATH and ``npm ci`` in ``tests/signalr_node``.
Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import trio

from trio_ws import App
from trio_ws.signalr import Hub, map_hub

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).with_suffix(".js")


class Soak(Hub):
    """Echo, and a message pushed to the caller's own group for each call (over the backplane),
    carrying the same text."""

    async def on_connected(self) -> None:
        await self.groups.add(self.context.connection_id, f"me:{self.context.connection_id}")

    async def echo(self, number: int, text: str) -> str:
        await self.clients.group(f"me:{self.context.connection_id}").send("Pushed", number, text)
        return text


app = App()
map_hub(app, "/soak", Soak(), stateful_reconnect=True)


# -- the parts ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
            return
        except OSError:
            await trio.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def rss_of(pid: int) -> int:
    """Resident memory in bytes (0 for a process that is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the supervisor's workers)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                children.append(int(entry))
    return children


class CuttingProxy:
    """TCP from 127.0.0.1 to the server; each connection is cut after a random lifetime."""

    def __init__(self, target: int, cut_min: float, cut_max: float) -> None:
        self.target = target
        self.cut_min, self.cut_max = cut_min, cut_max
        self.cuts = 0
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        lifetime = random.uniform(self.cut_min, self.cut_max)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
            nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
            await trio.sleep(lifetime)
            self.cuts += 1
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(upstream)
        await trio.aclose_forcefully(client)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, pair: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        pair.cancel()


async def soak(args: argparse.Namespace) -> int:
    if shutil.which("redis-server") is None:
        raise SystemExit("the soak needs redis-server on PATH")
    if not (ROOT / "tests" / "signalr_node" / "node_modules" / "@microsoft" / "signalr").is_dir():
        raise SystemExit("run `npm ci` in tests/signalr_node first")
    workdir = Path(tempfile.mkdtemp(prefix="stateful-soak-"))
    redis_port, port = free_port(), free_port()
    redis = await trio.lowlevel.open_process(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        cwd=workdir,
    )
    log = workdir / "server.log"
    with log.open("wb") as server_log:
        server = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "trio_ws",
                "--workers",
                "2",
                "--backplane",
                f"redis://127.0.0.1:{redis_port}/0",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "info",
                "benchmarks.stateful_soak:app",
            ],
            stdout=server_log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        await wait_for_port(port, time.monotonic() + 30)
        workers: list[int] = []
        while len(workers) < 2:  # both workers up
            await trio.sleep(0.5)
            workers = children_of(server.pid)
        await trio.sleep(2)  # ... and on Redis
        rss_start = {pid: rss_of(pid) for pid in workers}
        started = time.monotonic()
        proxy = CuttingProxy(port, args.cut_min, args.cut_max)
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            env = {
                **os.environ,
                "SERVER_URL": f"http://127.0.0.1:{proxy.port}",
                "CLIENTS": str(args.clients),
                "DURATION_S": str(args.duration),
                "INTERVAL_MS": str(args.interval_ms),
                "SIZE": str(args.size),
            }
            samples: list[tuple[float, dict[int, int]]] = []

            async def sample_rss() -> None:
                while True:
                    await trio.sleep(60)
                    samples.append(((time.monotonic() - started) / 60, {pid: rss_of(pid) for pid in workers}))

            nursery.start_soon(sample_rss)
            with (workdir / "clients.log").open("wb") as clients_log:
                done = await trio.run_process(
                    ["node", str(DRIVER)], env=env, capture_stdout=True, stderr=clients_log, check=False
                )
            minutes = (time.monotonic() - started) / 60
            rss_end = {pid: rss_of(pid) for pid in workers}
            nursery.cancel_scope.cancel()
        figures = json.loads(done.stdout.decode().strip().splitlines()[-1])
    finally:
        server.terminate()
        with trio.move_on_after(30):
            await server.wait()
        redis.terminate()
        await redis.wait()
    text = log.read_text(errors="replace")
    counts: Counter[str] = Counter()
    for pattern, name in (
        (r"takes over from the one attached", "take-overs"),
        (r"the client is back after", "back"),
        (r"the transport dropped", "dropped"),
        (r"too slow", "too slow"),
        (r"Traceback", "tracebacks"),
        (r"relayed WebSocket refused", "relay refused"),
    ):
        counts[name] = len(re.findall(pattern, text))
    growth = {pid: (rss_end[pid] - rss_start[pid]) / 1024 / minutes for pid in workers if rss_end[pid]}
    print(f"clients {args.clients}, {minutes:.1f} min, proxy cuts {proxy.cuts}")
    print("client figures:", json.dumps(figures, indent=1))
    print("worker log:", dict(counts))
    # Steady state: from the second minute's sample (every client connected, buffers grown) on.
    steady = samples[1] if len(samples) > 2 else None
    for pid in workers:
        line = (
            f"worker {pid}: RSS {rss_start[pid] / 2**20:.1f} -> {rss_end[pid] / 2**20:.1f} MiB"
            f" ({growth.get(pid, 0):+.0f} KiB/min from the start"
        )
        if steady is not None and rss_end[pid]:
            at, sizes = steady
            rate = (rss_end[pid] - sizes[pid]) / 1024 / (minutes - at)
            line += f", {rate:+.0f} KiB/min from minute {at:.0f}"
        print(line + ")")
    print(
        "RSS each minute (MiB):",
        [[round(size / 2**20, 1) for size in sizes.values()] for _, sizes in samples],
    )
    print(f"server log: {log}; the clients' warnings: {workdir / 'clients.log'}")
    bad = (
        figures["failed"]
        or figures["pushesLost"]
        or figures["duplicates"]
        or figures["outOfOrder"]
        or counts["too slow"]
        or counts["tracebacks"]
    )
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=600, help="seconds the clients run")
    parser.add_argument("--interval-ms", type=int, default=200, help="between two Echo calls of a client")
    parser.add_argument("--size", type=int, default=0, help="bytes of text in each Echo (and its push)")
    parser.add_argument("--cut-min", type=float, default=30, help="shortest life of a proxied connection")
    parser.add_argument("--cut-max", type=float, default=60, help="longest life of a proxied connection")
    sys.exit(trio.run(soak, parser.parse_args()))


if __name__ == "__main__":
    main()
