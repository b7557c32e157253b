"""``serve_workers()``: one app served by several processes on one port, under a supervisor.

::

    serve_workers(app, host, port, workers=N, task_status=...)
    │                                     started(Workers) once every worker listens; runs until aclose()
    └─ supervisor nursery
       └─ one task per worker slot        _Supervisor.keep_running: start, wait, restart after a backoff
          └─ a worker process             trio_ws._server.worker.main() (its own nursery tree: _worker.py)

One Python process uses one core; N workers use N. Every worker imports the
app by name and serves it exactly as one process would; the port is shared
as ``_sockets.py`` explains (``SO_REUSEPORT`` on Linux).

Rules of this module:

* The supervisor serves nothing itself. It holds the port, starts the
  workers, restarts one that dies, and stops them all together. It never
  leaves a worker behind: every worker process is waited for (and killed if
  it must be) before ``serve_workers`` returns, and a worker whose
  supervisor dies stops on its own (its lifeline, ``_worker.py``).
* A worker that ends unasked (a crash, SIGKILL, the out-of-memory killer)
  is logged with how it ended and started again after a backoff: 0.1 s,
  doubling up to 10 s; one that had run for a minute starts again at 0.1 s.
* A worker that says it cannot run (``error`` on its ready pipe: the app
  cannot be imported, the address cannot be bound, hubs need a backplane)
  would fail again the same way. During start-up that ends
  ``serve_workers`` with ``WorkersError``; later, its slot stays empty and
  an error is logged.
* ``Workers.aclose()`` is the graceful stop: one SIGTERM to each worker, which
  stops as a single process does (close 1001 to every WebSocket, Close with
  ``allowReconnect`` to every hub client), then up to ``shutdown_timeout``
  plus two seconds, then SIGKILL. Cancelling ``serve_workers`` is the hard
  stop: SIGTERM twice (each worker stops at once), then SIGKILL after two seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, replace

import trio

from .._errors import TrioWsError
from .._observe.logs import uses_json
from .._observe.metrics import forget_worker, shared_metrics_dir
from .._options import Options
from .deployment import backplane_url
from .server import url_host
from .sockets import SharingMode, addresses, reserve, sharing_mode
from .worker import EX_CONFIG, WorkerSpec, encode_spec

__all__ = ["Workers", "WorkersError", "WorkersStatistics", "serve_workers"]

logger = logging.getLogger("trio_ws.workers")

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 10.0
_HEALTHY_RUN = 60.0  # a worker that ran this long restarts without the backoff it had built up
_KILL_MARGIN = 2.0  # past the workers' own grace period, before SIGKILL


class WorkersError(TrioWsError):
    """The workers could not be started; the message says why (one line, from the worker).

    Raised by :func:`serve_workers` before ``started()`` when a worker cannot
    run: its app does not import, the port cannot be bound in it, or a hub
    has no backplane on several workers. Every worker is stopped first.
    """


@dataclass(frozen=True)
class WorkersStatistics:
    """A snapshot of the workers, from :meth:`Workers.statistics`.

    Attributes:
        workers: How many worker processes are meant to run.
        running: How many are running now (the rest are restarting).
        restarts: How many times a worker was started again after it ended unasked.
        sharing: How the workers share the port: ``"SO_REUSEPORT"`` or ``"inherited sockets"``.
    """

    workers: int
    running: int
    restarts: int
    sharing: str


class _Slot:
    """One worker's place: the process in it now, if any."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: trio.Process | None = None
        self.ready = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Workers:
    """Running workers, handed back by ``await nursery.start(serve_workers, ...)``."""

    def __init__(self, supervisor: _Supervisor) -> None:
        self._supervisor = supervisor

    @property
    def port(self) -> int:
        """The TCP port every worker listens on (the real one when port 0 was asked for)."""
        return self._supervisor.port

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:5000/``."""
        scheme = "https" if self._supervisor.secure else "http"
        return f"{scheme}://{self._supervisor.url_host}:{self.port}/"

    def ws_url(self, path: str = "/ws") -> str:
        """The WebSocket URL of ``path``, such as ``ws://127.0.0.1:5000/ws``."""
        scheme = "wss" if self._supervisor.secure else "ws"
        return f"{scheme}://{self._supervisor.url_host}:{self.port}{path}"

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers running now, in slot order."""
        return [slot.process.pid for slot in self._supervisor.slots if slot.process and slot.running]

    def statistics(self) -> WorkersStatistics:
        supervisor = self._supervisor
        return WorkersStatistics(
            workers=len(supervisor.slots),
            running=sum(slot.running and slot.ready for slot in supervisor.slots),
            restarts=supervisor.restarts,
            sharing=supervisor.mode.value,
        )

    async def aclose(self) -> None:
        """Stop every worker gracefully, as one process stops on SIGTERM; return once all have ended.

        Workers still running ``shutdown_timeout`` plus two seconds later are killed.
        """
        await self._supervisor.aclose()


class _Supervisor:
    def __init__(
        self, specs: list[WorkerSpec], mode: SharingMode, port: int, secure: bool, host: str
    ) -> None:
        self.specs = specs
        self.mode = mode
        self.port = port
        self.secure = secure
        self.url_host = host
        self.slots = [_Slot(spec.number) for spec in specs]
        self.restarts = 0
        self.closing = False
        self._ready: set[int] = set()  # slots ready at least once during start-up
        self._all_ready = trio.Event()
        self._failure: str | None = None
        self._failed = trio.Event()
        self._stopped = trio.Event()
        self._grace = specs[0].options.shutdown_timeout + _KILL_MARGIN

    # -- starting and restarting ---------------------------------------------------------

    async def keep_running(self, slot: _Slot, spec: WorkerSpec) -> None:
        """Keep a worker in ``slot``: start it, wait for it to end, start it again after a backoff."""
        backoff = _FIRST_BACKOFF
        while not self.closing:
            began = trio.current_time()
            ended = await self._run_once(slot, spec)
            if self.closing or ended is None:
                return
            if trio.current_time() - began >= _HEALTHY_RUN:
                backoff = _FIRST_BACKOFF
            logger.warning(
                "worker %d (pid %d) %s; starting it again in %.1f s", slot.number, ended[0], ended[1], backoff
            )
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            self.restarts += 1

    async def _run_once(self, slot: _Slot, spec: WorkerSpec) -> tuple[int, str] | None:
        """Run one worker process until it ends: ``(pid, how it ended)``, or ``None`` if it must
        not be started again."""
        read_fd, write_fd = os.pipe()
        try:
            spec = replace(spec, ready_fd=write_fd)
            process = await trio.lowlevel.open_process(
                # Not ``-m trio_ws._server.worker``: the package imports that module itself, and runpy warns.
                [sys.executable, "-c", "from trio_ws._server.worker import main; main()"],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd, *spec.fds),
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        slot.process, slot.ready = process, False
        try:
            if self.closing:
                process.send_signal(signal.SIGTERM)  # aclose() came while it was starting
            assert process.stdin is not None
            await process.stdin.send_all(encode_spec(spec))
            line = await _read_line(read_fd)
            if line == "ready":
                self._became_ready(slot)
            elif line.startswith("error "):
                await process.wait()
                self._cannot_run(slot, line.removeprefix("error "))
                return None
            returncode = await process.wait()
            forget_worker(spec.metrics_dir, process.pid)
            if not slot.ready and not self._all_ready.is_set():
                self._cannot_run(slot, f"it {_how(returncode)} before it was ready")
                return None
            return process.pid, _how(returncode)
        finally:
            with trio.CancelScope(shield=True):
                await self._reap(process)
            slot.ready = False

    def _became_ready(self, slot: _Slot) -> None:
        slot.ready = True
        assert slot.process is not None
        if self._all_ready.is_set():
            logger.info("worker %d (pid %d) is serving again", slot.number, slot.process.pid)
            return
        self._ready.add(slot.number)
        if len(self._ready) == len(self.slots):
            self._all_ready.set()

    def _cannot_run(self, slot: _Slot, why: str) -> None:
        if not self._all_ready.is_set():
            if self._failure is None:
                self._failure = f"worker {slot.number} cannot run: {why}"
                self._failed.set()
            return
        logger.error("worker %d cannot run, and is not started again: %s", slot.number, why)

    async def wait_started(self) -> str | None:
        """Wait until every worker is ready (``None``) or one cannot run (why)."""
        async with trio.open_nursery() as nursery:

            async def first(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first, self._all_ready)
            nursery.start_soon(first, self._failed)
        return self._failure

    # -- stopping ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self.closing:
            await self._stopped.wait()
            return
        self.closing = True
        running = [slot for slot in self.slots if slot.running]
        logger.info("stopping %d worker(s)", len(running))
        for slot in running:
            _signal(slot, signal.SIGTERM)
        with trio.move_on_after(self._grace):
            await self._stopped.wait()
        for slot in self.slots:
            if slot.running:
                logger.warning(
                    "worker %d still running %.1f s after SIGTERM: killing it", slot.number, self._grace
                )
                _signal(slot, signal.SIGKILL)
        await self._stopped.wait()

    def stopped(self) -> None:
        self._stopped.set()

    @staticmethod
    async def _reap(process: trio.Process) -> None:
        """Make sure ``process`` has ended, and is waited for.

        A process still running here is one whose slot was cancelled (the
        hard stop, or another worker failing to start): two SIGTERMs make a
        worker stop at once; SIGKILL follows if it has not within two seconds.
        """
        if process.stdin is not None:
            await process.stdin.aclose()  # the lifeline, too
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(_KILL_MARGIN):
            await process.wait()
            return
        process.kill()
        await process.wait()


async def serve_workers(
    app: str | None,
    host: str | None = "127.0.0.1",
    port: int = 5000,
    *,
    workers: int,
    options: Options | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    backplane: str | None = None,
    reuse_port: bool | None = None,
    subprotocols: tuple[str, ...] = (),
    task_status: trio.TaskStatus[Workers] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the app named ``app`` (``module:attribute``) from ``workers`` processes on one port.

    Use it with a nursery, as :func:`serve`::

        async with trio.open_nursery() as nursery:
            workers = await nursery.start(partial(trio_ws.serve_workers, "myapp:app", workers=4))
            print(workers.url, workers.pids)
            ...
            await workers.aclose()   # graceful; serve_workers() then returns

    ``started()`` hands back a :class:`Workers` once every worker listens.
    The call itself runs until :meth:`Workers.aclose` has stopped them all,
    or until it is cancelled (the hard stop); either way no worker outlives it.

    The app is named, not passed: each worker is a new Python process that
    imports it (from the current directory, then ``sys.path``). ``None``
    serves the echo app, with ``subprotocols`` on its endpoint.

    Args:
        app: ``module:attribute`` naming a :class:`App`, or ``None`` for the echo app.
        host: The address to bind; ``None`` or ``""`` means every interface.
        port: The TCP port; 0 picks a free one (see :attr:`Workers.port`).
        workers: How many worker processes, 1 or more.
        options: Limits and timeouts for every worker.
        certfile: A PEM certificate chain: serve https and wss.
        keyfile: The PEM private key for ``certfile``, if not in the same file.
        backplane: The URL of the Redis (or Valkey) server the workers' hubs
            share: ``redis://host:port/db``, or ``rediss://`` for TLS. An app
            with hubs cannot run on several workers without one.
        reuse_port: ``True`` to share the port with ``SO_REUSEPORT``, ``False``
            to let the workers inherit the supervisor's listening sockets;
            ``None`` picks ``SO_REUSEPORT`` where it spreads connections
            evenly (Linux). See docs/guides/deployment.md.

    Raises:
        OSError: the port could not be bound; ``trio_ws._server.sockets.WorkersUnsupported``
            (an ``OSError``) on Windows.
        WorkersError: a worker could not start (the app cannot be imported,
            hubs without a backplane...): the message is the worker's.
        ValueError: ``workers`` is less than 1, or ``backplane`` is not a Redis URL.
    """
    if workers < 1:
        raise ValueError(f"workers={workers}: give 1 or more")
    if backplane is not None:
        backplane = backplane_url(backplane)
    options = options or Options()
    mode = sharing_mode(reuse_port)
    sockets = reserve(host, port, mode)
    metrics_dir = shared_metrics_dir() if options.metrics else None
    try:
        bound = addresses(sockets)
        specs = [
            WorkerSpec(
                app=app,
                number=number,
                workers=workers,
                options=options,
                sharing=mode,
                ready_fd=-1,
                addresses=bound if mode is SharingMode.REUSE_PORT else [],
                fds=[sock.fileno() for sock in sockets] if mode is SharingMode.INHERIT else [],
                subprotocols=subprotocols,
                certfile=certfile,
                keyfile=keyfile,
                backplane=backplane,
                sys_path=[entry for entry in sys.path if entry],
                log_level=logging.getLogger().getEffectiveLevel(),
                metrics_dir=metrics_dir,
                log_format="json" if uses_json() else "text",
            )
            for number in range(1, workers + 1)
        ]
        first_host, first_port = str(bound[0][1][0]), int(str(bound[0][1][1]))
        supervisor = _Supervisor(specs, mode, first_port, certfile is not None, url_host(host, first_host))
        failure = None
        try:
            async with trio.open_nursery() as nursery:
                for slot, spec in zip(supervisor.slots, specs, strict=True):
                    nursery.start_soon(supervisor.keep_running, slot, spec, name=f"worker slot {slot.number}")
                failure = await supervisor.wait_started()
                if failure is not None:
                    supervisor.closing = True
                    nursery.cancel_scope.cancel()  # the others stop at once
                else:
                    logger.info("%d worker(s) serving on port %d (%s)", workers, first_port, mode.value)
                    task_status.started(Workers(supervisor))
        finally:
            supervisor.stopped()
        if failure is not None:
            raise WorkersError(failure)
    finally:
        for sock in sockets:
            sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def _read_line(fd: int) -> str:
    """The first line written to the pipe ``fd`` (which this closes), or ``""`` if it closed first."""
    data = b""
    async with trio.lowlevel.FdStream(fd) as pipe:
        while b"\n" not in data:
            chunk = await pipe.receive_some(4096)
            if not chunk:
                break
            data += chunk
    return data.partition(b"\n")[0].decode("utf-8", "replace")


def _signal(slot: _Slot, signum: int) -> None:
    if slot.process is not None and slot.process.returncode is None:
        slot.process.send_signal(signum)


def _how(returncode: int) -> str:
    """How a process ended, in words."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    if returncode == EX_CONFIG:
        return "could not run its app"
    return f"exited with status {returncode}"
