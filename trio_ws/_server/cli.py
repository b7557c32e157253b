"""``python -m trio_ws [APP]``: serve an app (the echo app by default), and stop cleanly on Ctrl-C or SIGTERM.

Rules of this module:

* A user's mistake (a bad value, a busy port, an unreadable certificate, an
  APP that names no app) ends with one line on stderr that names the
  problem and a non-zero exit, never a traceback. An exception raised by
  the app's own module while it is imported is the app's bug: its
  traceback is shown, then that one line.
* The first Ctrl-C or SIGTERM shuts down gracefully (close 1001 to every
  client, then a bounded grace period); a second one stops at once. Both
  exit with status 0. With ``--workers N`` the supervisor forwards each to
  every worker (``_workers.py``).
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import re
import signal
import ssl
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import NoReturn

import trio

from .._app.app import App
from .._app.echo import echo_app
from .._app.routing import WebSocketRoute
from .._observe.logs import configure_logging
from .._observe.metrics import metrics_path_taken
from .._observe.tracing import configure_from_environment
from .._options import Options
from .deployment import Deployment, backplane_url, deployed, redacted
from .load import AppImportError, AppNotFound, load_app
from .server import Server, serve
from .sockets import WorkersUnsupported
from .worker import first_leaf
from .workers import Workers, WorkersError, serve_workers

__all__ = ["main"]

logger = logging.getLogger("trio_ws.cli")

_DEFAULTS = Options()
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SHOWN_ENDPOINTS = 5  # WebSocket endpoints listed in the banner


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``), serve until a signal, and exit."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        options = _options(args)
        backplane = None if args.backplane is None else backplane_url(args.backplane)
    except ValueError as exc:
        parser.error(str(exc))
    if args.app is not None and args.subprotocol:
        parser.error("--subprotocol is for the echo app; an APP's routes choose their own subprotocols")
    if backplane is not None and importlib.util.find_spec("coredis") is None:
        _exit_with("--backplane needs coredis, the Redis client: pip install 'trio_ws[redis]'")
    if args.metrics and importlib.util.find_spec("prometheus_client") is None:
        _exit_with("--metrics needs prometheus_client: pip install 'trio_ws[metrics]'")
    ssl_context = _ssl_context(parser, args.certfile, args.keyfile)
    configure_logging(args.log_level, format=args.log_format)
    app = _app(args)
    if args.metrics and (taken := metrics_path_taken(app)) is not None:
        _exit_with(taken)
    try:
        configure_from_environment()  # traces, when OTEL_* variables ask for them
    except RuntimeError as exc:
        _exit_with(str(exc))
    try:
        if args.workers > 1:
            trio.run(_supervise_until_signal, args, options, app, backplane)
        else:
            deployment = Deployment(app=app, backplane=backplane)
            trio.run(_serve_until_signal, args, options, ssl_context, app, deployment)
    except* (WorkersError, WorkersUnsupported) as group:
        _exit_with(str(first_leaf(group)))
    except* OSError as group:
        _exit_with(f"cannot listen on {args.host}:{args.port}: {_os_error_text(first_leaf(group))}")
    except* KeyboardInterrupt:
        pass  # Ctrl-C before the signal handlers were in place: nothing to shut down yet.


def _app(args: argparse.Namespace) -> App:
    """The app to serve: APP, or the echo app. A bad APP ends the program with one line."""
    if args.app is None:
        return echo_app(subprotocols=args.subprotocol)
    try:
        return load_app(args.app)
    except AppNotFound as exc:
        _exit_with(str(exc))
    except AppImportError as exc:
        cause = exc.__cause__ or exc
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
        _exit_with(str(exc))


def _options(args: argparse.Namespace) -> Options:
    """The ``Options`` the parsed command line asks for.

    Raises:
        ValueError: a value ``Options`` refuses, with a message naming it.
    """
    return Options(
        keep_alive_interval=args.keep_alive_interval,
        keep_alive_timeout=args.keep_alive_timeout,
        receive_buffer_size=args.receive_buffer_size,
        max_message_size=args.max_message_size,
        allowed_origins=tuple(args.allowed_origin),
        allowed_hosts=tuple(args.allowed_host),
        handshake_timeout=args.handshake_timeout,
        http_idle_timeout=args.http_idle_timeout,
        request_body_timeout=args.request_body_timeout,
        max_request_body=args.max_request_body,
        max_requests_per_connection=args.max_requests_per_connection,
        shutdown_timeout=args.shutdown_timeout,
        max_connections=args.max_connections,
        max_idle_connections=args.max_idle_connections,
        compression=args.compression,
        compression_window_bits=args.compression_window_bits,
        compression_min_size=args.compression_min_size,
        metrics=args.metrics,
    )


async def _serve_until_signal(
    args: argparse.Namespace,
    options: Options,
    ssl_context: ssl.SSLContext | None,
    app: App,
    deployment: Deployment,
) -> None:
    with (
        deployed(deployment),
        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
    ):
        async with trio.open_nursery() as nursery:
            stop = _Stop(signals, nursery.cancel_scope)
            nursery.start_soon(stop.watch)
            server: Server = await nursery.start(
                partial(serve, app, args.host, args.port, options=options, ssl_context=ssl_context)
            )
            _banner(args, server.url, server.ws_url, app, deployment.backplane)
            await stop.requested("")
            await server.aclose()
            nursery.cancel_scope.cancel()  # ends the signal watcher
    print("stopped", flush=True)


async def _supervise_until_signal(
    args: argparse.Namespace, options: Options, app: App, backplane: str | None
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stop = _Stop(signals, nursery.cancel_scope)
            nursery.start_soon(stop.watch)
            workers: Workers = await nursery.start(
                partial(
                    serve_workers,
                    args.app,
                    args.host,
                    args.port,
                    workers=args.workers,
                    options=options,
                    certfile=args.certfile,
                    keyfile=args.keyfile,
                    backplane=backplane,
                    subprotocols=tuple(args.subprotocol),
                )
            )
            stats = workers.statistics()
            pids = " ".join(map(str, workers.pids))
            _banner(
                args,
                workers.url,
                workers.ws_url,
                app,
                backplane,
                f"{stats.workers} workers (pids {pids}), sharing the port with {stats.sharing}",
            )
            await stop.requested(f" {stats.workers} workers")
            await workers.aclose()
            nursery.cancel_scope.cancel()
    print("stopped", flush=True)


class _Stop:
    """The one reader of Ctrl-C and SIGTERM, whatever the server is doing.

    Before the server has started (workers can take a while: an app that
    connects somewhere on import), a signal stops at once. After, the first
    asks for the graceful stop (``requested`` returns), and a second one
    stops at once.
    """

    def __init__(self, signals: AsyncIterator[int], everything: trio.CancelScope) -> None:
        self._signals = signals
        self._everything = everything
        self._started: str | None = None  # what is shutting down, once the server has started
        self._requested = trio.Event()

    async def requested(self, what: str) -> None:
        """The server has started: wait for the first signal."""
        self._started = what
        await self._requested.wait()

    async def watch(self) -> None:
        async for signum in self._signals:
            name = signal.Signals(signum).name
            if self._started is None:
                print(f"{name}: stopping while starting", flush=True)
            elif not self._requested.is_set():
                print(f"{name}: shutting down{self._started} (again to stop at once)", flush=True)
                self._requested.set()
                continue
            else:
                print(f"{name} again: stopping now", flush=True)
            self._everything.cancel()
            return


def _banner(
    args: argparse.Namespace,
    url: str,
    ws_url: Callable[[str], str],
    app: App,
    backplane: str | None,
    workers: str | None = None,
) -> None:
    if args.app is None:
        lines = [f"trio_ws echo app listening on {url}", f"WebSocket endpoint: {ws_url('/ws')}"]
    else:
        lines = [f"trio_ws serving {args.app}, listening on {url}"]
        paths = [route.path for route in app.routes if isinstance(route, WebSocketRoute)]
        if paths:
            shown = ", ".join(ws_url(path) for path in paths[:_SHOWN_ENDPOINTS])
            more = f" and {len(paths) - _SHOWN_ENDPOINTS} more" if len(paths) > _SHOWN_ENDPOINTS else ""
            lines.append(f"WebSocket endpoint{'s' if len(paths) > 1 else ''}: {shown}{more}")
    if backplane is not None:
        lines.append(f"Hub backplane: {redacted(backplane)}")
    if workers is not None:
        lines.append(workers)
    if args.metrics:
        lines.append(f"Metrics: {url.rstrip('/')}/metrics")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def _parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="python -m trio_ws",
        description="Serve a trio_ws App, by default the echo app: a web page at / and a WebSocket echo "
        "at /ws, on one port.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "app",
        nargs="?",
        metavar="APP",
        help="the App to serve, as module:attribute (myapp:app is the App named app in myapp.py, "
        "imported from the current directory); without it, the echo app",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serve from N processes sharing the port, under a supervisor that restarts one that "
        "dies; an app with hubs needs --backplane for more than one",
    )
    p.add_argument(
        "--backplane",
        metavar="URL",
        help="the Redis or Valkey server that hubs share their clients, groups and users through: "
        "redis://HOST:PORT/DB, or rediss:// for TLS (needs pip install 'trio_ws[redis]')",
    )
    p.add_argument("--host", default="localhost", help="address to bind; 0.0.0.0 for every interface")
    p.add_argument("--port", type=_port, default=5000, help="TCP port; 0 picks a free one")
    p.add_argument(
        "--keep-alive-interval",
        type=_optional_seconds,
        default=d.keep_alive_interval,
        metavar="SECONDS",
        help="send a ping this often so proxies keep the socket open; 0 turns it off",
    )
    p.add_argument(
        "--keep-alive-timeout",
        type=_optional_seconds,
        default=d.keep_alive_timeout,
        metavar="SECONDS",
        help="close a connection (1011) whose pong is this late; 0 waits forever",
    )
    p.add_argument(
        "--receive-buffer-size",
        type=_size,
        default=d.receive_buffer_size,
        metavar="BYTES",
        help="bytes read from the socket at a time (accepts 64KiB, 1MiB)",
    )
    p.add_argument(
        "--max-message-size",
        type=_size,
        default=d.max_message_size,
        metavar="BYTES",
        help=(
            "close a connection (1009) that sends a larger message (UTF-8 bytes for text), "
            "or one in more than BYTES/64 frames (accepts 16MiB)"
        ),
    )
    p.add_argument(
        "--max-connections",
        type=_optional_count,
        default=d.max_connections,
        metavar="N",
        help="most WebSockets open at once; past it, new upgrades get 503; 0 sets no limit",
    )
    p.add_argument(
        "--max-idle-connections",
        type=_optional_count,
        default=d.max_idle_connections,
        metavar="N",
        help="most connections waiting for a request; past it, the one that waited longest is "
        "closed; 0 sets no limit",
    )
    p.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin, such as https://example.com, that may connect besides the "
        "page's own; repeat for more, or '*' for any (default: same host only)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name, such as app.example, that browsers may use to reach a server bound to "
        "loopback (a proxy's name, say); repeat for more, or '*' for any (default: loopback names only)",
    )
    p.add_argument(
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="a subprotocol the echo endpoint accepts; repeat for more, in order of preference",
    )
    p.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=d.compression,
        help="accept permessage-deflate when a client offers it (browsers do)",
    )
    p.add_argument(
        "--compression-window-bits",
        type=_window_bits,
        default=d.compression_window_bits,
        metavar="BITS",
        help="deflate window, 9 to 15: larger compresses better and takes more memory per connection",
    )
    p.add_argument(
        "--compression-min-size",
        type=_size_or_zero,
        default=d.compression_min_size,
        metavar="BYTES",
        help="send messages shorter than this uncompressed",
    )
    p.add_argument(
        "--handshake-timeout",
        type=_optional_seconds,
        default=d.handshake_timeout,
        metavar="SECONDS",
        help="drop a connection that has not finished its request or upgrade by then; 0 waits forever",
    )
    p.add_argument(
        "--http-idle-timeout",
        type=_optional_seconds,
        default=d.http_idle_timeout,
        metavar="SECONDS",
        help="close a keep-alive connection that sends no new request for this long; 0 waits forever",
    )
    p.add_argument(
        "--max-request-body",
        type=_size,
        default=d.max_request_body,
        metavar="BYTES",
        help="answer a larger request body with 413 (accepts 64KiB, 16MiB)",
    )
    p.add_argument(
        "--request-body-timeout",
        type=_optional_seconds,
        default=d.request_body_timeout,
        metavar="SECONDS",
        help="answer a request body that takes longer to arrive with 408; 0 waits forever",
    )
    p.add_argument(
        "--max-requests-per-connection",
        type=_optional_count,
        default=d.max_requests_per_connection,
        metavar="N",
        help="close a keep-alive connection after this many requests; 0 sets no limit",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=d.shutdown_timeout,
        metavar="SECONDS",
        help="on Ctrl-C, how long open connections get to finish after close 1001",
    )
    p.add_argument(
        "--metrics",
        action="store_true",
        help="serve GET /metrics in the Prometheus text format (pip install 'trio_ws[metrics]')",
    )
    p.add_argument("--certfile", help="PEM certificate chain: serve https and wss")
    p.add_argument("--keyfile", help="PEM private key for --certfile (if not in the same file)")
    p.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="how much to log",
    )
    p.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines as text, or as one JSON object per line with the connection's fields",
    )
    return p


def _ssl_context(
    parser: argparse.ArgumentParser, certfile: str | None, keyfile: str | None
) -> ssl.SSLContext | None:
    if certfile is None:
        if keyfile is not None:
            parser.error("--keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except OSError as exc:
        _exit_with(f"cannot load certificate {certfile}: {_os_error_text(exc)}")
    except ssl.SSLError as exc:
        _exit_with(
            f"cannot load certificate {certfile}: {exc.reason or exc} (is it PEM, "
            "and does --keyfile match it?)"
        )
    return context


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def _workers(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers; write 1 or more")
    return int(text)


def _window_bits(text: str) -> int:
    if not text.strip().isdigit() or not 9 <= int(text) <= 15:
        raise argparse.ArgumentTypeError(f"{text!r} is not a window size; write a whole number from 9 to 15")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _optional_seconds(text: str) -> float | None:
    """Seconds, where 0 (or 'off') turns the timer off."""
    if text.strip().lower() in {"off", "none"}:
        return None
    return _seconds(text) or None


def _optional_count(text: str) -> int | None:
    """A whole number, where 0 (or 'none') means no limit."""
    if text.strip().lower() in {"off", "none"}:
        return None
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 (no limit) or more")
    return count or None


def _size(text: str) -> int:
    size = _size_or_zero(text)
    if size <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 bytes")
    return size


def _size_or_zero(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 65536, 64KiB or 16MiB")
    number, unit = match.groups()
    return int(number) * _UNITS[(unit or "")[:1].lower()]


def _os_error_text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return "address already in use (another server is running there; pick another --port)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def _exit_with(message: str) -> NoReturn:
    print(f"trio_ws: error: {message}", file=sys.stderr)
    sys.exit(1)
