"""Real parts for the Redis backplane's tests: a redis-server, a TCP proxy that fails on cue, a log watcher.

* ``RedisServer`` runs Debian's ``redis-server`` (or ``valkey-server``) as a
  subprocess on a free port, and can stop and start it again on the same port.
* ``FlakyProxy`` stands between one backplane and Redis: ``cut()`` drops every
  connection and refuses new ones, ``freeze()`` stops moving bytes (a link
  that hangs), ``heal()`` undoes either. Other backplanes talk to Redis directly.
* ``LogWatcher`` turns log lines into events a trio test can wait for, so a
  test waits for "the backplane lost Redis" instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest
import trio
import trustme

START_DEADLINE = 10.0


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (tests use prefixes of their own); restarted by a test."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, running again after the test if the test stopped it."""
    yield redis_server
    if not redis_server._answers():
        redis_server.stop()
        redis_server.start()


@pytest.fixture
def backplane_log() -> Iterator[LogWatcher]:
    """What the backplanes log during the test."""
    watcher = LogWatcher()
    logger = logging.getLogger("trio_ws.signalr.backplane")
    logger.addHandler(watcher)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield watcher
    logger.removeHandler(watcher)
    logger.setLevel(level)


def redis_binary() -> str:
    """redis-server (or valkey-server); skip without one, unless CI says the tests must run."""
    for name in ("redis-server", "valkey-server"):
        if path := shutil.which(name):
            return path
    reason = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("TRIO_WS_REQUIRE_REDIS"):
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A private redis-server on 127.0.0.1, started and stopped by the tests.

    With ``tls`` (a trustme CA), it speaks TLS only, with a certificate for
    ``localhost`` that CA issued, and ``url`` is a ``rediss://`` URL that trusts it.
    """

    def __init__(self, tls: trustme.CA | None = None) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="trio-ws-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self._tls: ssl.SSLContext | None = None
        self._tls_args: list[str] = []
        if tls is not None:
            certificate = tls.issue_cert("localhost")
            certificate.private_key_pem.write_to_path(f"{self.directory}/key.pem")
            certificate.cert_chain_pems[0].write_to_path(f"{self.directory}/cert.pem")
            tls.cert_pem.write_to_path(f"{self.directory}/ca.pem")
            self._tls = ssl.create_default_context(cafile=f"{self.directory}/ca.pem")
            self._tls_args = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            for option, name in (("cert", "cert"), ("key", "key"), ("ca-cert", "ca")):
                self._tls_args += [f"--tls-{option}-file", f"{self.directory}/{name}.pem"]

    @property
    def url(self) -> str:
        if self._tls is not None:
            return f"rediss://localhost:{self.port}/0?ssl_ca_certs={self.directory}/ca.pem"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
        command += self._tls_args  # the later --port 0 turns plain TCP off
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_DEADLINE
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._process.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)  # a subprocess starting: nothing to wait on but its port

    def stop(self) -> None:
        """Stop it (SIGTERM: a clean shutdown, every client disconnected), and wait."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(START_DEADLINE)
            self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                probe = raw if self._tls is None else self._tls.wrap_socket(raw, server_hostname="localhost")
                probe.sendall(b"PING\r\n")
                return probe.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class FlakyProxy:
    """A TCP proxy to Redis for one backplane, whose link the test cuts or freezes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._cut = False
        self._flowing = trio.Event()
        self._flowing.set()
        self._pairs: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started()

    def cut(self) -> None:
        """Drop every connection, and refuse new ones until ``heal()``."""
        self._cut = True
        for scope in list(self._pairs):
            scope.cancel()

    def freeze(self) -> None:
        """Keep the connections open but move no bytes (a link that hangs) until ``heal()``."""
        self._flowing = trio.Event()

    def heal(self) -> None:
        self._cut = False
        self._flowing.set()

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if self._cut:
                return
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:
                self._pairs.add(nursery.cancel_scope)
                nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
            self._pairs.discard(nursery.cancel_scope)

    async def _pump(self, source: trio.abc.Stream, sink: trio.abc.Stream, pair: trio.CancelScope) -> None:
        try:
            while data := await source.receive_some(65536):
                await self._flowing.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pair.cancel()


class LogWatcher(logging.Handler):
    """Log records as they come, and a way for a trio test to wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()
        self._changed = trio.Event()

    def messages(self, predicate: Callable[[logging.LogRecord], bool] = lambda _: True) -> list[str]:
        return [record.getMessage() for record in self.records if predicate(record)]

    async def wait_for(self, text: str, count: int = 1) -> None:
        """Until ``count`` records contain ``text``."""
        while sum(text in message for message in self.messages()) < count:
            await self._changed.wait()
