"""How a hub connection's bytes reach the client and come back: SignalR's transports.

What this package owns: negotiate, the WebSocket, Server-Sent Events and
Long Polling transports, the connection that outlives any one of them
(``TransportConnection``), everything that goes to one client (its
outbox, the stateful-reconnect replay buffer, the slow-client policy), and
relaying a request that lands on another worker. It does not know the hub
protocol's meaning: hubs (``_hub``) and connection handlers speak over it.
"""
