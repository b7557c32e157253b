"""Instructions per hub call and per broadcast delivery, counted by callgrind: the hubs' steady yardstick.

``python -m benchmarks.hubs.instructions`` serves the conformance hub
(``examples.signalr.testhub:app``, as ``python -m benchmarks.hubs`` does)
under ``valgrind --tool=callgrind`` with collection off, connects hub
clients over raw sockets (a WebSocket straight to ``/testhub``, as the
official clients do with ``skipNegotiation``, then the hub handshake),
warms up, and counts the instructions the server executes for exactly
``--calls`` ``Echo`` calls, or for ``--broadcasts`` ``Broadcast`` calls to
``--fanout-clients`` clients. Every reply is counted; nothing is checked
beyond its message type (the wall-clock benchmark checks every reply).

The figure is instructions per call (echo) or per delivery (fanout):
lower is better, and it repeats to within a percent or two on a loaded
machine, where throughput does not. It leaves out time in the kernel and
cache misses, which the wall-clock benchmark shows.

Scenarios: ``echo1`` (1 client, 1 call in flight), ``echo50`` (50 clients,
1 each), ``pipe50`` (50 clients, 16 each), ``fanout`` (one client
broadcasts 32 characters, one at a time, every client receives each).

    python -m benchmarks.hubs.instructions
    python -m benchmarks.hubs.instructions --scenarios pipe50 --protocol messagepack
    python -m benchmarks.hubs.instructions --scenarios fanout --cprofile fanout.prof   # where the time goes
    python -m benchmarks.hubs.instructions --scenarios echo1,echo50 --metrics          # what --metrics costs

With ``--cprofile FILE`` the server runs under cProfile instead (no
instruction counts), and its profile of the whole run is written to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from itertools import count

import msgpack

from tests.raw import frame_end, upgrade_request

from ..harness import raise_file_limit
from ..instructions import ROOT, collected_instructions, control
from ..load import masked_frame

HOST = "127.0.0.1"
PATH = "/testhub"
PAYLOAD = "hello, trio_ws! hello, trio_ws! "  # 32 characters, as the wall-clock benchmark sends
COMPLETION = 3
INVOCATION = 1


@dataclass(frozen=True)
class Scenario:
    title: str
    clients: int
    in_flight: int
    fanout: bool = False


SCENARIOS = {
    "echo1": Scenario("Echo, 1 client, 1 in flight", 1, 1),
    "echo50": Scenario("Echo, 50 clients, 1 in flight each", 50, 1),
    "pipe50": Scenario("Echo, 50 clients, 16 in flight each", 50, 16),
    # One broadcast at a time, so that every delivery is one wake-up and one write, run after run.
    "fanout": Scenario("Broadcast of 32 B, 1 in flight (per delivery)", 0, 1, fanout=True),
}


class Codec:
    """One hub protocol, as much of it as the benchmark's client needs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.binary = name == "messagepack"

    def handshake(self) -> bytes:
        return f'{{"protocol":"{self.name}","version":1}}\x1e'.encode()

    def invocation(self, invocation_id: str, target: str, argument: str) -> bytes:
        if self.binary:
            body: bytes = msgpack.packb([INVOCATION, {}, invocation_id, target, [argument], []])
            return _varint(len(body)) + body
        return (
            f'{{"type":1,"invocationId":"{invocation_id}","target":"{target}","arguments":["{argument}"]}}\x1e'
        ).encode()

    def message_types(self, payload: bytes) -> list[int]:
        """The type of every hub message in one frame's payload."""
        if not self.binary:
            return [json.loads(record)["type"] for record in payload.split(b"\x1e") if record]
        types = []
        pos = 0
        while pos < len(payload):
            size, pos = _read_varint(payload, pos)
            types.append(msgpack.unpackb(payload[pos : pos + size])[0])
            pos += size
        return types


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


class HubClient:
    """A hub connection over a raw socket: frames out, message types in."""

    def __init__(self, port: int, codec: Codec) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.codec = codec
        self.buf = bytearray()
        self.ids = count()
        self.mask = os.urandom(4)

    def upgrade(self, port: int) -> None:
        self.sock.sendall(upgrade_request(PATH, host=f"{HOST}:{port}"))

    def finish_upgrade(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            self._receive()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {head.splitlines()[0]!r}")
        self.buf = bytearray(rest)
        self.sock.sendall(masked_frame(self.codec.handshake(), False, self.mask))

    def finish_handshake(self) -> None:
        answer = self.read_frame()
        if answer != b"{}\x1e":
            raise ConnectionError(f"hub handshake refused: {answer!r}")

    def frame(self, target: str) -> bytes:
        message = self.codec.invocation(str(next(self.ids)), target, PAYLOAD)
        return masked_frame(message, self.codec.binary, self.mask)

    def _receive(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def read_frame(self) -> bytes:
        while not 0 <= (end := frame_end(self.buf, 0)) <= len(self.buf):
            self._receive()
        payload = self._payload(0, end)
        del self.buf[:end]
        return payload

    def _payload(self, start: int, end: int) -> bytes:
        size = self.buf[start + 1] & 0x7F
        return bytes(self.buf[start + 2 + (2 if size == 126 else 8 if size == 127 else 0) : end])

    def take_messages(self) -> list[int]:
        """Read what is there; the types of the hub messages in every whole data frame."""
        self._receive()
        types: list[int] = []
        pos = 0
        while 0 <= (end := frame_end(self.buf, pos)) <= len(self.buf):
            if self.buf[pos] & 0x0F in (0x1, 0x2):
                types += self.codec.message_types(self._payload(pos, end))
            pos = end
        del self.buf[:pos]
        return types


def open_clients(port: int, number: int, codec: Codec) -> list[HubClient]:
    clients: list[HubClient] = []
    while len(clients) < number:
        batch = [HubClient(port, codec) for _ in range(min(50, number - len(clients)))]
        for client in batch:
            client.upgrade(port)
        for client in batch:
            client.finish_upgrade()
        for client in batch:
            client.finish_handshake()
        clients += batch
    return clients


def run_echo(clients: list[HubClient], calls: int, in_flight: int) -> None:
    """``calls`` Echo calls, ``in_flight`` outstanding per client; returns once every completion is in."""
    selector = selectors.DefaultSelector()
    sent = done = 0
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
        batch = min(in_flight, calls - sent)
        client.sock.sendall(b"".join(client.frame("Echo") for _ in range(batch)))
        sent += batch
    while done < calls:
        for key, _ in selector.select():
            client = key.data
            completions = client.take_messages().count(COMPLETION)
            done += completions
            more = min(completions, calls - sent)
            if more:
                client.sock.sendall(b"".join(client.frame("Echo") for _ in range(more)))
                sent += more
    selector.close()


def run_fanout(clients: list[HubClient], broadcasts: int, in_flight: int) -> None:
    """``broadcasts`` Broadcast calls by the first client, ``in_flight`` at a time; returns once every
    client has received every one."""
    sender = clients[0]
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    expected = broadcasts * len(clients)
    delivered = sent = answered = 0
    batch = min(in_flight, broadcasts)
    sender.sock.sendall(b"".join(sender.frame("Broadcast") for _ in range(batch)))
    sent += batch
    while delivered < expected or answered < broadcasts:
        for key, _ in selector.select():
            client = key.data
            types = client.take_messages()
            delivered += types.count(INVOCATION)
            if client is sender:
                completions = types.count(COMPLETION)
                answered += completions
                more = min(completions, broadcasts - sent)
                if more:
                    sender.sock.sendall(b"".join(sender.frame("Broadcast") for _ in range(more)))
                    sent += more
    selector.close()


def measure(
    scenario: Scenario,
    codec: Codec,
    calls: int,
    broadcasts: int,
    fanout_clients: int,
    cprofile: str | None,
    metrics: bool = False,
) -> float:
    """The server's instructions per call (echo) or per delivery (fanout); with ``cprofile``, the
    server runs under cProfile instead, and the figure is 0. ``metrics`` serves it with ``--metrics``."""
    with tempfile.TemporaryDirectory() as out_dir:
        server = [
            sys.executable,
            "-m",
            "benchmarks.hubs.servers",
            "trio_ws",
            *(["--metrics"] if metrics else []),
        ]
        if cprofile:
            command = [sys.executable, "-m", "cProfile", "-o", cprofile, *server[1:]]
        else:
            command = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out_dir}/callgrind.out.%p",
                *server,
            ]
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            proc.kill()
            raise SystemExit(f"the hub server did not start under valgrind: {line!r}")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        try:
            number = fanout_clients if scenario.fanout else scenario.clients
            clients = open_clients(port, number, codec)
            if scenario.fanout:
                run_fanout(clients, max(broadcasts // 10, 2), scenario.in_flight)
                if not cprofile:
                    control(proc.pid, "-i", "on")
                run_fanout(clients, broadcasts, scenario.in_flight)
                units = broadcasts * len(clients)
            else:
                run_echo(clients, max(calls // 10, len(clients) * scenario.in_flight), scenario.in_flight)
                if not cprofile:
                    control(proc.pid, "-i", "on")
                run_echo(clients, calls, scenario.in_flight)
                units = calls
            if cprofile:
                for client in clients:
                    client.sock.close()
                proc.send_signal(signal.SIGINT)  # the server ends quietly, and cProfile writes its file
                proc.wait(timeout=60)
                return 0.0
            total = collected_instructions(out_dir, proc.pid)
            for client in clients:
                client.sock.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return total / units


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), type=lambda t: t.split(","))
    parser.add_argument("--protocol", choices=("json", "messagepack"), default="json")
    parser.add_argument("--calls", type=int, default=3000, help="Echo calls counted per echo scenario")
    parser.add_argument(
        "--broadcasts", type=int, default=160, help="broadcasts counted in fanout (fewer vary with GC)"
    )
    parser.add_argument("--fanout-clients", type=int, default=250, help="clients receiving each broadcast")
    parser.add_argument("--cprofile", metavar="FILE", help="profile one scenario with cProfile instead")
    parser.add_argument("--metrics", action="store_true", help="serve the hub with --metrics (/metrics)")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}"
        )
    raise_file_limit()
    codec = Codec(args.protocol)
    if args.cprofile:
        if len(args.scenarios) != 1:
            raise SystemExit("--cprofile profiles one scenario: give one with --scenarios")
        measure(
            SCENARIOS[args.scenarios[0]],
            codec,
            args.calls,
            args.broadcasts,
            args.fanout_clients,
            args.cprofile,
            args.metrics,
        )
        print(f"profile of {args.scenarios[0]} written to {args.cprofile}")
        return
    served = ", with --metrics" if args.metrics else ""
    print(f"trio_ws hub, {args.protocol}{served}: instructions per call (echo) or per delivery (fanout)")
    for name in args.scenarios:
        scenario = SCENARIOS[name]
        figure = measure(
            scenario, codec, args.calls, args.broadcasts, args.fanout_clients, None, args.metrics
        )
        title = scenario.title
        if scenario.fanout:
            title = title.replace("Broadcast", f"Broadcast to {args.fanout_clients} clients")
        print(f"{name:<8} {figure:>12,.0f}   {title}", flush=True)


if __name__ == "__main__":
    main()
