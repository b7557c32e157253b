"""Pure decisions, tested without sockets: routing, upgrade and origin checks, options."""

from __future__ import annotations

import pytest

import trio_ws
from trio_ws._app.app import HTTPRoute, WebSocketRoute
from trio_ws._http.target import Target, parse_target
from trio_ws._http.upgrade import handshake_refusal, host_allowed, is_websocket_upgrade, origin_allowed
from trio_ws._printable import printable


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


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        (b"/", Target("/", "", ("",))),
        (b"/a%2Fb/c?x=%2F", Target("/a%2Fb/c", "x=%2F", ("a/b", "c"))),
        (b"/app.js%3Fx", Target("/app.js%3Fx", "", ("app.js?x",))),
        (b"/a?", Target("/a", "", ("a",))),
        (b"http://h:1/a?q", Target("/a", "q", ("a",), "h:1")),
        (b"HTTPS://[::1]:8443", Target("/", "", ("",), "[::1]:8443")),
        (b"*", None),
        (b"h:1", None),
        (b"ftp://h/a", None),
        (b"http://u@h/a", None),
        (b"http:///a", None),
        (b"http://[/a", None),
    ],
)
def test_request_targets_are_split_before_they_are_decoded(target: bytes, parsed: Target | None) -> None:
    """Origin and absolute forms split into path segments and query first, then each segment is decoded."""
    assert parse_target(target) == parsed


def test_printable_escapes_what_is_not_visible_text() -> None:
    """Controls, C1, line separators, bidi overrides, backslashes and stray bytes are escaped; long
    values are cut."""
    assert printable("plain /path?q=1 ok") == "plain /path?q=1 ok"
    assert printable("a\r\n\x1b[2J\x00\\") == "a\\x0d\\x0a\\x1b[2J\\x00\\\\"
    assert (
        printable("\u0085\u009b\u2028\u2029\u202e\U000e0001é✓")
        == "\\x85\\x9b\\u2028\\u2029\\u202e\\U000e0001é✓"
    )
    assert printable(b"caf\xc3\xa9 \xff") == "café \\xff"
    assert printable("x" * 300) == "x" * 200 + "..."
    assert printable("\n" * 300, limit=2) == "\\x0a\\x0a..."


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("localhost:5000", (), True),
        ("LOCALHOST.", (), True),
        ("app.localhost:1", (), True),
        ("127.0.0.1", (), True),
        ("127.9.9.9:80", (), True),
        ("[::1]:5000", (), True),
        ("evil.example:5000", (), False),
        ("localhost.evil.example", (), False),
        ("10.0.0.1", (), False),
        ("[::1", (), False),
        (None, (), False),
        ("app.example:443", ("app.example",), True),
        ("anything.example", ("*",), True),
    ],
)
def test_host_allowed_on_a_loopback_server(host: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    """Loopback names and addresses pass, and so do the names in allowed_hosts; nothing else does."""
    assert host_allowed(host, allowed) is ok


def test_handshake_refusal_checks_version_key_and_http_version() -> None:
    """A well-formed handshake passes; each malformed part gets its own status and message."""
    good = [(b"sec-websocket-version", b"13"), (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]
    assert handshake_refusal(b"1.1", good) is None
    cases = {
        (b"1.0", tuple(good)): 400,
        (b"1.1", tuple(good[1:])): 400,
        (b"1.1", ((b"sec-websocket-version", b"8"), good[1])): 426,
        (b"1.1", (good[0], good[0], good[1])): 426,
        (b"1.1", tuple(good[:1])): 400,
        (b"1.1", (good[0], (b"sec-websocket-key", b"QUJD"))): 400,
    }
    for (version, headers), status in cases.items():
        refusal = handshake_refusal(version, headers)
        assert refusal is not None and refusal.status == status, (version, headers)


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


@pytest.mark.parametrize(
    ("headers", "upgrade"),
    [
        ([(b"connection", b"Upgrade"), (b"upgrade", b"websocket")], True),
        ([(b"connection", b"keep-alive, Upgrade"), (b"upgrade", b"WebSocket")], True),
        ([(b"connection", b"keep-alive"), (b"upgrade", b"websocket")], False),
        ([(b"connection", b"upgrade"), (b"upgrade", b"h2c")], False),
        ([], False),
    ],
)
def test_is_websocket_upgrade(headers: list[tuple[bytes, bytes]], upgrade: bool) -> None:
    """An upgrade needs 'upgrade' among the Connection tokens and 'websocket' in Upgrade."""
    assert is_websocket_upgrade(headers) is upgrade


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "example.com", (), True),  # not a browser
        ("http://example.com", "example.com", (), True),  # same host
        ("https://EXAMPLE.com:8443", "example.com:8443", (), True),
        ("http://example.com", "example.com:8080", (), False),  # other port
        ("http://evil.example", "example.com", (), False),
        ("null", "example.com", (), False),  # sandboxed page or file://
        ("http://evil.example", None, (), False),
        ("http://[", "example.com", (), False),  # malformed: was an internal error
        ("https://app.example", "example.com", ("https://app.example",), True),
        ("https://app.example/", "example.com", ("https://app.example",), True),
        ("http://anything", "example.com", ("*",), True),
    ],
)
def test_origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    """Same host, listed origins and '*' pass; every other browser origin is refused."""
    assert origin_allowed(origin, host, allowed) is ok


def test_options_defaults_are_valid() -> None:
    """The defaults build, and allowed_origins and allowed_hosts are normalised."""
    options = trio_ws.Options(
        allowed_origins=["HTTPS://App.Example/"], allowed_hosts=["App.Example.", "fd00::1"]
    )
    assert options.allowed_origins == ("https://app.example",)
    assert options.allowed_hosts == ("app.example", "fd00::1")
    assert options.keep_alive_interval == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_message_size": 0}, "max_message_size must be greater than 0"),
        ({"max_message_size": 1.5}, "max_message_size must be a whole number"),
        ({"keep_alive_interval": -1}, "keep_alive_interval must be greater than 0"),
        ({"handshake_timeout": float("nan")}, "handshake_timeout must be a number"),
        ({"shutdown_timeout": None}, "shutdown_timeout must be a number"),
        ({"message_queue_size": -1}, "message_queue_size must be at least 0"),
        ({"max_connections": 0}, "max_connections must be greater than 0"),
        ({"max_idle_connections": 0}, "max_idle_connections must be greater than 0"),
        ({"allowed_hosts": "app.example"}, "must be a list of host names"),
        ({"allowed_hosts": ["http://app.example"]}, "must be a bare host name"),
        ({"allowed_hosts": ["app.example:443"]}, "must be a bare host name"),
        ({"max_request_headers": 2.5}, "max_request_headers must be a whole number"),
        ({"allowed_origins": "https://a.example"}, "must be a list of origins"),
        ({"allowed_origins": ["a.example"]}, "needs a scheme"),
        ({"compression": "yes"}, "compression must be True or False"),
        ({"compression_window_bits": 8}, "compression_window_bits must be a whole number from 9 to 15"),
        ({"compression_window_bits": 16}, "compression_window_bits must be a whole number from 9 to 15"),
        ({"compression_min_size": -1}, "compression_min_size must be at least 0"),
    ],
)
def test_options_refuse_bad_values_by_name(kwargs: dict[str, object], message: str) -> None:
    """A bad value fails when Options is built, with a message naming the option."""
    with pytest.raises(ValueError, match=message):
        trio_ws.Options(**kwargs)  # type: ignore[arg-type]
