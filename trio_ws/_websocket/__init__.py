"""RFC 6455 on the server side: the connection a WebSocket handler talks to.

What this package owns: the protocol itself, with no I/O (``protocol.py``,
``frames.py``, ``deflate.py``), and around it reading and writing frames on
one upgraded stream, the handler's inbox and outbox, the close handshake,
the keep-alive pings, and the nursery that one WebSocket lives in
(``lifetime.run_websocket``); and the test client, on the same parts
(``client.py``). It knows nothing of HTTP routing: the front door
(``trio_ws._http``) hands it a stream whose upgrade is already agreed.
"""
