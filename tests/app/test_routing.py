"""Routing, without sockets: which route a path reaches, what may be routed, and what a route
answers with (static content types, subprotocols)."""

from __future__ import annotations

import pytest

import trio_ws
from trio_ws._app.app import HTTPRoute, WebSocketRoute
from trio_ws._http.target import Target, parse_target


async def _noop(ws: trio_ws.WebSocketConnection) -> None:
    pass


async def _noop_http(request: trio_ws.Request) -> trio_ws.Response:
    return trio_ws.Response.text(200, "")


def test_routes_match_the_exact_path_and_ignore_the_query() -> None:
    """/ws?token=1 goes to /ws; /ws/ and /WS do not."""
    app = trio_ws.App()
    app.add_websocket("/ws", _noop)
    match = app.resolve("/ws?token=1")
    assert match is not None and match.endpoint.websocket is not None
    assert match.endpoint.websocket.path == "/ws" and match.params == {}
    assert app.resolve("/ws/") is None
    assert app.resolve("/WS") is None


def test_path_parameters_and_case_insensitive_paths() -> None:
    """{name} takes one decoded segment (even one holding '/'); ignore_case matches any case; exact
    paths win over parameters; ambiguous or malformed patterns are refused."""
    app = trio_ws.App()
    app.add_route("/rooms/{name}", _noop_http)
    app.add_route("/rooms/lobby", _noop_http)
    app.add_route("/rooms/{name}/members/{member}", _noop_http, methods=["DELETE"])
    app.add_websocket("/chatHub", _noop, ignore_case=True)
    app.add_route("/chatHub", _noop_http, methods=["POST"], ignore_case=True)
    room = app.resolve("/rooms/a%2Fb%20c?x=1")
    assert room is not None and room.params == {"name": "a/b c"} and room.endpoint.path == "/rooms/{name}"
    lobby = app.resolve("/rooms/lobby")
    assert lobby is not None and lobby.params == {} and lobby.endpoint.path == "/rooms/lobby"
    member = app.resolve("/rooms/x/members/y")
    assert member is not None and member.params == {"name": "x", "member": "y"}
    assert member.endpoint.methods == ["DELETE"]
    assert app.resolve("/rooms/") is None  # a parameter is never empty
    assert app.resolve("/rooms/a/b") is None
    hub = app.resolve("/CHATHUB")
    assert hub is not None and hub.endpoint.websocket is not None and sorted(hub.endpoint.http) == ["POST"]
    assert hub.endpoint.methods == ["GET", "POST"]
    with pytest.raises(ValueError, match="a parameter is a whole segment"):
        app.add_route("/files/{name}.txt", _noop_http)
    with pytest.raises(ValueError, match=r"names the parameter \{x\} twice"):
        app.add_route("/{x}/{x}", _noop_http)
    with pytest.raises(ValueError, match="routed with ignore_case=True"):
        app.add_route("/chatHub", _noop_http, methods=["PUT"])
    with pytest.raises(ValueError, match="but for case"):
        app.add_route("/CHATHUB", _noop_http, methods=["PUT"], ignore_case=True)


def test_percent_encoded_paths_are_decoded_segment_by_segment() -> None:
    """/a%20b matches the route '/a b'; the query is split off first and stays encoded."""
    assert parse_target(b"/a%20b?x=%20") == Target("/a%20b", "x=%20", ("a b",))
    app = trio_ws.App()
    app.add_websocket("/a b", _noop)
    assert app.resolve("/a%20b?x=1") is not None


def test_a_path_has_one_handler_per_method_and_one_for_upgrades() -> None:
    """A path may have a WebSocket handler and HTTP handlers; a second one for the same thing, or a
    route over the health check, is an error that names the path."""
    app = trio_ws.App()
    app.add_websocket("/ws", _noop)
    app.add_static("/ws", b"")  # GET /ws without an upgrade
    app.add_route("/ws", _noop_http, methods=["POST", "DELETE"])
    with pytest.raises(ValueError, match="'/ws' already has a WebSocket handler"):
        app.add_websocket("/ws", _noop)
    with pytest.raises(ValueError, match="'/ws' already has a handler for DELETE, POST"):
        app.add_route("/ws", _noop_http, methods=["POST", "DELETE", "PUT"])
    with pytest.raises(ValueError, match="'/healthz' is already routed"):
        app.add_websocket("/healthz", _noop)
    with pytest.raises(ValueError, match="must start with '/'"):
        app.add_websocket("ws", _noop)
    with pytest.raises(ValueError, match="'/tunnel': CONNECT is for proxies"):
        app.add_route("/tunnel", _noop_http, methods=["GET", "connect"])


def test_decorators_register_and_return_the_handler() -> None:
    """@app.websocket and @app.route register the function and leave it usable."""
    app = trio_ws.App(health_path=None)

    @app.websocket("/ws", subprotocols=["a"])
    async def ws_handler(ws: trio_ws.WebSocketConnection) -> None:
        pass

    @app.route("/hello", methods=["GET"])
    async def hello(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, "hi")

    assert [r.path for r in app.routes] == ["/ws", "/hello"]
    match = app.resolve("/hello")
    assert match is not None and isinstance(match.endpoint.http["GET"], HTTPRoute)
    assert match.endpoint.http["GET"].methods == {"GET", "HEAD"}
    assert ws_handler.__name__ == "ws_handler"


async def test_static_content_types() -> None:
    """Static files get a content type from their name, with a charset for text."""
    app = trio_ws.App()
    expected = {
        "/": "text/html; charset=utf-8",
        "/a.js": "text/javascript; charset=utf-8",
        "/a.css": "text/css; charset=utf-8",
        "/a.png": "image/png",
        "/blob": "application/octet-stream",
    }
    for path in expected:
        app.add_static(path, path.encode())
    request = trio_ws.Request("GET", "/", "", ())
    for path, content_type in expected.items():
        match = app.resolve(path)
        assert match is not None
        response = await match.endpoint.http["GET"].handler(request)
        assert (response.status, response.content_type, response.body) == (
            200,
            content_type,
            path.encode(),
        )


def test_subprotocol_choice() -> None:
    """The first client proposal the route supports wins; no overlap means none."""
    route = WebSocketRoute("/ws", _noop, ("b", "a"))
    assert route.choose_subprotocol(["a", "b"]) == "a"
    assert route.choose_subprotocol(["c", "b"]) == "b"
    assert route.choose_subprotocol(["c"]) is None
    assert route.choose_subprotocol([]) is None
