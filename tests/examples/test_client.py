"""examples/client.py: backoff with jitter, reconnection across a server restart, a clean stop."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
from functools import partial

import trio

import trio_ws
from trio_ws.testing import start_server

from ..helpers import IO_DEADLINE
from ..processes import read_output_until, running_cli
from .programs import EXAMPLES, load_example

client_example = load_example("client")


class NoJitter(random.Random):
    """Always the longest wait, so the backoff schedule can be checked exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_doubles_to_its_cap_with_full_jitter() -> None:
    """The longest wait doubles after each failure up to the cap; the jittered wait lies in [0, longest]."""
    backoff = client_example.Backoff(first=0.5, factor=2.0, cap=3.0)
    assert [backoff.delay(n, NoJitter()) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    rng = random.Random(6)
    waits = [backoff.delay(n, rng) for n in range(200)]
    assert all(0 <= wait <= min(3.0, 0.5 * 2**n) for n, wait in enumerate(waits))
    assert len(set(waits)) == len(waits), "jitter: no two waits alike"


class Reports:
    """What the client reports, in order, with a way to wait for the next line of a kind."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._read = 0  # the line after the one wait_for last found
        self._changed = trio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def wait_for(self, pattern: str) -> str:
        """The next line matching ``pattern`` after the one the last call found."""
        with trio.fail_after(IO_DEADLINE):
            while True:
                for index in range(self._read, len(self.lines)):
                    if re.fullmatch(pattern, self.lines[index]):
                        self._read = index + 1
                        return self.lines[index]
                self._changed = trio.Event()
                await self._changed.wait()


async def test_client_reconnects_with_backoff_when_the_server_restarts(nursery: trio.Nursery) -> None:
    """Server stops: the client reports the 1001, retries with growing waits, and talks again on restart."""
    app = trio_ws.echo_app()
    server = await start_server(nursery, app)
    port = server.port
    reports = Reports()
    backoff = client_example.Backoff(first=0.01, factor=2.0, cap=0.04)
    client = client_example.Client(
        server.ws_url("/ws"), interval=0.01, backoff=backoff, rng=NoJitter(), report=reports
    )
    nursery.start_soon(client.run)
    await reports.wait_for(r"received: 'message 1'")

    await server.aclose()
    await reports.wait_for(r"connection lost: 1001 GOING_AWAY \(server shutting down\)")
    await reports.wait_for(r"cannot connect: \S.*")
    await reports.wait_for(r"cannot connect: \S.*")  # twice, so the wait has grown once
    # The same port again: the client was told this URL and knows no other.
    await nursery.start(partial(trio_ws.serve, app, "127.0.0.1", port))
    await reports.wait_for(f"connected to ws://127.0.0.1:{port}/ws")
    replies = client.replies
    await reports.wait_for(r"received: 'message \d+'")
    assert client.replies > replies
    client.stop()
    await reports.wait_for("closed")

    waits = [
        float(m.group(1)) for line in reports.lines if (m := re.fullmatch(r"reconnecting in (.*) s", line))
    ]
    assert waits[:3] == [0.01, 0.02, 0.04]
    assert all(wait <= 0.04 for wait in waits)
    # Connected twice: the second time after the restart.
    assert sum(line.startswith("connected to") for line in reports.lines) == 2


async def test_stop_closes_cleanly_with_1000(nursery: trio.Nursery) -> None:
    """stop() ends the conversation with a close 1000, not a dropped socket."""
    closes: list[int | None] = []
    app = trio_ws.App()

    @app.websocket("/ws")
    async def listen(ws: trio_ws.WebSocketConnection) -> None:
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_ws.ConnectionClosed as exc:
            closes.append(exc.reason.code if exc.reason else None)

    server = await start_server(nursery, app)
    reports = Reports()
    client = client_example.Client(server.ws_url("/ws"), interval=0.01, report=reports)
    nursery.start_soon(client.run)
    await reports.wait_for(r"received: 'message 2'")
    client.stop()
    await reports.wait_for("closed")
    await server.aclose()
    assert closes == [1000]


def test_client_program_counts_replies_and_stops_on_ctrl_c() -> None:
    """examples/client.py URL --count 3 exits 0 after three replies; without --count, Ctrl-C exits 0."""
    with running_cli() as (server, url):
        ws_url = url.replace("http://", "ws://") + "ws"
        command = [sys.executable, str(EXAMPLES / "client.py"), ws_url, "--interval", "0.01"]
        done = subprocess.run([*command, "--count", "3"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"connected to {ws_url}",
            "received: 'message 1'",
            "received: 'message 2'",
            "received: 'message 3'",
            "closed",
        ]

        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert "received: 'message 1'" in read_output_until(proc, lambda text: "received" in text)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert "Traceback" not in err
            assert out.endswith("closed\n")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        server.send_signal(signal.SIGINT)
