"""Instructions per hub call, counted by valgrind's callgrind: what ``--metrics`` costs, without the noise.

``python -m benchmarks.hub_instructions`` runs the conformance hub
(``benchmarks.hubs.servers trio_ws``, with and without ``--metrics``) under
``valgrind --tool=callgrind`` with collection off, connects WebSocket hub
clients (negotiate, upgrade, JSON handshake), warms up, turns collection on
for exactly ``--calls`` calls of ``Echo``, turns it off, and divides the
server's instructions by the calls. Like ``benchmarks.instructions``, the
counts repeat to within a percent or two on a busy machine, where the hub
benchmark's calls per CPU-second move by more than the difference measured.

    python -m benchmarks.hub_instructions                     # 1 client, then 20 clients at once
    python -m benchmarks.hub_instructions --clients 50 --calls 5000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .instructions import control, total_instructions
from .load import frame_end, frame_payload, masked_frame

ROOT = Path(__file__).resolve().parent.parent
_RS = b"\x1e"


def start(out_dir: str, metrics: bool) -> tuple[subprocess.Popen[bytes], int]:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/callgrind.out.%p",
        sys.executable,
        "-m",
        "benchmarks.hubs.servers",
        "trio_ws",
        *(["--metrics"] if metrics else []),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    match = re.search(r":(\d+)/", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the hub did not start under valgrind: {line!r}")
    return proc, int(match.group(1))


class HubClient:
    """A WebSocket hub client on a plain socket: negotiate, upgrade, handshake, then calls."""

    def __init__(self, port: int) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/testhub/negotiate?negotiateVersion=1", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            token = json.load(answer)["connectionToken"]
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(
            f"GET /testhub?id={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = bytearray(rest)
        self.send(b'{"protocol":"json","version":1}' + _RS)
        assert self.records() == [b"{}"]
        self.mask = os.urandom(4)
        self.calls = 0

    def send(self, text: bytes) -> None:
        self.sock.sendall(masked_frame(text, False, os.urandom(4)))

    def call_frame(self) -> bytes:
        self.calls += 1
        message = b'{"type":1,"invocationId":"%d","target":"Echo","arguments":["hello"]}' % self.calls
        return masked_frame(message + _RS, False, self.mask)

    def records(self) -> list[bytes]:
        """The hub messages in the frames read so far (waiting for at least one frame)."""
        while frame_end(self.buf, 0) < 0 or frame_end(self.buf, 0) > len(self.buf):
            self.buf += self.sock.recv(65536)
        return self.take()

    def take(self) -> list[bytes]:
        found: list[bytes] = []
        pos = 0
        while 0 <= (end := frame_end(self.buf, pos)) <= len(self.buf):
            found += [r for r in frame_payload(bytes(self.buf[pos:end])).split(_RS) if r]
            pos = end
        del self.buf[:pos]
        return found


def calls(clients: list[HubClient], count: int) -> None:
    """``count`` calls, one outstanding per client, every completion read."""
    selector = selectors.DefaultSelector()
    sent = done = 0
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
        if sent < count:
            client.sock.sendall(client.call_frame())
            sent += 1
    while done < count:
        for key, _ in selector.select():
            client = key.data
            client.buf += client.sock.recv(1 << 20)
            completed = sum(record.startswith(b'{"type":3') for record in client.take())
            done += completed
            for _ in range(completed):
                if sent < count:
                    client.sock.sendall(client.call_frame())
                    sent += 1
    for client in clients:
        selector.unregister(client.sock)


def measure(metrics: bool, clients_count: int, count: int) -> float:
    with tempfile.TemporaryDirectory() as out_dir:
        proc, port = start(out_dir, metrics)
        try:
            clients = [HubClient(port) for _ in range(clients_count)]
            calls(clients, max(count // 5, clients_count))  # warm up
            control(proc.pid, "-i", "on")
            calls(clients, count)
            control(proc.pid, "-i", "off")
            control(proc.pid, "-d")
            time.sleep(0.5)
            total = total_instructions(out_dir, proc.pid)
            for client in clients:
                client.sock.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,20", type=lambda t: [int(n) for n in t.split(",")])
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per measurement")
    args = parser.parse_args()
    print(f"{'clients':<8}{'metrics off':>16}{'metrics on':>16}{'on / off':>10}")
    for count in args.clients:
        off = measure(False, count, args.calls)
        on = measure(True, count, args.calls)
        print(f"{count:<8}{off:>16,.0f}{on:>16,.0f}{on / off:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
