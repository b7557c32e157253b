"""The load generator: raw sockets and pre-built masked frames, so the client costs little.

``python -m benchmarks.load --port N --server-pid PID [--raw] --scenarios a,b,...``
runs the scenarios one after another against a server that is already
listening, and prints one JSON object per scenario on stdout, one a line.

Why raw sockets: a WebSocket client library would spend as much CPU per
message as the server under test, and with two cores the client would
become the bottleneck. Here each message is one ``sendall`` of bytes built
before the clock starts, and a reply is found by reading its frame header;
the payload is checked once per connection, not per message. Each result
carries ``client_cpu`` (CPU seconds of this process over wall seconds, so
1.0 would mean the generator was saturated) and ``server_cpu`` (the same
for the server's process), and the throughput per CPU-second the server
used, which other work on a shared machine disturbs much less than the
throughput per wall-clock second.

``--raw`` talks to the raw TCP echo: no handshake, and the echoed bytes are
the very masked frames that were sent, which the same frame reader counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import selectors
import socket
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass

from tests.raw import (
    BINARY,
    CLOSE,
    RSV1,
    TEXT,
    ZERO_MASK,
    client_frame,
    close_payload,
    frame_end,
    upgrade_request,
)

from .harness import raise_file_limit

HOST = "127.0.0.1"
RECEIVE_SIZE = 256 * 1024
CONNECT_BATCH = 100


@dataclass(frozen=True)
class Scenario:
    title: str
    connections: int
    in_flight: int
    payload_size: int
    binary: bool
    # Offer permessage-deflate, as browsers do, and compress every message if the server takes it.
    deflate: bool = False


SCENARIOS = {
    "rtt1": Scenario("1 conn round-trip, 32 B text", 1, 1, 32, binary=False),
    "rtt50": Scenario("50 conns round-trip, 32 B text", 50, 1, 32, binary=False),
    "pipe50": Scenario("50 conns x 16 in flight, 32 B text", 50, 16, 32, binary=False),
    "bin4": Scenario("4 conns round-trip, 64 KiB binary", 4, 1, 64 * 1024, binary=True),
    "deflate50": Scenario("50 conns round-trip, 32 B text, deflate", 50, 1, 32, binary=False, deflate=True),
    "deflate4": Scenario(
        "4 conns round-trip, 64 KiB binary, deflate", 4, 1, 64 * 1024, binary=True, deflate=True
    ),
}
# What the client offers in the deflate scenarios: each message compressed on its own, both ways,
# so one compressed frame can be sent again and again, and the first reply inflated to check it.
DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
IDLE_TITLE = "idle connections: server RSS each"
# A normal closure, masked with the all-zero key.
CLOSE_FRAME = client_frame(CLOSE, close_payload(1000), mask=ZERO_MASK)


def masked_frame(payload: bytes, binary: bool, mask: bytes, *, compressed: bool = False) -> bytes:
    """One client frame (FIN set, masked with ``mask``) carrying ``payload``; with ``compressed``,
    deflated (RFC 7692) with RSV1 set."""
    if compressed:
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        payload = (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
    return client_frame(BINARY if binary else TEXT, payload, rsv=RSV1 if compressed else 0, mask=mask)


def frame_payload(frame: bytes) -> bytes:
    """The unmasked (and, if RSV1 is set, inflated) payload of one whole frame, to check the first echo."""
    if frame[0] & 0x40:
        deflated = frame_payload(bytes([frame[0] & ~0x40]) + frame[1:])
        return zlib.decompressobj(-15).decompress(deflated + b"\0\0\xff\xff")
    buf = bytearray(frame)
    end = frame_end(buf, 0)
    size = buf[1] & 0x7F
    pos = 2 + (2 if size == 126 else 8 if size == 127 else 0)
    if buf[1] & 0x80:
        key = bytes(buf[pos : pos + 4])
        pos += 4
        data = bytes(buf[pos:end])
        key = (key * (len(data) // 4 + 1))[: len(data)]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(len(data), "big")
    return bytes(buf[pos:end])


class Client:
    """One connection: its socket, unread bytes and the send times of replies still due."""

    def __init__(self, port: int, raw: bool, deflate: bool = False) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.sent: deque[float] = deque()
        self.raw = raw
        self.deflate = deflate
        # Whether the server took permessage-deflate: then this client sends compressed frames.
        self.compressing = False

    def send_handshake(self, port: int) -> None:
        if not self.raw:
            extensions = [f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}"] if self.deflate else []
            self.sock.sendall(upgrade_request(host=f"{HOST}:{port}", extra=extensions))

    def finish_handshake(self) -> None:
        if self.raw:
            return
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("server closed during the handshake")
            self.buf += data
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
        self.compressing = b"permessage-deflate" in head.lower()
        self.buf = bytearray(rest)

    def read_frame(self) -> bytes:
        """Block until one whole frame is here; return it (for the first echo's check)."""
        while True:
            end = frame_end(self.buf, 0)
            if 0 <= end <= len(self.buf):
                frame = bytes(self.buf[:end])
                del self.buf[:end]
                return frame
            data = self.sock.recv(RECEIVE_SIZE)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data


def open_clients(port: int, count: int, raw: bool, deflate: bool = False) -> list[Client]:
    """Open ``count`` connections, in batches so the listen backlog never overflows."""
    clients: list[Client] = []
    while len(clients) < count:
        batch = [Client(port, raw, deflate) for _ in range(min(CONNECT_BATCH, count - len(clients)))]
        for client in batch:
            client.send_handshake(port)
        for client in batch:
            client.finish_handshake()
        clients += batch
    return clients


def check_echo(clients: list[Client], frame: bytes, payload: bytes, compressed: bytes = b"") -> None:
    """One message on every connection, checked byte for byte: the servers must really echo.

    A client whose server took permessage-deflate sends ``compressed`` instead of ``frame``.
    """
    for client in clients:
        client.sock.sendall(compressed if client.compressing else frame)
    for client in clients:
        if frame_payload(client.read_frame()) != payload:
            raise AssertionError("the server's echo differs from the message sent")


def close_clients(clients: list[Client], server_pid: int) -> None:
    """Close every connection cleanly, then wait until the server has caught up.

    A WebSocket gets a Close (1000) and we read until the server's answer
    and its FIN; the raw echo gets our FIN. So no server ever writes to a
    reset socket, and none logs an error. Without the wait, the next
    scenario would be measured while the server still tears down this one.
    """
    for client in clients:
        if client.raw:
            client.sock.shutdown(socket.SHUT_WR)
        else:
            client.sock.sendall(CLOSE_FRAME)
    for client in clients:
        client.sock.settimeout(10.0)
        with contextlib.suppress(OSError):
            while client.sock.recv(RECEIVE_SIZE):
                pass
        client.sock.close()
    wait_until_idle(server_pid)


def wait_until_idle(pid: int, timeout: float = 10.0) -> None:
    """Return once process ``pid`` uses under 5% of a CPU over 50 ms (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = process_cpu_seconds(pid)
        time.sleep(0.05)
        if process_cpu_seconds(pid) - before < 0.0025:
            return


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def payload_for(scenario: Scenario) -> bytes:
    if scenario.binary and not scenario.deflate:
        return random.Random(5).randbytes(scenario.payload_size)
    return (b"hello, trio_ws! " * (scenario.payload_size // 16 + 1))[: scenario.payload_size]


def run_scenario(
    name: str, port: int, server_pid: int, raw: bool, warmup: float, duration: float
) -> dict[str, object]:
    """Keep ``in_flight`` messages outstanding on each connection; count replies in the window."""
    scenario = SCENARIOS[name]
    payload = payload_for(scenario)
    mask = os.urandom(4)
    frame = masked_frame(payload, scenario.binary, mask)
    compressed = masked_frame(payload, scenario.binary, mask, compressed=True) if scenario.deflate else b""
    clients = open_clients(port, scenario.connections, raw, scenario.deflate)
    check_echo(clients, frame, payload, compressed)
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)

    latencies: list[float] = []
    replies = 0
    start = time.perf_counter()
    window_start = start + warmup
    window_end = window_start + duration
    measuring = False
    cpu_start = server_cpu_start = 0.0
    batches = [frame * n for n in range(scenario.in_flight + 1)]
    compressed_batches = [compressed * n for n in range(scenario.in_flight + 1)]
    for client in clients:
        client.sent.extend([start] * scenario.in_flight)
        client.sock.sendall((compressed_batches if client.compressing else batches)[scenario.in_flight])
    now = start
    # On a loaded machine a short window may see no reply at all: it then lasts until the first one
    # (the messages in flight are still coming), so every figure has something to divide.
    while now < window_end or (replies == 0 and now < window_end + 30):
        for key, _ in selector.select(timeout=1.0):
            client = key.data
            data = client.sock.recv(RECEIVE_SIZE)
            if not data:
                raise ConnectionError(f"{name}: the server closed a connection")
            buf = client.buf
            buf += data
            pos = 0
            done = 0
            while True:
                end = frame_end(buf, pos)
                if end < 0 or end > len(buf):
                    break
                # Count whole data messages; a ping or pong the server may send is skipped.
                if buf[pos] & 0x8F in (0x81, 0x82):
                    done += 1
                pos = end
            if pos:
                del buf[:pos]
            if not done:
                continue
            now = time.perf_counter()
            sent = client.sent
            if measuring:
                for _ in range(done):
                    latencies.append(now - sent.popleft())
                replies += done
            else:
                for _ in range(done):
                    sent.popleft()
            if now < window_end:
                sent.extend([now] * done)
                client.sock.sendall((compressed_batches if client.compressing else batches)[done])
        now = time.perf_counter()
        if not measuring and now >= window_start:
            measuring = True
            # The window lasts `duration` from when it really starts, even if the warm-up overran it
            # (a slow round on a loaded machine made it zero seconds long: a division by zero).
            window_start, window_end = now, now + duration
            cpu_start, server_cpu_start = cpu_seconds(), process_cpu_seconds(server_pid)
    elapsed = now - window_start
    _drain(selector, clients)
    client_cpu = (cpu_seconds() - cpu_start) / elapsed
    server_cpu = (process_cpu_seconds(server_pid) - server_cpu_start) / elapsed
    selector.close()
    close_clients(clients, server_pid)
    latencies.sort()
    return {
        "scenario": name,
        "messages_per_s": replies / elapsed,
        "mb_per_s": replies * scenario.payload_size / elapsed / 1e6,
        "p50_us": _percentile(latencies, 0.50) * 1e6,
        "p99_us": _percentile(latencies, 0.99) * 1e6,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
        # Throughput per second of CPU the server got: steadier than msg/s on a shared machine.
        "messages_per_cpu_s": replies / elapsed / server_cpu if server_cpu else float("nan"),
        "mb_per_cpu_s": replies * scenario.payload_size / elapsed / 1e6 / server_cpu
        if server_cpu
        else float("nan"),
    }


def _drain(selector: selectors.BaseSelector, clients: list[Client]) -> None:
    """Read the replies still due, so that closing does not reset a connection mid-echo."""
    deadline = time.monotonic() + 10.0
    due = sum(len(c.sent) for c in clients)
    while due and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            client = key.data
            client.buf += client.sock.recv(RECEIVE_SIZE)
            pos = 0
            while 0 <= (end := frame_end(client.buf, pos)) <= len(client.buf):
                if client.buf[pos] & 0x8F in (0x81, 0x82) and client.sent:
                    client.sent.popleft()
                    due -= 1
                pos = end
            del client.buf[:pos]


def run_idle(port: int, server_pid: int, raw: bool, count: int) -> dict[str, object]:
    """Open ``count`` connections, echo once on each, and see how much the server's RSS grew."""
    payload = payload_for(SCENARIOS["rtt1"])
    frame = masked_frame(payload, False, os.urandom(4))
    # One connection first, so that lazy imports and first-use caches are not counted.
    warm = open_clients(port, 1, raw)
    check_echo(warm, frame, payload)
    close_clients(warm, server_pid)
    before = rss_bytes(server_pid)
    clients = open_clients(port, count, raw)
    check_echo(clients, frame, payload)
    wait_until_idle(server_pid)
    after = rss_bytes(server_pid)
    close_clients(clients, server_pid)
    return {
        "scenario": "idle",
        "connections": count,
        "rss_before": before,
        "rss_after": after,
        "rss_per_connection": (after - before) / count,
    }


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="for the server's CPU time and RSS")
    parser.add_argument("--raw", action="store_true", help="the server is a raw TCP echo")
    parser.add_argument("--scenarios", default=",".join(["idle", *SCENARIOS]))
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=1.5, help="seconds measured per scenario")
    parser.add_argument("--idle-connections", type=int, default=5000)
    args = parser.parse_args()
    raise_file_limit()
    for name in args.scenarios.split(","):
        if name == "idle":
            result = run_idle(args.port, args.server_pid, args.raw, args.idle_connections)
        else:
            result = run_scenario(name, args.port, args.server_pid, args.raw, args.warmup, args.duration)
        print(json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
