"""Closing TCP without a reset: half-close, then read until the peer hangs up, briefly.

Closing a socket with unread bytes in its receive buffer makes the kernel send
a reset instead of a FIN, and a reset can destroy the last bytes we sent while
they are still on their way: an HTTP answer (``_http/connection.py``), or the Close frame
that fails a WebSocket while its peer is in the middle of a message
(``_websocket/connection.py``). Both end their connection through :func:`linger`.
"""

from __future__ import annotations

import trio

__all__ = ["linger"]

# How long to wait for the peer to hang up once it has had our last bytes.
LINGER = 1.0
_READ_SIZE = 64 * 1024


async def linger(stream: trio.abc.Stream) -> None:
    """Half-close ``stream``, then discard what the peer still sends until it hangs up or ``LINGER`` passes.

    TLS streams can't half-close, so for them this returns at once: HTTPS
    clients read to Content-Length, and WebSocket peers read to the Close.
    Transport errors are the caller's to handle.
    """
    if isinstance(stream, trio.abc.HalfCloseableStream):
        with trio.move_on_after(LINGER):
            await stream.send_eof()
            while await stream.receive_some(_READ_SIZE):
                pass
