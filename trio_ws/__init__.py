"""trio_ws: a structured-concurrency WebSocket server for trio.

General layout (each module opens with its own rules):

    _app.py         App: routes by path; pure, no I/O
    _options.py     Options: every limit and timeout, in one frozen dataclass
    _server.py      serve() and Server: the nursery tree, graceful shutdown
    _http.py        the front door: read the request head with h11, answer or upgrade
    _upgrade.py     pure handshake checks: upgrade request? allowed origin?
    _connection.py  one WebSocket's nursery: reader, keep-alive and handler
    _websocket.py   the one place that adapts trio-websocket's connection
    _deflate.py     permessage-deflate: wsproto's, with a server's limits
    _linger.py      closing TCP without a reset that would eat our last bytes
    _fastframes.py  a fast path through wsproto's framing, per connection
    _fastio.py      fewer trio schedule points in trio-websocket's hand-offs
    _keepalive.py   the ping task
    _echo.py        the echo handler and the app behind ``python -m trio_ws``
    _cli.py         the command line
    testing.py      public as ``trio_ws.testing``: in-memory and port-0 servers for your tests
    signalr/        public as ``trio_ws.signalr``: SignalR-compatible hubs (docs/hubs.md)
"""

from trio_websocket import ConnectionClosed as ConnectionClosed
from trio_websocket import WebSocketConnection as WebSocketConnection

from ._app import App as App
from ._app import HTTPHandler as HTTPHandler
from ._app import Request as Request
from ._app import Response as Response
from ._app import WebSocketHandler as WebSocketHandler
from ._echo import echo as echo
from ._echo import echo_app as echo_app
from ._options import Options as Options
from ._server import Server as Server
from ._server import ServerStatistics as ServerStatistics
from ._server import serve as serve
from ._server import serve_listeners as serve_listeners
from ._version import __version__ as __version__

__all__ = [
    "App",
    "ConnectionClosed",
    "HTTPHandler",
    "Options",
    "Request",
    "Response",
    "Server",
    "ServerStatistics",
    "WebSocketConnection",
    "WebSocketHandler",
    "__version__",
    "echo",
    "echo_app",
    "serve",
    "serve_listeners",
]
