"""Hostile clients against the echo server, over real sockets, with the bounds they must not break.

``python -m benchmarks.hostile`` runs each scenario against a fresh server
process (``trio_ws.echo_app()`` with default ``Options`` except where a
scenario says otherwise) and prints what the server held or how long a
bystander waited. With ``--check`` it exits with status 1 if a bound is
broken; CI runs it that way with short durations. The scenarios are the
ones issue 15 found:

* ``stuck-close`` (item 1): five clients with a tiny receive buffer each
  send a 1 MiB message, stop reading once the echo is stuck in ``send``,
  then send a Close frame. Bound: every connection freed within
  ``close_timeout`` plus a margin, and a new upgrade admitted again under
  ``max_connections=5``.
* ``empty-fragments`` (item 2): a message that never ends, made of empty
  continuation frames, while the client answers pings. Bound: Close 1009
  after at most ``max_message_size // 64`` frames, memory flat.
* ``tiny-fragments`` (item 2): a message of just under ``max_message_size``
  in one-byte fragments, and one in 64-byte fragments. Bound: the first is
  refused with 1009, and the memory the second holds while it arrives stays
  within the limit plus a small constant.
* ``starvation`` (item 3): a bystander's echo round trips, alone and then
  while another client floods unsolicited Pongs or empty continuation
  frames. Bound: the bystander's 99th percentile stays in milliseconds.
* ``non-reading`` (item 4): clients that send the largest message the
  server takes, again and again, and never read. Bound: what each
  connection pins stays near twice ``max_message_size``.

And two that issue 19 found (items 1 and 2), where the reader has stopped
reading: five clients with a tiny receive buffer send two 1 MiB messages
and read nothing, so the echo of the first is stuck in ``send`` and the
second waits in the handler's queue. Then:

* ``reset-while-stuck`` (item 1): each resets TCP (``SO_LINGER`` 0).
  Bound: every connection, its fd and its slot freed within a second
  (keep-alive 2 + 2 s, which is not what frees them), and a new upgrade
  admitted under ``max_connections=5``.
* ``close-while-paused`` (item 2): each sends a Close and keeps its socket
  open. Bound: every connection freed within ``close_timeout`` plus a
  second, with keep-alive off.

Memory is read two ways: the server process's RSS from ``/proc``, and the
Python heap as ``tracemalloc`` sees it (the server runs with it on for the
memory scenarios and answers ``GET /memory``). Everything runs on 127.0.0.1.

    python -m benchmarks.hostile                         # every scenario, the default durations
    python -m benchmarks.hostile --duration 2 --check    # what CI runs
    python -m benchmarks.hostile --scenarios starvation --duration 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import signal
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from tests.raw import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PONG,
    TEXT,
    ZERO_MASK,
    Peer,
    Refused,
    client_frame,
    close_payload,
)

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LIMIT = 2**20  # max_message_size, the server's default
STARTUP_DEADLINE = 30.0


# -- the server process -------------------------------------------------------------


async def _serve(options: dict[str, Any]) -> None:
    """The server role: the echo app, plus ``GET /memory`` for the figures a scenario reads."""
    import tracemalloc

    import trio_ws

    app = trio_ws.echo_app()
    server: trio_ws.Server | None = None

    @app.route("/memory")
    async def memory(request: trio_ws.Request) -> trio_ws.Response:
        if request.query == "reset":
            tracemalloc.reset_peak()
        current, peak = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (0, 0)
        assert server is not None
        figures = {
            "traced": current,
            "traced_peak": peak,
            "rss": _rss_of(os.getpid()),
            "open_websockets": server.statistics().open_websockets,
            "fds": len(os.listdir("/proc/self/fd")),
        }
        return trio_ws.Response(200, json.dumps(figures).encode(), "application/json")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trio_ws.serve, app, HOST, 0, options=trio_ws.Options(**options)))
        print(f"listening on {server.port}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                await server.aclose()  # a graceful stop, as the CLI's
                break


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: bytes = b""

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, self.log = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.log = self.proc.communicate()
        alarms = [line for line in self.log.decode(errors="replace").splitlines() if "Traceback" in line]
        if alarms or self.proc.returncode not in (0, -signal.SIGINT, 130):
            print(self.log.decode(errors="replace")[-4000:], file=sys.stderr)

    def rss(self) -> int:
        return _rss_of(self.proc.pid)


def start_server(options: dict[str, Any], *, traced: bool = False) -> Server:
    command = [sys.executable]
    if traced:
        command += ["-X", "tracemalloc=1"]
    command += ["-m", "benchmarks.hostile", "--serve", json.dumps(options)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    banner = b""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while b"\n" not in banner and time.monotonic() < deadline:
        if selector.select(timeout=1):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            banner += chunk
    match = re.match(rb"listening on (\d+)", banner)
    if match is None:
        proc.kill()
        raise SystemExit(
            f"the server did not start: {banner!r} {proc.stderr.read() if proc.stderr else ''!r}"
        )
    return Server(proc, int(match.group(1)))


def _rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def memory(port: int, *, reset: bool = False) -> dict[str, int]:
    """The server's figures from ``GET /memory`` (``reset`` starts a new tracemalloc peak)."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            target = "/memory?reset" if reset else "/memory"
            # Connection: close, or keep-alive would hold the answer's end until http_idle_timeout.
            request = f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            raw = b""
            while chunk := await stream.receive_some(65536):
                raw += chunk
    figures: dict[str, int] = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return figures


# -- a raw client: tests/raw.py's Peer, and its frames ------------------------------------

# A zero masking key leaves the payload as it is, so frames cost the client nothing to build.
frame = partial(client_frame, mask=ZERO_MASK)


def close_frame(code: int = 1000) -> bytes:
    return frame(CLOSE, close_payload(code))


async def read_message(client: Peer[trio.SocketStream]) -> tuple[int, bytes]:
    """The next whole message from the server, fragments joined; or ``(CLOSE, payload)``."""
    parts: list[bytes] = []
    first = None
    while True:
        fin, _, opcode, payload = await client.frame(answer_pings=True)
        if opcode == CLOSE:
            return opcode, payload
        if first is None:
            first = opcode
        parts.append(payload)
        if fin:
            return first, b"".join(parts)


def close_code(payload: bytes) -> str:
    if len(payload) < 2:
        return "no code"
    code = struct.unpack("!H", payload[:2])[0]
    reason = payload[2:].decode(errors="replace")
    return f"{code} ({reason})" if reason else str(code)


async def send_stalls(stream: trio.SocketStream, data: bytes, patience: float) -> bool:
    """Send ``data``; True if the peer stopped taking bytes for ``patience`` seconds."""
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        with trio.move_on_after(patience) as waited:
            sent += await stream.socket.send(view[sent : sent + 65536])
        if waited.cancelled_caught:
            return True
    return False


# -- the scenarios -------------------------------------------------------------------


@dataclass
class Outcome:
    """What a scenario measured: lines to print, and the bounds it broke."""

    name: str
    lines: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def bound(self, held: bool, what: str) -> None:
        self.lines.append(f"  [{'ok' if held else 'BROKEN'}] {what}")
        if not held:
            self.broken.append(what)


def mib(size: float) -> str:
    return f"{size / 2**20:.2f} MiB"


async def stuck_close(args: argparse.Namespace, out: Outcome) -> None:
    close_timeout = args.close_timeout
    options = {
        "keep_alive_interval": 2,
        "keep_alive_timeout": 2,
        "max_connections": 5,
        "close_timeout": close_timeout,
    }
    server = start_server(options)
    try:
        clients = []
        for _ in range(5):
            client = await Peer.open(server.port, receive_buffer=4096)
            clients.append(client)
        rss_before = server.rss()
        message = frame(BINARY, os.urandom(LIMIT))
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(send_stalls, client.stream, message, 5.0)
        await trio.sleep(1.0)  # the echoes fill the small windows, and block in send
        stuck_rss = server.rss()
        for client in clients:
            await client.stream.send_all(close_frame(1000))
        start = time.monotonic()
        freed_after = None
        open_now = 5
        while time.monotonic() - start < max(args.duration, close_timeout + 3):
            open_now = (await memory(server.port))["open_websockets"]
            if open_now == 0:
                freed_after = time.monotonic() - start
                break
            await trio.sleep(0.1)
        try:
            late = await Peer.open(server.port)
            sixth = "101 (admitted)"
            await late.aclose()
        except Refused as exc:
            sixth = str(exc)
        for client in clients:
            await client.aclose()
        freed = f"{open_now} still open" if freed_after is None else f"all freed after {freed_after:.1f} s"
        out.say(
            f"  5 stuck closes, close_timeout {close_timeout} s: {freed} "
            f"(waited up to {time.monotonic() - start:.1f} s); a sixth upgrade then gets {sixth}"
        )
        out.say(f"  RSS held while stuck: {mib((stuck_rss - rss_before) / 5)} per connection")
        out.bound(
            freed_after is not None and freed_after <= close_timeout + 2.0,
            f"every stuck close freed within close_timeout + 2 s ({close_timeout + 2:.0f} s)",
        )
        out.bound(sixth.startswith("101"), "a new upgrade is admitted once they are freed")
    finally:
        server.stop()


async def empty_fragments(args: argparse.Namespace, out: Outcome) -> None:
    # Not traced: tracemalloc would slow the server down ten times, and the flood with it.
    server = start_server({})
    try:
        rss_before = server.rss()
        client = await Peer.open(server.port)
        await client.stream.send_all(frame(BINARY, b"x", fin=False))
        chunk = frame(CONTINUATION, fin=False) * (64 * 1024 // 6)
        per_chunk = len(chunk) // 6
        sent = 0
        closed: list[str] = []
        gone = trio.Event()

        async def read_replies() -> None:
            # Answers the server's pings, as a live client would, and notes its Close.
            try:
                opcode, payload = await client.next_frame(answer_pings=True)
                if opcode == CLOSE:
                    closed.append(close_code(payload))
            except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
                closed.append("TCP closed without a Close frame")
            gone.set()

        start = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_replies)
            try:
                while time.monotonic() - start < args.duration and not closed:
                    await client.stream.send_all(chunk)
                    sent += per_chunk
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            with trio.move_on_after(5):
                await gone.wait()
            nursery.cancel_scope.cancel()
        elapsed = time.monotonic() - start
        growth = server.rss() - rss_before
        await client.aclose()
        out.say(
            f"  {sent:,} empty continuation frames in {elapsed:.1f} s; the server "
            f"{'closed with ' + closed[0] if closed else 'never closed'}; RSS growth {mib(growth)}"
        )
        out.bound(bool(closed) and closed[0].startswith("1009"), "the flood is stopped with Close 1009")
        out.bound(growth < 4 * 2**20, "RSS grows by less than 4 MiB")
    finally:
        server.stop()


async def tiny_fragments(args: argparse.Namespace, out: Outcome) -> None:
    for size in (1, 64):
        # One-byte fragments are too many for tracemalloc's pace: RSS only, there.
        traced = size > 1
        server = start_server({}, traced=traced)
        try:
            count = (LIMIT - 1) // size if size == 1 else LIMIT // size
            before = await memory(server.port, reset=True)
            client = await Peer.open(server.port)
            piece = b"y" * size
            data = b"".join(
                [frame(BINARY, piece, fin=False)] + [frame(CONTINUATION, piece, fin=False)] * (count - 2)
            )
            outcome = "held"
            try:
                await client.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                outcome = "connection dropped while sending"
            del data
            # Everything sent so far is read: wait until the server's memory stops changing.
            holding = await _settled(server.port, "traced" if traced else "rss")
            with trio.move_on_after(0.2):
                try:
                    opcode, payload = await client.next_frame(answer_pings=True)
                except (EOFError, trio.BrokenResourceError) as exc:
                    opcode, payload = -1, str(exc).encode()
                if opcode == CLOSE:
                    outcome = f"closed with {close_code(payload)}"
            if outcome == "held":
                await client.stream.send_all(frame(CONTINUATION, piece))
                with trio.fail_after(60):
                    opcode, payload = await read_message(client)
                echoed = opcode == BINARY and len(payload) == (count - 1) * size + size
                outcome = f"echoed whole: {echoed}"
            await client.aclose()
            key = "traced" if traced else "rss"
            in_progress = holding[key] - before[key]
            out.say(
                f"  {count:,} fragments of {size} B ({mib(count * size)}): {outcome}; "
                f"{'heap' if traced else 'RSS'} held while it arrived: {mib(in_progress)}"
            )
            if size == 1:
                out.bound(outcome.startswith("closed with 1009"), "one-byte fragments are refused with 1009")
                out.bound(in_progress < 4 * 2**20, "and the RSS grows by less than 4 MiB before that")
            else:
                out.bound(outcome == "echoed whole: True", "64-byte fragments up to the limit are accepted")
                out.bound(
                    in_progress < LIMIT * 1.25 + 2**18,
                    "a message in progress holds at most the limit, plus a margin",
                )
        finally:
            server.stop()


async def _settled(port: int, key: str = "traced") -> dict[str, int]:
    """The server's figures once its memory (``key``) has stopped changing for a moment."""
    last = await memory(port)
    for _ in range(600):
        await trio.sleep(0.2)
        now = await memory(port)
        if abs(now[key] - last[key]) < 16384:
            return now
        last = now
    return last


async def starvation(args: argparse.Namespace, out: Outcome) -> None:
    server = start_server({})
    try:
        bystander = await Peer.open(server.port)
        alone = await _round_trips(bystander, args.duration)
        out.say(f"  bystander alone:               {_latency(alone)}")
        floods: dict[str, Callable[[int, trio.Event], Coroutine[Any, Any, str]]] = {
            "unsolicited Pongs": _flood_pongs,
            "empty continuations": _flood_continuations,
        }
        for name, flood in floods.items():
            done = trio.Event()
            result: list[str] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_collect, flood, server.port, done, result)
                await trio.sleep(0.3)  # let the flood get going
                during = await _round_trips(bystander, args.duration)
                done.set()
            out.say(f"  bystander during {name + ':':<15}{_latency(during)}   ({result[0]})")
            p99 = _percentile(during, 0.99)
            out.bound(p99 < 0.05, f"with {name}, the bystander's p99 round trip stays under 50 ms")
        await bystander.aclose()
    finally:
        server.stop()


async def _collect(
    flood: Callable[[int, trio.Event], Coroutine[Any, Any, str]], port: int, done: trio.Event, into: list[str]
) -> None:
    into.append(await flood(port, done))


async def _round_trips(client: Peer[trio.SocketStream], duration: float) -> list[float]:
    payload = b"0123456789abcdef0123456789abcdef"
    message = frame(TEXT, payload)
    times = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        start = time.perf_counter()
        await client.stream.send_all(message)
        opcode, echoed = await client.next_frame(answer_pings=True)
        times.append(time.perf_counter() - start)
        assert (opcode, echoed) == (TEXT, payload), (opcode, echoed)
    return times


async def _flood_pongs(port: int, done: trio.Event) -> str:
    client = await Peer.open(port)
    chunk = frame(PONG) * (256 * 1024 // 6)
    sent = 0
    while not done.is_set():
        await client.stream.send_all(chunk)
        sent += len(chunk) // 6
    await client.aclose()
    return f"{sent:,} pongs sent"


async def _flood_continuations(port: int, done: trio.Event) -> str:
    chunk = frame(CONTINUATION, fin=False) * (256 * 1024 // 6)
    sent = connections = 0
    while not done.is_set():
        # A server that refuses the flood closes the connection: come back and go on.
        client = await Peer.open(port)
        connections += 1
        await client.stream.send_all(frame(BINARY, b"x", fin=False))
        try:
            while not done.is_set():
                await client.stream.send_all(chunk)
                sent += len(chunk) // 6
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await client.aclose()
    return f"{sent:,} frames sent over {connections} connection(s)"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def _latency(times: list[float]) -> str:
    if not times:
        return "no round trip finished"
    return (
        f"{len(times):>6} round trips, p50 {statistics.median(times) * 1e3:7.2f} ms, "
        f"p99 {_percentile(times, 0.99) * 1e3:7.2f} ms, max {max(times) * 1e3:7.2f} ms"
    )


NON_READING_KINDS = {
    # name: (opcode, payload), each the largest message the limit allows (or the probe's text)
    "binary, 1 MiB": (BINARY, b"b" * LIMIT),
    "text, 1 MiB of ASCII": (TEXT, b"a" * LIMIT),
    "text, 1 MiB of UTF-8 in 4-byte characters": (TEXT, "\U0001f600".encode() * (LIMIT // 4)),
    "text, 1 MiB of UTF-8, ASCII and one 4-byte character": (
        TEXT,
        b"a" * (LIMIT - 4) + "\U0001f600".encode(),
    ),
    "text, 1 Mi characters of 4 bytes (4 MiB of UTF-8)": (TEXT, "\U0001f600".encode() * LIMIT),
}


async def non_reading(args: argparse.Namespace, out: Outcome) -> None:
    connections = 5
    for kind, (opcode, payload) in NON_READING_KINDS.items():
        server = start_server({}, traced=True)
        try:
            # Warm up: one echo of the same kind, so the allocator's first growth is not counted.
            warm = await Peer.open(server.port)
            await warm.stream.send_all(frame(opcode, payload))
            with trio.fail_after(30):
                reply, _ = await read_message(warm)
            await warm.stream.send_all(close_frame())
            await warm.aclose()
            await trio.sleep(0.2)
            before = await memory(server.port)
            message = frame(opcode, payload)
            clients = [await Peer.open(server.port, receive_buffer=4096) for _ in range(connections)]
            refused: list[str] = []
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(_send_until_stalled, client, message, refused)
            held = await _settled(server.port)
            for client in clients:
                with trio.move_on_after(0.1):
                    try:
                        opcode_seen, data = await client.next_frame(answer_pings=True)
                    except (OSError, EOFError, trio.BrokenResourceError) as exc:
                        opcode_seen, data = -1, str(exc).encode()
                    if opcode_seen == CLOSE:
                        refused.append(close_code(data))
                await client.aclose()
            per_connection = (held["traced"] - before["traced"]) / connections
            rss_per_connection = (held["rss"] - before["rss"]) / connections
            note = f"; the server refused it: {refused[0]}" if refused else ""
            out.say(
                f"  {kind}: {mib(per_connection)} of heap per connection "
                f"({per_connection / LIMIT:.1f}x the limit), RSS {mib(rss_per_connection)}{note}"
            )
            if kind.startswith(("binary", "text, 1 MiB of ASCII", "text, 1 MiB of UTF-8 in")):
                out.bound(per_connection <= 2.5 * LIMIT, f"{kind}: at most 2.5x the limit per connection")
            if kind.startswith("text, 1 Mi characters"):
                out.bound(bool(refused), f"{kind}: refused (1009, then TCP closed)")
            del reply
        finally:
            server.stop()


async def _send_until_stalled(client: Peer[trio.SocketStream], message: bytes, refused: list[str]) -> None:
    """Send ``message`` again and again until the server stops taking bytes: it holds all it will."""
    try:
        for _ in range(64):
            if await send_stalls(client.stream, message, 1.0):
                return
        refused.append("never stalled")
    except OSError as exc:
        refused.append(f"the connection broke: {exc}")


async def _stuck_clients(port: int, count: int) -> list[Peer[trio.SocketStream]]:
    """``count`` clients whose echo is stuck in send and whose second message waits unread."""
    clients = [await Peer.open(port, receive_buffer=4096) for _ in range(count)]
    two = frame(BINARY, os.urandom(LIMIT)) * 2
    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(send_stalls, client.stream, two, 1.0)
    await trio.sleep(0.5)  # the server reads the rest of the second message, and stops reading
    return clients


async def _freed_within(port: int, bound: float) -> tuple[float | None, dict[str, int]]:
    """Seconds until the server has no WebSocket open (``None`` if not within ``bound`` + 3 s),
    and its figures then."""
    start = time.monotonic()
    while True:
        figures = await memory(port)
        if figures["open_websockets"] == 0:
            return time.monotonic() - start, figures
        if time.monotonic() - start > bound + 3:
            return None, figures
        await trio.sleep(0.02)


async def reset_while_stuck(args: argparse.Namespace, out: Outcome) -> None:
    options = {"keep_alive_interval": 2, "keep_alive_timeout": 2, "max_connections": 5}
    server = start_server(options)
    try:
        before = await memory(server.port)
        clients = await _stuck_clients(server.port, 5)
        stuck = await memory(server.port)
        for client in clients:
            client.reset()
            await client.aclose()
        freed_after, after = await _freed_within(server.port, 1.0)
        try:
            late = await Peer.open(server.port)
            sixth = "101 (admitted)"
            await late.aclose()
        except Refused as exc:
            sixth = str(exc)
        freed = "not freed" if freed_after is None else f"freed after {freed_after:.2f} s"
        out.say(
            f"  5 resets with two 1 MiB messages unread: {freed}; fds {before['fds']} -> "
            f"{stuck['fds']} while stuck -> {after['fds']}; a sixth upgrade then gets {sixth}"
        )
        out.bound(freed_after is not None and freed_after <= 1.0, "every reset connection freed within 1 s")
        out.bound(after["fds"] <= before["fds"], "their file descriptors are closed")
        out.bound(sixth.startswith("101"), "a new upgrade is admitted once they are freed")
    finally:
        server.stop()


async def close_while_paused(args: argparse.Namespace, out: Outcome) -> None:
    close_timeout = args.close_timeout
    options = {"keep_alive_interval": None, "close_timeout": close_timeout}
    server = start_server(options)
    try:
        clients = await _stuck_clients(server.port, 5)
        for client in clients:
            await client.stream.send_all(close_frame(1000))
        freed_after, _ = await _freed_within(server.port, close_timeout + 1)
        for client in clients:
            await client.aclose()
        freed = "not freed" if freed_after is None else f"freed after {freed_after:.1f} s"
        out.say(
            f"  5 Closes behind two unread 1 MiB messages, keep-alive off, close_timeout "
            f"{close_timeout} s: {freed}"
        )
        out.bound(
            freed_after is not None and freed_after <= close_timeout + 1,
            f"every such close freed within close_timeout + 1 s ({close_timeout + 1:.0f} s)",
        )
    finally:
        server.stop()


SCENARIOS: dict[str, Callable[[argparse.Namespace, Outcome], Coroutine[Any, Any, None]]] = {
    "stuck-close": stuck_close,
    "empty-fragments": empty_fragments,
    "tiny-fragments": tiny_fragments,
    "starvation": starvation,
    "non-reading": non_reading,
    "reset-while-stuck": reset_while_stuck,
    "close-while-paused": close_while_paused,
}


async def run(args: argparse.Namespace) -> list[Outcome]:
    outcomes = []
    for name in args.scenarios:
        out = Outcome(name)
        print(f"{name}:", flush=True)
        started = time.monotonic()
        await SCENARIOS[name](args, out)
        for line in out.lines:
            print(line, flush=True)
        print(f"  ({time.monotonic() - started:.1f} s)", flush=True)
        outcomes.append(out)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", metavar="OPTIONS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        type=lambda text: text.split(","),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per flood or measurement")
    parser.add_argument("--close-timeout", type=float, default=2.0, help="the server's close_timeout")
    parser.add_argument("--check", action="store_true", help="exit 1 if a bound is broken")
    args = parser.parse_args()
    if args.serve is not None:
        import logging

        logging.basicConfig(level=logging.WARNING)
        with contextlib.suppress(KeyboardInterrupt):  # SIGINT is how a scenario stops it
            trio.run(_serve, json.loads(args.serve))
        return
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
    outcomes = trio.run(run, args)
    broken = [f"{o.name}: {what}" for o in outcomes for what in o.broken]
    if broken:
        print(f"{len(broken)} bound(s) broken:")
        for line in broken:
            print(f"  {line}")
    else:
        print("every bound held")
    if args.check and broken:
        sys.exit(1)


if __name__ == "__main__":
    main()
