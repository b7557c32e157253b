"""Soak test: thousands of connect, echo and close cycles against ``python -m trio_ws``.

Runs the server in its own process, keeps ``--connections`` WebSocket
clients busy for ``--duration`` seconds, in ``--rounds`` equal rounds, and
prints what the server held before, at the peak and after each round: open
file descriptors and resident memory (RSS), read from ``/proc``. Memory is
flat when the RSS after the last round is that after the first: Python
keeps the memory it once needed, so RSS never falls back to idle, but a
leak makes it grow with every round. Each client loops: connect, upgrade, echo a few
messages, then end the connection one of these ways, in turn:

* ``close``: a clean close handshake (most cycles);
* ``reset``: a TCP reset (RST) right after the echo;
* ``reset mid-frame``: half a frame, then a reset;
* ``vanish``: TCP closed without a Close frame;
* ``silent``: the client stops answering (no pongs, no reads) and waits
  for the server's keep-alive to drop it;
* ``http``: a plain ``GET /healthz`` instead of a WebSocket.

Afterwards the server must be back at its baseline of file descriptors,
still serve a client, log no warning or traceback, and exit 0 on SIGINT.
Traffic goes to 127.0.0.1 only, and the run ends by itself.

    python benchmarks/soak.py                       # 2,000 connections, 3 rounds of 20 s
    python benchmarks/soak.py --connections 200 --duration 10
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import trio

from tests.raw import CLOSE, TEXT, Peer, client_frame, close_payload

KINDS = ["close"] * 12 + ["reset", "reset mid-frame", "vanish", "http"] + ["silent"]


@dataclass
class Figures:
    cycles: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    peak_fds: int = 0
    peak_rss: int = 0


# -- the server process ------------------------------------------------------------


def start_server(keep_alive: float, max_connections: int) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_ws",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--max-connections",
            str(max_connections),
            "--keep-alive-interval",
            str(keep_alive),
            "--keep-alive-timeout",
            str(keep_alive),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    banner = b""
    deadline = time.monotonic() + 20
    while b"Press Ctrl-C" not in banner and time.monotonic() < deadline:
        if selector.select(timeout=1):
            banner += os.read(proc.stdout.fileno(), 4096)
    match = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/", banner)
    if match is None:
        proc.kill()
        raise SystemExit(f"the server did not start: {banner!r}")
    return proc, int(match.group(1))


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_of(pid: int) -> int:
    """Resident memory in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- the client: tests/raw.py's Peer, with a fresh masking key per frame ---------------


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame with a fresh random masking key, as a browser sends."""
    return client_frame(opcode, payload, mask=os.urandom(4))


async def cycle(port: int, kind: str, messages: int, figures: Figures) -> None:
    client = await Peer.connect(port)
    try:
        if kind == "http":
            await client.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await client.read_head()).startswith(b"HTTP/1.1 200 ")
            return
        await client.upgrade()
        for i in range(messages):
            text = f"message {i} of a soak cycle".encode()
            await client.send(frame(TEXT, text))
            assert await client.next_frame(answer_pings=True) == (TEXT, text)
            figures.messages += 1
        if kind == "close":
            await client.send(frame(CLOSE, close_payload(1000)))
            assert (await client.next_frame(answer_pings=True))[0] == CLOSE
        elif kind == "reset":
            client.reset()
        elif kind == "reset mid-frame":
            await client.send(frame(TEXT, b"x" * 100)[:40])
            client.reset()
        elif kind == "silent":
            # Read nothing, answer nothing: keep-alive must notice, and close the socket.
            while await client.stream.receive_some(65536):
                pass
        # "vanish": just the FIN below
    finally:
        await client.aclose()


class AllOpen:
    """Counts the workers whose first WebSocket is open; the last one in opens the gate."""

    def __init__(self, expected: int, pid: int) -> None:
        self.expected = expected
        self.pid = pid
        self.count = 0
        self.gate = trio.Event()
        self.fds = 0

    async def arrive(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.fds = fds_of(self.pid)  # every client holds an open WebSocket right now
            self.gate.set()
        await self.gate.wait()


async def hold(port: int, messages: int, all_open: AllOpen, figures: Figures) -> None:
    """Open a WebSocket and keep it open until every other worker has one open too, then close it."""
    client = await Peer.open(port)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_pings, client)
            await all_open.arrive()
            nursery.cancel_scope.cancel()
        await client.send(frame(TEXT, b"all open"))
        assert await client.next_frame(answer_pings=True) == (TEXT, b"all open")
        figures.messages += 1
        await client.send(frame(CLOSE, close_payload(1000)))
        assert (await client.next_frame(answer_pings=True))[0] == CLOSE
    finally:
        await client.aclose()


async def answer_pings(client: Peer[trio.SocketStream]) -> None:
    """While a connection waits, keep it alive: answer the server's pings."""
    while True:
        await client.frame(answer_pings=True)


async def worker(
    port: int, first: int, deadline: float, messages: int, all_open: AllOpen, figures: Figures
) -> None:
    try:
        await hold(port, messages, all_open, figures)
    except (OSError, EOFError, AssertionError, trio.BrokenResourceError) as exc:
        figures.errors[f"hold: {type(exc).__name__}: {exc}"[:120]] += 1
        await all_open.arrive()
    else:
        figures.cycles["held open together"] += 1
    n = first
    while trio.current_time() < deadline:
        kind = KINDS[n % len(KINDS)]
        n += 1
        try:
            await cycle(port, kind, messages, figures)
        except (OSError, EOFError, AssertionError, trio.BrokenResourceError) as exc:
            figures.errors[f"{kind}: {type(exc).__name__}: {exc}"[:120]] += 1
        else:
            figures.cycles[kind] += 1


async def sample(pid: int, figures: Figures, done: trio.Event) -> None:
    while not done.is_set():
        figures.peak_fds = max(figures.peak_fds, fds_of(pid))
        figures.peak_rss = max(figures.peak_rss, rss_of(pid))
        with trio.move_on_after(0.5):
            await done.wait()


async def run(args: argparse.Namespace, pid: int, port: int) -> tuple[Figures, float, int]:
    """One round: every worker opens a WebSocket and holds it until all are open, then cycles."""
    figures = Figures()
    done = trio.Event()
    all_open = AllOpen(args.connections, pid)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample, pid, figures, done)
        async with trio.open_nursery() as workers:
            for i in range(args.connections):
                workers.start_soon(worker, port, i, start + args.duration, args.messages, all_open, figures)
                if i % 100 == 99:
                    await trio.sleep(0.05)  # ramp up, so the listen backlog is not the bottleneck
        done.set()
    figures.peak_fds = max(figures.peak_fds, all_open.fds)  # the sampler may have missed that moment
    return figures, trio.current_time() - start, all_open.fds


async def one_echo(port: int) -> None:
    with trio.fail_after(10):
        await cycle(port, "close", 1, Figures())


def settle(pid: int, baseline: int, limit: float) -> float:
    """Wait (at most ``limit`` s) for the server's fds to return to ``baseline``; the time it took."""
    start = time.monotonic()
    while fds_of(pid) > baseline and time.monotonic() - start < limit:
        time.sleep(0.1)
    return time.monotonic() - start


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000, help="clients at the same time")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of cycling per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, to see whether memory keeps growing")
    parser.add_argument("--messages", type=int, default=3, help="echoes per WebSocket cycle")
    parser.add_argument(
        "--keep-alive", type=float, default=2.0, help="server keep-alive interval and timeout"
    )
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.connections * 2 + 200
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"need {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))  # the server inherits it

    proc, port = start_server(args.keep_alive, max_connections=args.connections + 100)
    rounds: list[tuple[Figures, float, int, int, float, int]] = []
    try:
        time.sleep(0.5)
        idle_fds, idle_rss = fds_of(proc.pid), rss_of(proc.pid)
        trio.run(one_echo, port)  # the first connection imports and caches what every later one uses
        settle(proc.pid, idle_fds, 5)
        warm_fds, warm_rss = fds_of(proc.pid), rss_of(proc.pid)
        for _ in range(args.rounds):
            figures, elapsed, all_open_fds = trio.run(run, args, proc.pid, port)
            settled_in = settle(proc.pid, warm_fds, 3 * args.keep_alive + 10)
            rounds.append((figures, elapsed, fds_of(proc.pid), rss_of(proc.pid), settled_in, all_open_fds))
        trio.run(one_echo, port)
        still_serves = True
    except Exception:
        still_serves = False
        raise
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    log_lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]

    total = Figures()
    for figures, *_ in rounds:
        total.cycles.update(figures.cycles)
        total.errors.update(figures.errors)
        total.messages += figures.messages
    elapsed = sum(r[1] for r in rounds)
    cycles = sum(total.cycles.values())
    print(
        f"trio_ws soak: {args.connections} concurrent clients, {len(rounds)} rounds, "
        f"{elapsed:.1f} s in all, on 127.0.0.1"
    )
    print(f"  cycles completed      {cycles} ({cycles / elapsed:.0f}/s)")
    for kind, count in sorted(total.cycles.items()):
        print(f"    {kind:<20} {count}")
    print(f"  messages echoed       {total.messages} ({total.messages / elapsed:.0f}/s)")
    print(f"  client-side errors    {sum(total.errors.values())}")
    for text, count in total.errors.most_common(8):
        print(f"    {count:>6} x {text}")
    print("  server process        open fds            RSS")
    print(f"    idle                {idle_fds:<19} {mib(idle_rss)}")
    print(f"    after one echo      {warm_fds:<19} {mib(warm_rss)}")
    for i, (figures, _, fds, rss, settled_in, all_open_fds) in enumerate(rounds, 1):
        print(f"    round {i}, all open   {all_open_fds:<19}")
        print(f"    round {i} peak        {figures.peak_fds:<19} {mib(figures.peak_rss)}")
        print(f"    round {i} after       {f'{fds} ({settled_in:.1f} s to settle)':<19} {mib(rss)}")
    last_fds, last_rss = rounds[-1][2], rounds[-1][3]
    print(f"  fds after / before    {last_fds / warm_fds:.2f}")
    print(
        f"  RSS last / first round {last_rss / rounds[0][3]:.2f}  (after / before: {last_rss / warm_rss:.2f})"
    )
    print(f"  still serves a client {'yes' if still_serves else 'NO'}")
    print(f"  exit status on SIGINT {proc.returncode}")
    print(
        f"  server log lines      {len(log_lines)} at WARNING or above, tracebacks: {err.count(b'Traceback')}"
    )
    for line in log_lines[:5]:
        print(f"    {line[:150]}")


if __name__ == "__main__":
    main()
