"""trio_ws: a structured-concurrency WebSocket server for trio.

General layout: four layers, each a package that opens with what it owns,
and each module with its own rules. A layer imports only the ones below it
(_observe lowest, then _app, _websocket, _http, _server): where it needs an
upper one, it names the members it uses as a protocol (tests/test_layout.py).

    _app/           what the server serves; pure, no I/O
        app.py          App: routes, hooks and services
        routing.py      the route table: exact paths, path parameters, case-insensitive paths
        request.py      Request (what a handler is told), Identity, the request body stream
        response.py     Response: a whole body or a streamed one
        auth.py         bearer tokens and an auth hook built on them
        cors.py         cross-origin requests: preflights and the headers that allow them
        sse.py          Server-Sent Events: the format and a streamed response
        health.py       the health check and the checks an app adds to it
        echo.py         the echo handler and the app behind ``python -m trio_ws``
    _websocket/     RFC 6455 on the server side: the connection a handler talks to
        lifetime.py     one WebSocket's nursery: reader, keep-alive and handler
        connection.py   the connection handlers see (trio-websocket's public API)
        frames.py       frames in and out
        deflate.py      permessage-deflate, with a server's limits
        batching.py     the handler's inbox and outbox: many messages per step, one write per batch
        direct_socket.py  plain TCP read and written directly: no scheduler trip when the socket is ready
        keepalive.py    the ping task
    _http/          the front door: one TCP connection, request after request
        connection.py   request after request on one connection, answered or upgraded
        decide.py       what to do with a request head: answer at once or route it; pure
        wire.py         h11 and the stream: heads, bodies and responses, read and written with bounds
        target.py       the request target taken apart: path segments, query, host
        upgrade.py      pure handshake checks: upgrade request? well formed? allowed origin and host?
        host.py         what the front door needs of the server (Host), named as a protocol
    _server/        the server's lifetime, and workers
        server.py       serve() and Server: the nursery tree, graceful shutdown
        admission.py    keeping room: the accept loop, waiting connections, WebSocket slots
        workers.py      serve_workers(): a supervisor running the app in several processes on one port
        worker.py       one worker process of serve_workers
        sockets.py      sharing a port between workers: SO_REUSEPORT, or inherited sockets
        deployment.py   what this process is part of: workers, backplane (read by hub servers)
        load.py         finding the app named module:attribute (the CLI's APP)
        cli.py          the command line
    _observe/       seeing what a deployment does; every layer reports into it
        logs.py         structured logs: JSON lines with the connection's fields (--log-format json)
        metrics.py      GET /metrics (--metrics): ASP.NET Core's names and trio_ws's own, merged over workers
        tracing.py      OpenTelemetry spans per HTTP request and hub call, joined through traceparent
    _options.py     Options: every limit and timeout, in one frozen dataclass
    _errors.py      TrioWsError, the root of the errors you catch; its docstring lists them all
    _contain.py     containing what app code raises: it fails its own request, never the server
    _printable.py   escaping a peer's values for log lines and error bodies
    _linger.py      closing TCP without a reset that would eat our last bytes
    testing.py      public as ``trio_ws.testing``: in-memory and port-0 servers for your tests
    signalr/        public as ``trio_ws.signalr``: SignalR-compatible hubs (docs/hubs.md)
"""

from trio_websocket import ConnectionClosed as ConnectionClosed

from ._app.app import App as App
from ._app.app import Service as Service
from ._app.auth import bearer_auth as bearer_auth
from ._app.auth import bearer_token as bearer_token
from ._app.echo import echo as echo
from ._app.echo import echo_app as echo_app
from ._app.health import Health as Health
from ._app.health import HealthCheck as HealthCheck
from ._app.request import Identity as Identity
from ._app.request import Request as Request
from ._app.request import RequestBody as RequestBody
from ._app.request import RequestBodyError as RequestBodyError
from ._app.response import Response as Response
from ._app.routing import AuthHook as AuthHook
from ._app.routing import BeforeUpgrade as BeforeUpgrade
from ._app.routing import HTTPHandler as HTTPHandler
from ._app.routing import InheritAuth as InheritAuth
from ._app.routing import WebSocketHandler as WebSocketHandler
from ._app.sse import ServerSentEvent as ServerSentEvent
from ._app.sse import sse_response as sse_response
from ._errors import TrioWsError as TrioWsError
from ._observe.logs import JsonFormatter as JsonFormatter
from ._observe.logs import configure_logging as configure_logging
from ._observe.logs import log_context as log_context
from ._options import Options as Options
from ._server.deployment import DeploymentError as DeploymentError
from ._server.load import AppImportError as AppImportError
from ._server.load import AppNotFound as AppNotFound
from ._server.load import load_app as load_app
from ._server.server import Server as Server
from ._server.server import ServerStatistics as ServerStatistics
from ._server.server import serve as serve
from ._server.server import serve_listeners as serve_listeners
from ._server.workers import Workers as Workers
from ._server.workers import WorkersError as WorkersError
from ._server.workers import WorkersStatistics as WorkersStatistics
from ._server.workers import serve_workers as serve_workers
from ._version import __version__ as __version__
from ._websocket.connection import ServerConnection as ServerWebSocket
from ._websocket.connection import WebSocketConnection as WebSocketConnection

__all__ = [
    "App",
    "AppImportError",
    "AppNotFound",
    "AuthHook",
    "BeforeUpgrade",
    "ConnectionClosed",
    "DeploymentError",
    "HTTPHandler",
    "Health",
    "HealthCheck",
    "Identity",
    "InheritAuth",
    "JsonFormatter",
    "Options",
    "Request",
    "RequestBody",
    "RequestBodyError",
    "Response",
    "Server",
    "ServerSentEvent",
    "ServerStatistics",
    "ServerWebSocket",
    "Service",
    "TrioWsError",
    "WebSocketConnection",
    "WebSocketHandler",
    "Workers",
    "WorkersError",
    "WorkersStatistics",
    "__version__",
    "bearer_auth",
    "bearer_token",
    "configure_logging",
    "echo",
    "echo_app",
    "load_app",
    "log_context",
    "serve",
    "serve_listeners",
    "serve_workers",
    "sse_response",
]
