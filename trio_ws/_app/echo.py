"""The echo app that ``python -m trio_ws`` runs: a page at ``/`` and an echo at ``/ws``."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from typing import TYPE_CHECKING

from .app import App

if TYPE_CHECKING:
    from .._websocket.connection import WebSocketConnection

__all__ = ["echo", "echo_app"]

_PAGE_FILES = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}


async def echo(ws: WebSocketConnection) -> None:
    """Send every message back as it came: text as text, binary as binary.

    Returns when the client closes normally; the server then answers its
    Close frame with the same code. Any other close raises
    ``ConnectionClosed``, which the server takes for a peer that left.
    """
    async for message in ws:
        await ws.send_message(message)


def echo_app(*, path: str = "/ws", subprotocols: Iterable[str] = ()) -> App:
    """An :class:`App` with the echo page at ``/`` and the echo endpoint at ``path``."""
    app = App()
    page = files("trio_ws") / "_page"
    for route, name in _PAGE_FILES.items():
        app.add_static(route, (page / name).read_bytes())
    app.add_websocket(path, echo, subprotocols=subprotocols)
    return app
