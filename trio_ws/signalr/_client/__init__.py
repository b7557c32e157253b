"""The trio hub client: connect, call, stream both ways, answer the server, reconnect.

What this package owns: ``HubClient`` (the user's side), the connection
engine under it, its own small HTTP/1.1 for negotiate and the HTTP
transports, the three transports, and typed calls through a hub's class.
It shares with the server side only what is pure: the hub protocol
(``_protocol``), the negotiate types and the replay buffer (``_transports``),
and what reads a hub class (``_hub``'s hub, typed, methods and binding),
never a running connection or server.
"""
