"""SignalR-compatible hubs for trio: calls both ways, streams, groups and client results.

The official SignalR clients (``@microsoft/signalr`` and its siblings,
``pysignalr``, ``signalrcore``) speak to a ``Hub`` served by trio_ws as they
speak to ASP.NET Core. See ``docs/hubs.md``; for raw bytes over the same transports,
without the hub protocol, ``map_connection`` (``docs/connections.md``).

General layout (each module opens with its own rules):

    _hub.py          Hub, and HubCallerContext (what hub code knows about its caller)
    _clients.py      HubClients, ClientProxy, GroupManager, UserManager: reaching clients
    _server.py       HubServer: the nursery that hub connections live in
    _endpoint.py     map_hub: a hub on an App (negotiate, its WebSocket, its service)
    _connection_handler.py  map_connection, Connection: raw bytes over the same transports
    _transport_connection.py  a connection over the transports, whatever speaks over it
    _negotiate.py    POST {hub}/negotiate: versions, ids, transports (pure)
    _websocket_transport.py  WebSocketTransport: a hub connection over a trio_ws WebSocket
    _connection.py   one hub connection: handshake, reading, keep-alive, timeouts, ending
    _dispatch.py     running calls and streams, client results
    _filters.py      HubFilter, add_hub_filter: code around every call, connect and disconnect
    _requirements.py authorize, allow_anonymous, rate_limit: what a method requires of its callers
    _observe.py      the filter that counts and traces every call, with metrics or tracing on
    _methods.py      which methods a hub offers, and their names on the wire
    _binding.py      checking and converting arguments by annotation
    _streams.py      HubStream: a stream the client uploads
    _outbox.py       the bounded queue of bytes waiting to go to one client
    _transport.py    the Transport interface, and StreamTransport over a trio Stream
    _typed.py        typed hubs: Hub[ClientProtocol], TypedHubClients
    _client.py       open_hub_client, HubClient: the trio client
    _client_typed.py      the client's typed side: HubClient.server() and HubClient.handle()
    _client_connect.py    one client connection: opening it (transport fallback, handshake), resuming it
    _client_negotiate.py  the client's negotiate, and what its answer means
    _client_transports.py the client's transports: WebSockets, Server-Sent Events, Long Polling
    _client_http.py  the client's HTTP/1.1 over h11 (negotiate, POSTs, polls, event streams),
                     and HubClientError
    _backplane/      the Backplane interface, the in-process backplane and the Redis one
    _options.py      HubOptions and SlowClientPolicy
    _errors.py       HubError, ClientResultError, BackplaneError, DisconnectReason, error texts
    _protocol/       the hub protocol, sans-I/O: JSON, MessagePack, handshake
    contract.py      python -m trio_ws.signalr.contract: the command line
    _contract.py     typescript_contract, asyncapi_contract: a hub's client contracts
    _contract_model.py       what a hub offers and expects, read from its type hints
    _contract_typescript.py  the contract as TypeScript for @microsoft/signalr
    _contract_asyncapi.py    the contract as an AsyncAPI 3.0 document
"""

from ._backplane import Audience as Audience
from ._backplane import Backplane as Backplane
from ._backplane import InProcessBackplane as InProcessBackplane
from ._backplane import LocalConnection as LocalConnection
from ._backplane import Pending as Pending
from ._backplane import RedisBackplane as RedisBackplane
from ._backplane import SerializedMessage as SerializedMessage
from ._client import ClientState as ClientState
from ._client import HubClient as HubClient
from ._client import HubClientError as HubClientError
from ._client import InvocationError as InvocationError
from ._client import open_hub_client as open_hub_client
from ._clients import ClientProxy as ClientProxy
from ._clients import GroupManager as GroupManager
from ._clients import HubClients as HubClients
from ._clients import SingleClientProxy as SingleClientProxy
from ._clients import UserManager as UserManager
from ._connection_handler import Connection as Connection
from ._connection_handler import ConnectionHandler as ConnectionHandler
from ._connection_handler import ConnectionHandlerServer as ConnectionHandlerServer
from ._connection_handler import map_connection as map_connection
from ._contract import ContractError as ContractError
from ._contract import asyncapi_contract as asyncapi_contract
from ._contract import typescript_contract as typescript_contract
from ._endpoint import NegotiateHook as NegotiateHook
from ._endpoint import map_hub as map_hub
from ._errors import BackplaneError as BackplaneError
from ._errors import ClientResultError as ClientResultError
from ._errors import DisconnectReason as DisconnectReason
from ._errors import HubError as HubError
from ._filters import CallRefused as CallRefused
from ._filters import HubFilter as HubFilter
from ._filters import HubInvocationContext as HubInvocationContext
from ._filters import HubLifetimeContext as HubLifetimeContext
from ._filters import add_hub_filter as add_hub_filter
from ._hub import Hub as Hub
from ._hub import HubCallerContext as HubCallerContext
from ._methods import hub_method as hub_method
from ._negotiate import HttpTransportType as HttpTransportType
from ._options import HubOptions as HubOptions
from ._options import SlowClientPolicy as SlowClientPolicy
from ._protocol.messages import TransferFormat as TransferFormat
from ._requirements import Policy as Policy
from ._requirements import allow_anonymous as allow_anonymous
from ._requirements import authorize as authorize
from ._requirements import rate_limit as rate_limit
from ._server import HubServer as HubServer
from ._server import HubServerStatistics as HubServerStatistics
from ._streams import HubStream as HubStream
from ._transport import StreamTransport as StreamTransport
from ._transport import Transport as Transport
from ._typed import TypedHubClients as TypedHubClients
from ._websocket_transport import WebSocketTransport as WebSocketTransport

__all__ = [
    "Audience",
    "Backplane",
    "BackplaneError",
    "CallRefused",
    "ClientProxy",
    "ClientResultError",
    "ClientState",
    "Connection",
    "ConnectionHandler",
    "ConnectionHandlerServer",
    "ContractError",
    "DisconnectReason",
    "GroupManager",
    "Hub",
    "HubCallerContext",
    "HttpTransportType",
    "HubClient",
    "HubClientError",
    "HubClients",
    "HubError",
    "HubFilter",
    "HubInvocationContext",
    "HubLifetimeContext",
    "HubOptions",
    "HubServer",
    "HubServerStatistics",
    "HubStream",
    "InProcessBackplane",
    "InvocationError",
    "LocalConnection",
    "Pending",
    "Policy",
    "NegotiateHook",
    "RedisBackplane",
    "SerializedMessage",
    "SingleClientProxy",
    "SlowClientPolicy",
    "StreamTransport",
    "TransferFormat",
    "Transport",
    "TypedHubClients",
    "UserManager",
    "WebSocketTransport",
    "add_hub_filter",
    "allow_anonymous",
    "asyncapi_contract",
    "authorize",
    "hub_method",
    "map_connection",
    "map_hub",
    "open_hub_client",
    "rate_limit",
    "typescript_contract",
]
