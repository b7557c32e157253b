"""A hub mounted on an App (``map_hub``): negotiate, the WebSocket at ``?id=``, auth, CORS, shutdown.

Real sockets and independent clients (httpx, the ``websockets`` library), as a browser or the
official client would meet them; the official client itself runs in ``tests/signalr/test_signalr_node.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing
from websockets.exceptions import ConnectionClosed, InvalidStatus

import trio_ws
from trio_ws.signalr import (
    DisconnectReason,
    Hub,
    HubOptions,
    HubServer,
    map_hub,
)
from trio_ws.signalr._protocol.messages import Close

from ...helpers import IO_DEADLINE, alarms_logged
from ..helpers import open_hub_websocket


class Chat(Hub):
    def __init__(self) -> None:
        self.reasons: list[DisconnectReason] = []
        self.left = trio.Event()

    async def echo(self, message: str) -> str:
        return message

    async def who(self) -> list[str | None]:
        request = self.context.request
        assert request is not None
        return [self.context.user_id, request.header("x-test"), self.context.transport]

    async def on_disconnected(self, reason: DisconnectReason) -> None:
        self.reasons.append(reason)
        self.left.set()


async def _verify(token: str) -> trio_ws.Identity | None:
    await trio.lowlevel.checkpoint()
    return trio_ws.Identity(token.removeprefix("user-")) if token.startswith("user-") else None


class Served:
    def __init__(self, server: trio_ws.Server, hub: Chat, hub_server: HubServer) -> None:
        self.server = server
        self.hub = hub
        self.hub_server = hub_server
        self.http = httpx.AsyncClient(base_url=server.url)

    def ws_url(self, path: str) -> str:
        return self.server.ws_url(path)

    async def negotiate(self, path: str = "/chat", version: int | None = 1, **headers: str) -> httpx.Response:
        params = {} if version is None else {"negotiateVersion": str(version)}
        return await self.http.post(f"{path}/negotiate", params=params, headers=headers)


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[Served]:
    app = trio_ws.App()
    hub = Chat()
    hub_server = map_hub(app, "/chat", hub, options=HubOptions(detailed_errors=True))
    map_hub(app, "/private", Chat(), auth=trio_ws.bearer_auth(_verify))
    server = await trio_ws.testing.start_server(
        nursery, app, options=trio_ws.Options(allowed_origins=["http://page.example"])
    )
    served = Served(server, hub, hub_server)
    with trio.fail_after(IO_DEADLINE):
        yield served
    await served.http.aclose()


async def test_negotiate_then_the_websocket_at_its_token(served: Served) -> None:
    """Negotiate (version 1) answers a public id and a secret token; the WebSocket at ``?id=TOKEN``
    carries that connection, whose id hub code sees, over Text frames."""
    answer = await served.negotiate()
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["negotiateVersion"] == 1
    assert body["connectionId"] != body["connectionToken"]
    assert body["availableTransports"] == [
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]
    assert "useStatefulReconnect" not in body
    url = served.ws_url(f"/chat?id={body['connectionToken']}")
    async with open_hub_websocket(url, headers={"X-Test": "yes"}) as client:
        assert await client.call("Echo", "héllo") == "héllo"
        assert await client.call("Who") == [None, "yes", "WebSockets"]
        assert served.hub_server.find_connection(body["connectionToken"]) is not None


async def test_version_zero_uses_the_connection_id_as_the_token(served: Served) -> None:
    """A version 0 client (pysignalr, signalrcore) gets no token and connects with the connectionId."""
    body = (await served.negotiate(version=None)).json()
    assert body["negotiateVersion"] == 0
    assert "connectionToken" not in body
    async with open_hub_websocket(served.ws_url(f"/chat?id={body['connectionId']}")) as client:
        assert await client.call("Echo", "zero") == "zero"


async def test_negotiate_errors_are_answered_as_aspnet_does(served: Served) -> None:
    """A version that is not a number gets 200 with ``{"error": ...}``; GET is 405; any case of the
    path reaches the hub."""
    for version in ("x", "99999999999999999999", "1_0", "\uff11"):  # the last: FULLWIDTH DIGIT ONE
        bad = await served.http.post("/chat/negotiate", params={"negotiateVersion": version})
        assert bad.status_code == 200
        assert bad.json() == {"error": "The client requested a non-integer protocol version."}
    assert (await served.http.get("/chat/negotiate")).status_code == 405
    assert (await served.negotiate("/CHAT")).json()["negotiateVersion"] == 1


async def test_unknown_and_taken_ids_are_refused_before_the_upgrade(served: Served) -> None:
    """An id no connection has is 404 and a second WebSocket for one connection is 409, both before
    the 101; the first WebSocket goes on unharmed."""
    with pytest.raises(InvalidStatus) as unknown:
        async with open_hub_websocket(served.ws_url("/chat?id=nobody")):
            pass
    assert unknown.value.response.status_code == 404
    token = (await served.negotiate()).json()["connectionToken"]
    async with open_hub_websocket(served.ws_url(f"/chat?id={token}")) as first:
        with pytest.raises(InvalidStatus) as second:
            async with open_hub_websocket(served.ws_url(f"/chat?id={token}")):
                pass
        assert second.value.response.status_code == 409
        assert await first.call("Echo", "still here") == "still here"


async def test_skip_negotiation_opens_a_connection_of_its_own(served: Served) -> None:
    """A WebSocket at the hub's path without ``?id=`` is a connection of its own (skipNegotiation)."""
    async with open_hub_websocket(served.ws_url("/Chat")) as client:
        assert await client.call("Echo", "no negotiate") == "no negotiate"
    assert served.hub_server.statistics().connections in (0, 1)  # ending, or ended


async def test_a_negotiated_connection_without_a_transport_is_gone_after_the_disconnect_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A connection negotiated but never connected is freed after ``disconnect_timeout``; the
    handshake clock starts only when a transport attaches."""
    hub_server = HubServer(Chat(), options=HubOptions(disconnect_timeout=15, handshake_timeout=5))
    async with trio.open_nursery() as nursery:
        await nursery.start(hub_server.run)
        connection = hub_server.open_connection()
        await trio.sleep(14)
        assert hub_server.find_connection(connection.token) is connection  # the handshake clock did not run
        await trio.sleep(2)
        assert hub_server.find_connection(connection.token) is None
        await hub_server.aclose()


async def test_auth_refuses_negotiate_with_an_empty_401_and_names_the_user(served: Served) -> None:
    """Without a token negotiate gets 401 with a Bearer challenge and an empty body (the official
    client's error reads "Unauthorized: Status code '401'"); with one, ``?access_token=`` on the
    WebSocket (all a browser can send) lets it in, and hub code sees the user."""
    refused = await served.negotiate("/private")
    assert refused.status_code == 401
    assert refused.content == b""
    assert refused.headers["www-authenticate"].startswith("Bearer")
    token = (await served.negotiate("/private", authorization="Bearer user-ada")).json()["connectionToken"]
    with pytest.raises(InvalidStatus) as no_token:
        async with open_hub_websocket(served.ws_url(f"/private?id={token}")):
            pass
    assert no_token.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as someone_else:
        async with open_hub_websocket(served.ws_url(f"/private?id={token}&access_token=user-bob")):
            pass
    assert someone_else.value.response.status_code == 403
    async with open_hub_websocket(served.ws_url(f"/private?id={token}&access_token=user-ada")) as client:
        assert (await client.call("Who"))[0] == "ada"


async def test_pages_on_allowed_origins_negotiate_with_credentials(served: Served) -> None:
    """A page on an allowed origin gets its preflight answered and may send credentials; another
    origin is refused."""
    origin = {"Origin": "http://page.example"}
    preflight = await served.http.options(
        "/chat/negotiate",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-requested-with, x-signalr-user-agent",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://page.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    answer = await served.http.post("/chat/negotiate?negotiateVersion=1", headers=origin)
    assert answer.headers["access-control-allow-credentials"] == "true"
    other = await served.http.post("/chat/negotiate", headers={"Origin": "http://evil.example"})
    assert other.status_code == 403


async def test_shutdown_says_close_with_allow_reconnect_before_the_servers_1001(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """On graceful shutdown each client gets ``{"type":7,"allowReconnect":true}``, then the
    WebSocket's Close 1001; the hub hears SERVER_SHUTDOWN, and nothing is logged above INFO."""
    app = trio_ws.App()
    hub = Chat()
    map_hub(app, "/chat", hub)
    server = await trio_ws.testing.start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_websocket(server.ws_url("/chat")) as client:
            assert await client.call("Echo", "hi") == "hi"
            async with trio.open_nursery() as closing:
                closing.start_soon(server.aclose)
                assert await client.receive() == Close(allow_reconnect=True)
                with pytest.raises(ConnectionClosed) as ended:
                    await client.ws.recv()
            assert ended.value.rcvd is not None and ended.value.rcvd.code == 1001
    assert hub.reasons == [DisconnectReason.SERVER_SHUTDOWN]
    assert alarms_logged(caplog.records) == []


async def test_an_app_can_be_served_again(nursery: trio.Nursery) -> None:
    """The hub server of a mapped hub runs again when its app is served a second time."""
    app = trio_ws.App()
    map_hub(app, "/chat", Chat())
    for _ in range(2):
        server = await trio_ws.testing.start_server(nursery, app)
        with trio.fail_after(IO_DEADLINE):
            async with open_hub_websocket(server.ws_url("/chat")) as client:
                assert await client.call("Echo", "again") == "again"
            await server.aclose()


def test_map_hub_refuses_what_it_cannot_serve() -> None:
    """No transport at all, or something that is not an ``HttpTransportType``, is refused."""
    app = trio_ws.App()
    with pytest.raises(ValueError, match="at least one transport"):
        map_hub(app, "/b", Chat(), transports=[])
    with pytest.raises(ValueError, match="HttpTransportType members"):
        map_hub(app, "/c", Chat(), transports=["LongPolling"])  # type: ignore[list-item]


async def test_a_full_hub_refuses_new_connections_with_503(nursery: trio.Nursery) -> None:
    """Past ``max_connections`` open connections, negotiate and a WebSocket without an id get 503
    with Retry-After (a negotiate flood cannot grow memory without bound); one ending makes room."""
    app = trio_ws.App()
    hub = Chat()
    hub_server = map_hub(app, "/chat", hub, options=HubOptions(max_connections=2))
    server = await trio_ws.testing.start_server(nursery, app)
    async with httpx.AsyncClient(base_url=server.url) as http:
        first = await http.post("/chat/negotiate?negotiateVersion=1")
        await http.post("/chat/negotiate?negotiateVersion=1")
        refused = await http.post("/chat/negotiate?negotiateVersion=1")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert "max_connections" in refused.text
        with pytest.raises(InvalidStatus) as skipped:
            async with open_hub_websocket(server.ws_url("/chat")):
                pass
        assert skipped.value.response.status_code == 503
        with trio.fail_after(IO_DEADLINE):
            token = first.json()["connectionToken"]
            async with open_hub_websocket(server.ws_url(f"/chat?id={token}")) as client:
                await client.send(Close())
                await hub.left.wait()
            await trio.testing.wait_all_tasks_blocked()
        assert hub_server.statistics().connections == 1
        assert (await http.post("/chat/negotiate?negotiateVersion=1")).status_code == 200
