"""trio_ws: a structured-concurrency WebSocket server for trio.

General layout (each module opens with its own rules):

    _app.py         App: routes, hooks and services; pure, no I/O
    _routing.py     the route table: exact paths, path parameters, case-insensitive paths
    _request.py     Request (what a handler is told), Identity, the request body stream
    _response.py    Response: a whole body or a streamed one
    _auth.py        bearer tokens and an auth hook built on them
    _cors.py        cross-origin requests: preflights and the headers that allow them
    _sse.py         Server-Sent Events: the format and a streamed response
    _options.py     Options: every limit and timeout, in one frozen dataclass
    _server.py      serve() and Server: the nursery tree, graceful shutdown
    _admission.py   keeping room: the accept loop, waiting connections, WebSocket slots
    _http.py        the front door: request after request on one connection, answered or upgraded
    _decide.py      what to do with a request head: answer at once or route it; pure
    _wire.py        h11 and the stream: heads, bodies and responses, read and written with bounds
    _target.py      the request target taken apart: path segments, query, host
    _upgrade.py     pure handshake checks: upgrade request? well formed? allowed origin and host?
    _printable.py   escaping a peer's values for log lines and error bodies
    _logging.py     structured logs: JSON lines with the connection's fields (--log-format json)
    _metrics.py     GET /metrics (--metrics): ASP.NET Core's names and trio_ws's own, merged over workers
    _tracing.py     OpenTelemetry spans per HTTP request and hub call, joined through traceparent
    _connection.py  one WebSocket's nursery: reader, keep-alive and handler
    _websocket.py   the one place that adapts trio-websocket's connection
    _deflate.py     permessage-deflate: wsproto's, with a server's limits
    _linger.py      closing TCP without a reset that would eat our last bytes
    _fastframes.py  a fast path through wsproto's framing, per connection
    _fastio.py      the handler's inbox and outbox: many messages per step, one write per batch
    _direct_socket.py  plain TCP read and written directly: no scheduler trip when the socket is ready
    _keepalive.py   the ping task
    _echo.py        the echo handler and the app behind ``python -m trio_ws``
    _load.py        finding the app named module:attribute (the CLI's APP)
    _health.py      the health check and the checks an app adds to it
    _workers.py     serve_workers(): a supervisor running the app in several processes on one port
    _worker.py      one worker process of serve_workers
    _sockets.py     sharing a port between workers: SO_REUSEPORT, or inherited sockets
    _deployment.py  what this process is part of: workers, backplane (read by hub servers)
    _cli.py         the command line
    testing.py      public as ``trio_ws.testing``: in-memory and port-0 servers for your tests
    signalr/        public as ``trio_ws.signalr``: SignalR-compatible hubs (docs/hubs.md)
"""

from trio_websocket import ConnectionClosed as ConnectionClosed

from ._app import App as App
from ._app import Service as Service
from ._auth import bearer_auth as bearer_auth
from ._auth import bearer_token as bearer_token
from ._deployment import DeploymentError as DeploymentError
from ._echo import echo as echo
from ._echo import echo_app as echo_app
from ._health import Health as Health
from ._health import HealthCheck as HealthCheck
from ._load import AppImportError as AppImportError
from ._load import AppNotFound as AppNotFound
from ._load import load_app as load_app
from ._logging import JsonFormatter as JsonFormatter
from ._logging import configure_logging as configure_logging
from ._logging import log_context as log_context
from ._options import Options as Options
from ._request import Identity as Identity
from ._request import Request as Request
from ._request import RequestBody as RequestBody
from ._request import RequestBodyError as RequestBodyError
from ._response import Response as Response
from ._routing import AuthHook as AuthHook
from ._routing import BeforeUpgrade as BeforeUpgrade
from ._routing import HTTPHandler as HTTPHandler
from ._routing import InheritAuth as InheritAuth
from ._routing import WebSocketHandler as WebSocketHandler
from ._server import Server as Server
from ._server import ServerStatistics as ServerStatistics
from ._server import serve as serve
from ._server import serve_listeners as serve_listeners
from ._sse import ServerSentEvent as ServerSentEvent
from ._sse import sse_response as sse_response
from ._version import __version__ as __version__
from ._websocket import ServerConnection as ServerWebSocket
from ._websocket import WebSocketConnection as WebSocketConnection
from ._workers import Workers as Workers
from ._workers import WorkersError as WorkersError
from ._workers import WorkersStatistics as WorkersStatistics
from ._workers import serve_workers as serve_workers

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
