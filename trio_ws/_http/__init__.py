"""The HTTP/1.1 front door: one TCP connection, request after request.

What this package owns: the wire (h11 and the stream, read and written with
bounds), the pure decisions about a request head (answer at once, refuse,
upgrade, or pass to a route), and the loop that serves one connection until
it closes or becomes a WebSocket (handed to ``trio_ws._websocket``).
"""
