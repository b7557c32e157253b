"""What the server serves: the ``App``, its routes, and what handlers see and answer.

What this package owns: the route table, ``Request`` and ``Response``,
authentication hooks, CORS, the health check, Server-Sent Events and the
echo app. Nothing here does I/O on a socket: the front door
(``trio_ws._http``) calls into it.
"""
