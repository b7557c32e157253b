"""Instructions per echoed message, counted by valgrind's callgrind: a yardstick that noise can't bend.

``python -m benchmarks.instructions`` runs each server of ``benchmarks.servers``
under ``valgrind --tool=callgrind`` with collection off, connects the
scenario's clients, warms up, turns collection on for exactly ``--messages``
echoes, turns it off, and divides the instructions the server executed by
the messages it echoed. Wall-clock throughput on a shared machine moves with
everyone else's work; instruction counts repeat to within a percent or two,
so they decide a change the throughput figures are too noisy to decide.
What they leave out is what instructions don't show: time in the kernel and
cache misses. Lower is better; the ratio is the baseline's count divided by
the server's, so it reads like the throughput ratios (higher is better).

    python -m benchmarks.instructions                                  # trio-websocket and trio_ws
    python -m benchmarks.instructions --servers trio_ws --scenarios pipe50 --messages 4000
    python -m benchmarks.instructions --servers trio-websocket,trio_ws,raw-trio-tcp   # and the floor
    python -m benchmarks.instructions --scenarios deflate50,deflate4   # permessage-deflate offered
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.raw import frame_end

from .load import SCENARIOS, Client, check_echo, masked_frame, open_clients, payload_for

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "trio-websocket"
# The raw TCP echo, the floor for Python on trio: no handshake, and the frames come back as sent.
RAW = "raw-trio-tcp"


def start(name: str, out_dir: str, options: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/callgrind.out.%p",
        sys.executable,
        "-m",
        "benchmarks.servers",
        name,
        *[f"--option={o}" for o in options],
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    match = re.search(r":(\d+)/", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"{name} did not start under valgrind: {line!r}")
    return proc, int(match.group(1))


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def echo(clients: list[Client], frame: bytes, compressed: bytes, messages: int, in_flight: int) -> None:
    """Send ``messages`` messages, ``in_flight`` outstanding per connection, and read every echo.

    Each client sends ``frame``, or ``compressed`` if the server took
    permessage-deflate; replies are counted as whole data frames (the raw
    TCP echo's are the very frames sent).
    """
    selector = selectors.DefaultSelector()
    sent = received = 0
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
        batch = min(in_flight, messages - sent)
        client.sock.sendall((compressed if client.compressing else frame) * batch)
        sent += batch
    buffers = {client: bytearray() for client in clients}
    while received < messages:
        for key, _ in selector.select():
            client = key.data
            buf = buffers[client]
            buf += client.sock.recv(1 << 20)
            pos = done = 0
            while 0 <= (end := frame_end(buf, pos)) <= len(buf):
                done += buf[pos] & 0x0F in (0x1, 0x2)  # a data frame, not a ping
                pos = end
            del buf[:pos]
            received += done
            more = min(done, messages - sent)
            if more:
                client.sock.sendall((compressed if client.compressing else frame) * more)
                sent += more
    for client in clients:
        selector.unregister(client.sock)


def collected_instructions(out_dir: str, pid: int) -> int:
    """Stop collecting in the server ``pid``, have callgrind write its counts, and read the total."""
    control(pid, "-i", "off")
    control(pid, "-d")
    time.sleep(0.5)  # callgrind writes the dump from inside the server, after the command returns
    return total_instructions(out_dir, pid)


def total_instructions(out_dir: str, pid: int) -> int:
    files = sorted(glob.glob(f"{out_dir}/callgrind.out.{pid}*"), key=os.path.getmtime)
    for path in reversed(files):
        text = Path(path).read_text(errors="replace")
        match = re.search(r"^totals: (\d+)", text, re.MULTILINE)
        if match:
            return int(match.group(1))
    raise RuntimeError(f"no callgrind totals in {files}")


def measure(name: str, scenario_name: str, messages: int, options: list[str]) -> float:
    scenario = SCENARIOS[scenario_name]
    payload = payload_for(scenario)
    mask = os.urandom(4)
    frame = masked_frame(payload, scenario.binary, mask)
    compressed = masked_frame(payload, scenario.binary, mask, compressed=True) if scenario.deflate else b""
    with tempfile.TemporaryDirectory() as out_dir:
        proc, port = start(name, out_dir, options)
        raw = name == RAW
        try:
            clients = open_clients(port, scenario.connections, raw=raw, deflate=scenario.deflate)
            check_echo(clients, frame, payload, compressed)
            warm_up = max(messages // 10, scenario.connections)
            echo(clients, frame, compressed, warm_up, scenario.in_flight)
            control(proc.pid, "-i", "on")
            echo(clients, frame, compressed, messages, scenario.in_flight)
            count = collected_instructions(out_dir, proc.pid)
            for client in clients:
                client.sock.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return count / messages


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default=f"{BASELINE},trio_ws", type=lambda t: t.split(","))
    parser.add_argument("--scenarios", default="rtt1,rtt50,pipe50,bin4", type=lambda t: t.split(","))
    parser.add_argument("--messages", type=int, default=2000, help="echoes counted per scenario")
    parser.add_argument("--option", action="append", default=[], help="a trio_ws Options field, KEY=VALUE")
    args = parser.parse_args()
    print(f"{'scenario':<10}" + "".join(f"{name:>26}" for name in args.servers))
    for scenario in args.scenarios:
        messages = args.messages // 10 if SCENARIOS[scenario].binary else args.messages
        counts = {
            name: measure(name, scenario, messages, args.option if name == "trio_ws" else [])
            for name in args.servers
        }
        base = counts.get(BASELINE)
        cells = []
        for name in args.servers:
            ratio = f" ({base / counts[name]:.2f}x)" if base else ""
            cells.append(f"{counts[name]:>14,.0f}{ratio:>9}")
        print(f"{scenario:<10}" + "".join(f"{cell:>26}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
