"""SignalR-compatible hubs for trio: calls both ways, streams, groups and client results.

The official SignalR clients (``@microsoft/signalr`` and its siblings,
``pysignalr``, ``signalrcore``) speak to a ``Hub`` served by trio_ws as they
speak to ASP.NET Core. See ``docs/hubs.md``; for raw bytes over the same transports,
without the hub protocol, ``map_connection`` (``docs/connections.md``).

General layout (each package opens with what it owns, each module with its rules):

    _hub/            what hub code sees, and running a client's calls
        hub.py           Hub, and what it needs of its server (HubHost)
        call.py          the call a task runs (CallInfo), HubCallerContext, the connection hub code sees
        typed.py         typed hubs: Hub[ClientProtocol], TypedHubClients
        clients.py       HubClients, ClientProxy, GroupManager, UserManager: reaching clients
        methods.py       which methods a hub offers, their names on the wire, a streaming method's items
        binding.py       checking and converting arguments by annotation
        streams.py       HubStream: a stream the client uploads
        connection.py    one hub connection: handshake, reading, keep-alive, timeouts, ending
        dispatch.py      running calls and streams, in order, with cancellation
        dispatched.py    what running calls needs of the server and the connection (protocols)
        results.py       client results: a call to one client, awaited until its Completion
        filters.py       HubFilter, add_hub_filter: code around every call, connect and disconnect
        requirements.py  authorize, allow_anonymous, rate_limit: what a method requires of its callers
        observe.py       the filter that counts and traces every call, with metrics or tracing on
    _transports/     how a connection's bytes reach the client and come back
        negotiate.py     POST {hub}/negotiate: versions, ids, transports (pure)
        transport.py     the Transport interface, an Attachment, and StreamTransport over a trio Stream
        connection.py    a connection over the transports (attaching, losing), whatever speaks over it
        sender.py        everything that goes to one client: outbox, replay buffer, slow clients
        outbox.py        the bounded queue of bytes waiting to go to one client
        replay.py        stateful reconnect: sequence numbers, acks, the replay buffer
        websocket.py     WebSocketTransport: a connection over a trio_ws WebSocket
        http.py          the Server-Sent Events and Long Polling transports, and the POST inbox
        http_requests.py their requests: the event stream, polls, POSTs and DELETE
        relay.py         a transport request that lands on another worker
    _endpoints/      hubs and connection handlers on an App
        hub.py           map_hub: a hub on an App (negotiate, its transports, its service)
        connection.py    map_connection, Connection: raw bytes over the same transports
        server.py        HubServer, ConnectionServer: the nursery that connections live in
    _client/         the trio client
        client.py        open_hub_client, HubClient: the calls, streams, handlers and state a program uses
        engine.py        the engine under HubClient: connections, reader, reconnects, what awaits an answer
        typed.py         the client's typed side: HubClient.server() and HubClient.handle()
        connect.py       one client connection: opening it (transport fallback, handshake), resuming it
        negotiate.py     the client's negotiate, and what its answer means
        transports.py    the client's transports: WebSockets, Server-Sent Events, Long Polling
        http.py          the client's HTTP/1.1 over h11, and HubClientError
    _protocol/       the hub protocol, sans-I/O: JSON, MessagePack, handshake
    _backplane/      the Backplane interface, the in-process backplane and the Redis one
    _contract/       typescript_contract, asyncapi_contract: a hub's client contracts
    contract.py      python -m trio_ws.signalr.contract: the command line
    _options.py      HubOptions and SlowClientPolicy
    _errors.py       HubError, ClientResultError, BackplaneError, DisconnectReason, error texts
"""

from ._backplane import Audience as Audience
from ._backplane import Backplane as Backplane
from ._backplane import InProcessBackplane as InProcessBackplane
from ._backplane import LocalConnection as LocalConnection
from ._backplane import Pending as Pending
from ._backplane import RedisBackplane as RedisBackplane
from ._backplane import SerializedMessage as SerializedMessage
from ._client.client import ClientState as ClientState
from ._client.client import HubClient as HubClient
from ._client.client import HubClientError as HubClientError
from ._client.client import InvocationError as InvocationError
from ._client.client import open_hub_client as open_hub_client
from ._contract.generate import ContractError as ContractError
from ._contract.generate import asyncapi_contract as asyncapi_contract
from ._contract.generate import typescript_contract as typescript_contract
from ._endpoints.connection import Connection as Connection
from ._endpoints.connection import ConnectionHandler as ConnectionHandler
from ._endpoints.connection import ConnectionHandlerServer as ConnectionHandlerServer
from ._endpoints.connection import map_connection as map_connection
from ._endpoints.hub import NegotiateHook as NegotiateHook
from ._endpoints.hub import map_hub as map_hub
from ._endpoints.server import HubServer as HubServer
from ._endpoints.server import HubServerStatistics as HubServerStatistics
from ._errors import BackplaneError as BackplaneError
from ._errors import ClientResultError as ClientResultError
from ._errors import DisconnectReason as DisconnectReason
from ._errors import HubError as HubError
from ._hub.call import HubCallerContext as HubCallerContext
from ._hub.clients import ClientProxy as ClientProxy
from ._hub.clients import GroupManager as GroupManager
from ._hub.clients import HubClients as HubClients
from ._hub.clients import SingleClientProxy as SingleClientProxy
from ._hub.clients import UserManager as UserManager
from ._hub.filters import CallRefused as CallRefused
from ._hub.filters import HubFilter as HubFilter
from ._hub.filters import HubInvocationContext as HubInvocationContext
from ._hub.filters import HubLifetimeContext as HubLifetimeContext
from ._hub.filters import add_hub_filter as add_hub_filter
from ._hub.hub import Hub as Hub
from ._hub.methods import hub_method as hub_method
from ._hub.requirements import Policy as Policy
from ._hub.requirements import allow_anonymous as allow_anonymous
from ._hub.requirements import authorize as authorize
from ._hub.requirements import rate_limit as rate_limit
from ._hub.streams import HubStream as HubStream
from ._hub.typed import TypedHubClients as TypedHubClients
from ._options import HubOptions as HubOptions
from ._options import SlowClientPolicy as SlowClientPolicy
from ._protocol.messages import TransferFormat as TransferFormat
from ._transports.negotiate import HttpTransportType as HttpTransportType
from ._transports.transport import StreamTransport as StreamTransport
from ._transports.transport import Transport as Transport
from ._transports.websocket import WebSocketTransport as WebSocketTransport

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
