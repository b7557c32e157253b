"""The server's lifetime: the nursery that owns every connection, and the workers.

What this package owns: ``serve()`` and ``Server`` (listeners, admission of
new connections, graceful shutdown), several worker processes on one port
under a supervisor, finding the app to serve, and the ``python -m trio_ws``
command line.
"""
