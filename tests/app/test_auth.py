"""The auth hook and the pre-upgrade hook: refusing a client before anything opens, or telling the
handler who it is (issue 10, item 6; the cross-cutting design's items 3 and 4)."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio
import trio.testing
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

import trio_ws

from ..helpers import IO_DEADLINE, MemoryListener, alarms_logged, start_memory_server, start_server
from ..raw import upgrade_request

TOKENS = {"t-ada": trio_ws.Identity("ada", {"role": "admin"}), "t-bob": trio_ws.Identity("bob")}


async def _verify(token: str) -> trio_ws.Identity | None:
    await trio.lowlevel.checkpoint()
    return TOKENS.get(token)


def _app() -> trio_ws.App:
    app = trio_ws.App(auth=trio_ws.bearer_auth(_verify, realm="tests"))

    @app.route("/me")
    async def me(request: trio_ws.Request) -> trio_ws.Response:
        assert request.identity is not None
        return trio_ws.Response.json(200, {"user": request.identity.user_id, **request.identity.claims})

    @app.route("/public", auth=None)
    async def public(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, f"anyone ({request.identity})")

    async def admins_only(request: trio_ws.Request) -> trio_ws.Identity | trio_ws.Response:
        identity = await _verify(trio_ws.bearer_token(request) or "")
        if identity is None:
            return trio_ws.Response.unauthorized(realm="tests")
        if identity.claims.get("role") != "admin":
            return trio_ws.Response.text(403, "Forbidden: admins only")
        return identity

    @app.route("/admin", auth=admins_only)
    async def admin(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response.text(200, "welcome")

    @app.websocket("/ws")
    async def whoami(ws: trio_ws.ServerWebSocket) -> None:
        identity = ws.request.identity
        user = "anonymous" if identity is None else identity.user_id
        await ws.send_message(f"{user} {dict(ws.request.path_params)}")

    async def known_rooms_only(request: trio_ws.Request) -> trio_ws.Response | None:
        if request.path_params["room"] == "full":
            return trio_ws.Response.text(409, "Conflict: that room is full")
        if request.path_params["room"] != "lobby":
            return trio_ws.Response.text(404, f"Not Found: no room {request.path_params['room']}")
        return None

    app.add_websocket("/rooms/{room}", whoami, before_upgrade=known_rooms_only, auth=None)
    return app


async def test_auth_refuses_without_a_token_and_tells_the_handler_who_with_one(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """No token: 401 with a Bearer challenge; a wrong one: 401 invalid_token; a good one, from the
    Authorization header or the access_token query parameter: the handler sees the identity."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            missing = await client.get("/me")
            wrong = await client.get("/me", headers={"Authorization": "Bearer nope"})
            header = await client.get("/me", headers={"Authorization": "bearer t-ada"})
            query = await client.get("/me", params={"access_token": "t-bob"})
            public = await client.get("/public")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="tests"'
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="tests", error="invalid_token"'
    assert header.json() == {"user": "ada", "role": "admin"}
    assert query.json() == {"user": "bob"}
    assert public.text == "anyone (None)\n"
    assert alarms_logged(caplog.records) == []


async def test_a_route_hook_can_answer_403(nursery: trio.Nursery) -> None:
    """A route's own hook knows the user and refuses them with 403; a user it likes gets in."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            bob = await client.get("/admin", headers={"Authorization": "Bearer t-bob"})
            ada = await client.get("/admin", headers={"Authorization": "Bearer t-ada"})
    assert (bob.status_code, bob.text) == (403, "Forbidden: admins only\n")
    assert (ada.status_code, ada.text) == (200, "welcome\n")


async def test_a_websocket_is_refused_before_the_upgrade_or_sees_its_identity(nursery: trio.Nursery) -> None:
    """A WebSocket without a token gets 401 and never opens; with ?access_token= (all a browser can
    send) it opens, and ws.request carries the identity."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.ws_url("/ws")):
                pass
        assert refused.value.response.status_code == 401
        async with connect(server.ws_url("/ws?access_token=t-ada")) as ws:
            assert await ws.recv() == "ada {}"
        async with connect(server.ws_url("/ws"), additional_headers={"Authorization": "Bearer t-bob"}) as ws:
            assert await ws.recv() == "bob {}"


async def test_before_upgrade_answers_with_any_response(nursery: trio.Nursery) -> None:
    """The pre-upgrade hook sees the request with its path parameters and answers 404 or 409, or lets
    the upgrade through."""
    server = await start_server(nursery, _app())
    with trio.fail_after(IO_DEADLINE):
        for room, status in (("nowhere", 404), ("full", 409)):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.ws_url(f"/rooms/{room}")):
                    pass
            assert refused.value.response.status_code == status
        async with connect(server.ws_url("/rooms/lobby")) as ws:
            assert await ws.recv() == "anonymous {'room': 'lobby'}"  # this route has auth=None


async def test_a_hook_that_fails_is_a_bug_with_a_500(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """An auth hook that raises gets 500 and one logged traceback (a bug), and the server carries on."""

    async def broken(request: trio_ws.Request) -> trio_ws.Identity | trio_ws.Response:
        raise RuntimeError("the token service is down")

    app = trio_ws.App(auth=broken)
    app.add_static("/", b"page")
    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/")).status_code == 500
            assert (await client.get("/healthz")).status_code == 200  # never needs credentials
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert (
        errors[0]
        .getMessage()
        .startswith("auth hook test_a_hook_that_fails_is_a_bug_with_a_500.<locals>.broken failed")
    )


def test_bearer_token_sources() -> None:
    """The Authorization header wins over access_token; other schemes and empty tokens are no token."""
    request = trio_ws.Request("GET", "/", "access_token=q", ((b"authorization", b"Bearer h"),))
    assert trio_ws.bearer_token(request) == "h"
    assert trio_ws.bearer_token(trio_ws.Request("GET", "/", "access_token=q")) == "q"
    basic = trio_ws.Request("GET", "/", "", ((b"authorization", b"Basic YTpi"),))
    assert trio_ws.bearer_token(basic) is None
    assert trio_ws.bearer_token(trio_ws.Request("GET", "/", "access_token=")) is None


async def test_upgrade_hooks_share_the_handshake_deadline(
    nursery: trio.Nursery,
    memory_listener: MemoryListener,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An auth or before_upgrade hook that hangs is part of the handshake: the connection is dropped at
    handshake_timeout, with one INFO line."""
    caplog.set_level(logging.INFO, logger="trio_ws")

    async def hangs(request: trio_ws.Request) -> trio_ws.Response | None:
        await trio.sleep_forever()
        return None  # pragma: no cover

    app = trio_ws.App()
    app.add_websocket("/ws", trio_ws.echo, before_upgrade=hangs)
    await start_memory_server(nursery, app, memory_listener, handshake_timeout=3)
    client = await memory_listener.connect()
    start = trio.current_time()
    await client.send_all(upgrade_request())
    assert await client.receive_some() == b""
    assert trio.current_time() - start == 3
    assert "dropped StapledStream: the upgrade's hooks did not finish within handshake_timeout" in [
        r.getMessage() for r in caplog.records
    ]


async def test_a_hook_that_returns_something_else_is_a_bug_with_a_500(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """An auth hook that returns neither an Identity nor a Response gets 500 and an ERROR naming what
    it must return."""

    async def confused(request: trio_ws.Request) -> trio_ws.Identity | trio_ws.Response:
        return "ada"  # type: ignore[return-value]

    app = trio_ws.App(auth=confused)
    app.add_static("/", b"page")
    server = await start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/")).status_code == 500
    [error] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.endswith("returned 'str'; it must return a trio_ws.Identity or a trio_ws.Response")
