"""Several workers on one port: ``python -m trio_ws --workers N`` and ``serve_workers`` over real sockets.

Real processes, real signals: the supervisor and its workers are started as
a user starts them, and every wait is for an event (a banner, a log line, a
close frame, a process exit) under a deadline.
"""

from __future__ import annotations

import importlib.util
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest
import trio
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import ClientConnection, connect

import trio_ws
from trio_ws._server.cli import main

from ..processes import running_workers
from ..signalr.redis_helpers import RedisServer, redis_server

__all__ = ["redis_server"]  # a fixture, imported for pytest

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="workers need a POSIX system"),
    pytest.mark.timeout(60),  # several Python processes start and stop in each test
]

_OPEN = re.compile(r"\[worker (\d+)\] trio_ws\.connection: .* WebSocket /ws opened")

HUB_APP = """
    import trio
    import trio_ws
    from trio_ws.signalr import Hub, HubServer


    class Chat(Hub):
        async def echo(self, text: str) -> str:
            return text


    chat = HubServer(Chat())
    app = trio_ws.App()


    @app.service
    async def run_chat(server: trio_ws.Server, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(chat.run)
            task_status.started()
            await server.wait_closing()
            await chat.aclose()
"""


def _echo(clients: ExitStack, url: str, text: str) -> ClientConnection:
    """A client connected to ``url`` (closed with ``clients``) that had ``text`` echoed."""
    ws = clients.enter_context(connect(url, open_timeout=10))
    ws.send(text)
    assert ws.recv(timeout=10) == text
    return ws


@pytest.mark.parametrize("count", [2, 4])
def test_connections_spread_over_the_workers_and_ctrl_c_closes_all_with_1001(count: int) -> None:
    """--workers N: N processes share the port, every connection is served, they spread over every
    worker; Ctrl-C sends 1001 to every client and the supervisor exits 0."""
    with running_workers("--workers", str(count)) as served, ExitStack() as stack:
        assert len(set(served.pids)) == count and os.getpid() not in served.pids
        ws_url = served.url.replace("http://", "ws://") + "ws"
        clients = [_echo(stack, ws_url, f"client {i}") for i in range(12 * count)]
        served.log.wait_for(lambda line: len(_workers_that_opened(served.log.text())) == count)
        code, out = served.stop(signal.SIGINT)
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert code == 0
    assert f"SIGINT: shutting down {count} workers (again to stop at once)" in out and "stopped" in out
    opened = _workers_that_opened(served.log.text())
    assert opened == set(range(1, count + 1)), served.log.text()
    assert "Traceback" not in served.log.text()


def test_a_killed_worker_is_restarted_and_its_clients_reconnect() -> None:
    """SIGKILL of a worker: its clients see the connection drop, the supervisor logs how it ended and
    starts it again, and the clients reconnect and are served; the others never noticed."""
    with running_workers("--workers", "2") as served, ExitStack() as stack:
        ws_url = served.url.replace("http://", "ws://") + "ws"
        clients = [_echo(stack, ws_url, f"before {i}") for i in range(16)]
        victim = served.pids[0]
        os.kill(victim, signal.SIGKILL)
        served.log.wait_for(lambda line: f"(pid {victim}) was killed by SIGKILL; starting it again" in line)
        served.log.wait_for(lambda line: "worker 1 (pid" in line and "is serving again" in line)
        dropped = 0
        for i, ws in enumerate(clients):
            try:
                ws.send(f"after {i}")
                assert ws.recv(timeout=10) == f"after {i}"
            except ConnectionClosed:
                dropped += 1
                clients[i] = _echo(stack, ws_url, f"reconnected {i}")
        assert 0 < dropped < len(clients)  # the killed worker's clients, and only theirs
        code, _ = served.stop(signal.SIGTERM)
    assert code == 0
    assert "Traceback" not in served.log.text()


def test_a_worker_whose_supervisor_dies_stops_by_itself() -> None:
    """SIGKILL of the supervisor: each worker sees its lifeline end and stops gracefully (1001)."""
    with running_workers("--workers", "2") as served, ExitStack() as stack:
        ws_url = served.url.replace("http://", "ws://") + "ws"
        clients = [_echo(stack, ws_url, f"client {i}") for i in range(8)]
        served.proc.kill()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        served.log.wait_for(lambda line: "the supervisor is gone: shutting down" in line)


def test_an_app_with_hubs_needs_a_backplane_for_several_workers(tmp_path: Path) -> None:
    """An app with hubs on --workers 2 without --backplane: one line saying why (from the first worker
    to find out; the others are stopped), no traceback, exit 1."""
    (tmp_path / "hubapp.py").write_text(textwrap.dedent(HUB_APP))
    result = _run("hubapp:app", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert re.fullmatch(
        r"trio_ws: error: worker \d cannot run: the hub Chat cannot run on 2 workers without a "
        r"backplane: its groups, users and client results would each reach the clients of one worker "
        r"only; add --backplane redis://HOST:PORT/DB, or run one worker",
        result.stderr.strip(),
    ), result.stderr
    assert "Traceback" not in result.stderr
    assert sum("trio_ws: error:" in line for line in result.stderr.splitlines()) == 1


SLOW_APP = """
    import os
    import sys

    import trio_ws

    if sys.argv == ["-c"]:  # in a worker (the supervisor imports it too, quickly)
        with open("started", "w") as fifo:  # blocks until the test reads: "a worker is importing me"
            fifo.write(f"{os.getpid()}\\n")
        os.read(os.open("never", os.O_RDONLY), 1)  # an import that never ends
    app = trio_ws.App()
"""


def test_ctrl_c_while_the_workers_start_stops_them(tmp_path: Path) -> None:
    """Ctrl-C while the workers are still importing the app stops them at once, and exits 0."""
    (tmp_path / "slowapp.py").write_text(textwrap.dedent(SLOW_APP))
    os.mkfifo(tmp_path / "started")
    os.mkfifo(tmp_path / "never")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_ws", "slowapp:app", "--port", "0", "--workers", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        workers = [int(pid) for pid in _read_fifo(tmp_path / "started").split()]  # importing the app
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert out == "SIGINT: stopping while starting\nstopped\n", out + err
    assert "Traceback" not in err
    assert workers
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # stopped and waited for: no worker left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers: '0' is not a number of workers; write 1 or more"),
        (["--workers", "two"], "--workers: 'two' is not a number of workers; write 1 or more"),
        (["--backplane", "memcached://x"], "backplane 'memcached://x' is not a Redis URL"),
        (["--backplane", "redis://:pw@:6379/0"], "backplane 'redis://:***@:6379/0' names no host"),
    ],
)
def test_bad_workers_and_backplane_values_are_refused(args: list[str], message: str) -> None:
    """--workers must be 1 or more; --backplane must be a Redis URL (its password never printed)."""
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "pw" not in result.stderr


async def test_serve_workers_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve_workers: started() once every worker listens, with the port and pids; aclose() stops
    them all, and with inherited sockets (no SO_REUSEPORT) the workers serve the same."""
    monkeypatch.chdir(tmp_path)
    for reuse_port in (True, False):
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                workers: trio_ws.Workers = await nursery.start(
                    partial(trio_ws.serve_workers, None, "127.0.0.1", 0, workers=2, reuse_port=reuse_port)
                )
                stats = workers.statistics()
                assert (stats.workers, stats.running, stats.restarts) == (2, 2, 0)
                assert stats.sharing == ("SO_REUSEPORT" if reuse_port else "inherited sockets")
                assert len(workers.pids) == 2 and workers.url == f"http://127.0.0.1:{workers.port}/"
                reply = await trio.to_thread.run_sync(_echo_once, workers.ws_url("/ws"))
                assert reply == "through a worker"
                await workers.aclose()
                assert workers.pids == []


async def test_serve_workers_checks_its_arguments_before_starting_anything() -> None:
    """A count below 1 or a backplane that is not a Redis URL raises ValueError at once."""
    with pytest.raises(ValueError, match="workers=0: give 1 or more"):
        await trio_ws.serve_workers(None, "127.0.0.1", 0, workers=0)
    with pytest.raises(ValueError, match="backplane 'http://x' is not a Redis URL"):
        await trio_ws.serve_workers(None, "127.0.0.1", 0, workers=2, backplane="http://x")


async def test_a_worker_that_cannot_run_ends_serve_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that cannot import its app says why, and serve_workers raises WorkersError with it."""
    monkeypatch.chdir(tmp_path)
    with trio.fail_after(40), pytest.raises(trio_ws.WorkersError) as info:
        await trio_ws.serve_workers("no_such_module:app", "127.0.0.1", 0, workers=2)
    assert re.fullmatch(
        r"worker \d cannot run: no module named 'no_such_module' \(looked in .*\)", str(info.value)
    )


def test_workers_share_an_apps_hubs_through_a_redis_backplane(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """--workers 2 --backplane redis://...: the app with hubs runs; the banner names the backplane, and
    every worker's /healthz reports its hub connected to Redis."""
    (tmp_path / "hubapp.py").write_text(textwrap.dedent(HUB_APP))
    url = redis_server.url
    with running_workers("hubapp:app", "--workers", "2", "--backplane", url, cwd=str(tmp_path)) as served:
        assert f"Hub backplane: {url}\n" in served.banner
        for _ in range(8):  # new connections: both workers answer some
            with urllib.request.urlopen(served.url + "healthz", timeout=10) as response:
                body = response.read().decode()
            assert response.status == 200 and body.startswith("ok\nhub Chat: Redis connected ("), body
        code, _ = served.stop(signal.SIGTERM)
    assert code == 0
    assert "Traceback" not in served.log.text()


def test_backplane_without_coredis_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--backplane where coredis is not installed: one line naming the extra to install, exit 1."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "coredis" else real_find_spec(name, *a)
    )
    with pytest.raises(SystemExit) as exited:
        main(["--backplane", "redis://127.0.0.1:6379/0"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        "trio_ws: error: --backplane needs coredis, the Redis client: pip install 'trio_ws[redis]'\n"
    )


@pytest.mark.parametrize("theirs_reuse_port", [False, True])
def test_a_port_in_use_is_one_clear_line_with_workers(theirs_reuse_port: bool) -> None:
    """A busy port with --workers: the same one line as with one process, exit 1, even when the
    other program's socket has SO_REUSEPORT too (another supervisor's workers): never shared."""
    with socket.socket() as taken:
        if theirs_reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("--host", "127.0.0.1", "--port", str(port), "--workers", "2")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"trio_ws: error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another server is running there; pick another --port)"
    ]


def _read_fifo(path: Path) -> str:
    """What the first writer of the FIFO ``path`` writes, waiting for it under a deadline."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a blocking open would wait for ever
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            data = b""
            while selector.select(timeout=20):
                chunk = os.read(fd, 4096)
                if not chunk:
                    return data.decode()
                data += chunk
            raise AssertionError(f"nothing written to {path.name} within 20 s (got {data!r})")
    finally:
        os.close(fd)


def _echo_once(url: str) -> str:
    with connect(url, open_timeout=10) as ws:
        ws.send("through a worker")
        reply = ws.recv(timeout=10)
    assert isinstance(reply, str)
    return reply


def _workers_that_opened(log: str) -> set[int]:
    return {int(match.group(1)) for match in _OPEN.finditer(log)}


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_ws", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
