"""RFC 6455 on the server side: the connection a WebSocket handler talks to.

What this package owns: reading and writing frames on one upgraded stream,
the handler's inbox and outbox, permessage-deflate, the close handshake,
the keep-alive pings, and the nursery that one WebSocket lives in
(``lifetime.run_websocket``). It knows nothing of HTTP routing: the front
door (``trio_ws._http``) hands it a stream whose upgrade is already agreed.
"""
