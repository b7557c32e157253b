"""The public API: what __all__ promises exists, is typed, and nothing private leaks."""

from __future__ import annotations

from importlib.resources import files

import trio_ws


def test_all_names_exist_and_are_public() -> None:
    """Every name in __all__ is importable and none starts with an underscore (but __version__)."""
    for name in trio_ws.__all__:
        assert hasattr(trio_ws, name), name
        assert not name.startswith("_") or name == "__version__"
    assert sorted(trio_ws.__all__) == sorted(set(trio_ws.__all__))


def test_handlers_get_a_real_trio_websocket_connection() -> None:
    """The connection type handlers receive is a subclass of trio-websocket's own class."""
    import trio_websocket

    assert issubclass(trio_ws.WebSocketConnection, trio_websocket.WebSocketConnection)
    assert trio_ws.ConnectionClosed is trio_websocket.ConnectionClosed


def test_package_ships_py_typed_and_its_page() -> None:
    """py.typed marks the package as typed; the page's files ship inside it."""
    package = files("trio_ws")
    assert package.joinpath("py.typed").is_file()
    for name in ("index.html", "app.js", "style.css"):
        assert package.joinpath("_page", name).is_file()
