"""One worker of ``serve_workers``, a process the supervisor starts to run ``main()`` here.

::

    trio.run(_run)                       one worker process, in a session of its own
    └─ worker nursery
       ├─ stop watcher                   SIGTERM or SIGINT, or the lifeline ending: stop gracefully;
       │                                 a second SIGTERM or SIGINT: stop at once
       └─ serve_listeners(app, ...)      the app, exactly as one process serves it:
                                         its services (hub servers, their backplanes), its connections

Rules of this module:

* The supervisor writes a ``WorkerSpec`` on the worker's stdin (pickled,
  after its length), then keeps stdin open: that is the lifeline. When the
  supervisor's end closes (it died, even of SIGKILL), the worker stops
  gracefully instead of running on as an orphan.
* The worker tells the supervisor once, on its ready pipe, ``ready`` (it
  listens) or ``error <one line>`` (it cannot run: an app that cannot be
  imported, an address it cannot bind, hubs without a backplane), then
  closes the pipe. It exits 0 after a stop, ``EX_CONFIG`` (78) after an error.
* Graceful stop is ``Server.aclose()``, as for one process: close 1001 to
  every WebSocket, Close with ``allowReconnect`` to every hub client (the
  hub servers see the shutdown as a single process's do).
* The worker runs in a session of its own, so Ctrl-C at a terminal reaches
  only the supervisor, which forwards one SIGTERM to each worker.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import ssl
import struct
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import trio

from .._app.app import App
from .._app.echo import echo_app
from .._observe.logs import add_log_fields, configure_logging
from .._observe.metrics import MULTIPROCESS_ENV
from .._observe.tracing import configure_from_environment
from .._options import Options
from .deployment import Deployment, DeploymentError, deployed
from .load import AppImportError, AppNotFound, load_app
from .server import Server, serve_listeners
from .sockets import Address, SharingMode, listen_on

__all__ = ["EX_CONFIG", "WorkerSpec", "encode_spec", "first_leaf", "main"]

EX_CONFIG = 78  # sysexits.h: "configuration error"; the supervisor does not restart it

logger = logging.getLogger("trio_ws.workers")

_LENGTH = struct.Struct("!I")


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to serve, as the supervisor hands it over on stdin."""

    app: str | None  # module:attribute; None for the echo app
    number: int  # from 1
    workers: int
    options: Options
    sharing: SharingMode
    ready_fd: int
    addresses: list[Address] = field(default_factory=list)  # REUSE_PORT: bind these
    fds: list[int] = field(default_factory=list)  # INHERIT: accept on these listening sockets
    subprotocols: tuple[str, ...] = ()  # the echo app's
    certfile: str | None = None
    keyfile: str | None = None
    backplane: str | None = None
    sys_path: list[str] = field(default_factory=list)
    log_level: int = logging.WARNING
    metrics_dir: str | None = None  # where every worker's figures are kept (with Options.metrics)
    log_format: Literal["text", "json"] = "text"


def encode_spec(spec: WorkerSpec) -> bytes:
    body = pickle.dumps(spec)
    return _LENGTH.pack(len(body)) + body


def main() -> None:
    """The worker process: read the spec, serve until told to stop, exit 0 (or 78 if it cannot run)."""
    spec = _read_spec()
    if spec.log_format == "json":
        configure_logging(spec.log_level, format="json")
        add_log_fields(partial(dict, worker=spec.number))
    else:
        logging.basicConfig(
            level=spec.log_level,
            format=f"%(asctime)s %(levelname)s [worker {spec.number}] %(name)s: %(message)s",
        )
    sys.path[:0] = [entry for entry in spec.sys_path if entry not in sys.path]
    if spec.metrics_dir is not None:
        # Before prometheus_client is imported (by the app, or by the server): it reads it then.
        os.environ[MULTIPROCESS_ENV] = spec.metrics_dir
    tell = _Teller(spec.ready_fd)
    try:
        configure_from_environment()  # the supervisor's OTEL_* variables are every worker's
        app = echo_app(subprotocols=spec.subprotocols) if spec.app is None else load_app(spec.app)
        listeners = _listeners(spec)
    except (AppNotFound, AppImportError, OSError, ssl.SSLError, RuntimeError) as exc:
        tell.error(str(exc))
        sys.exit(EX_CONFIG)
    try:
        trio.run(_run, spec, app, listeners, tell)
    except* DeploymentError as group:
        tell.error(str(first_leaf(group)))
        sys.exit(EX_CONFIG)


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception in ``group`` that is not itself a group (nurseries nest them)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _read_spec() -> WorkerSpec:
    header = _read_exactly(0, _LENGTH.size)
    spec = pickle.loads(_read_exactly(0, _LENGTH.unpack(header)[0]))
    assert isinstance(spec, WorkerSpec)
    return spec


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise SystemExit("trio_ws worker: the supervisor went away before handing over the spec")
        data += chunk
    return data


class _Teller:
    """The ready pipe: one line to the supervisor, then closed."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def ready(self) -> None:
        self._say("ready")

    def error(self, text: str) -> None:
        self._say("error " + " ".join(text.split()))

    def _say(self, line: str) -> None:
        if self._fd is not None:
            os.write(self._fd, line.encode("utf-8", "replace") + b"\n")
            os.close(self._fd)
            self._fd = None


def _listeners(spec: WorkerSpec) -> list[trio.abc.Listener[trio.abc.Stream]]:
    if spec.sharing is SharingMode.REUSE_PORT:
        sockets = listen_on(spec.addresses)
    else:
        sockets = [socket.socket(fileno=fd) for fd in spec.fds]
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = [
        trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in sockets
    ]
    if spec.certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(spec.certfile, spec.keyfile)
        listeners = [trio.SSLListener(listener, context, https_compatible=True) for listener in listeners]
    return listeners


async def _run(
    spec: WorkerSpec, app: App, listeners: list[trio.abc.Listener[trio.abc.Stream]], tell: _Teller
) -> None:
    deployment = Deployment(app=app, workers=spec.workers, worker=spec.number, backplane=spec.backplane)
    with deployed(deployment), trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(
                partial(serve_listeners, app, listeners, options=spec.options)
            )
            tell.ready()
            logger.info("worker %d (pid %d) serving", spec.number, os.getpid())
            why = await _first_stop(signals)
            logger.info("worker %d: %s: shutting down", spec.number, why)
            nursery.start_soon(_stop_on_second_signal, signals, nursery.cancel_scope)
            await server.aclose()
            nursery.cancel_scope.cancel()


async def _first_stop(signals: AsyncIterator[int]) -> str:
    """Wait for SIGTERM or SIGINT, or for the lifeline to end; say which came."""
    why = "the supervisor is gone"
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            nonlocal why
            async for signum in signals:
                why = signal.Signals(signum).name
                break
            nursery.cancel_scope.cancel()

        async def watch_lifeline() -> None:
            async with trio.lowlevel.FdStream(os.dup(0)) as lifeline:
                while await lifeline.receive_some():
                    pass  # the supervisor sends nothing more; only the end counts
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        nursery.start_soon(watch_lifeline)
    return why


async def _stop_on_second_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for signum in signals:
        logger.info("%s again: stopping now", signal.Signals(signum).name)
        scope.cancel()
        return
