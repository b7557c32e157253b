"""CORS for HTTP routes, from the same allowed_origins as the WebSocket origin check (issue 10, item 5)."""

from __future__ import annotations

import httpx
import pytest
import trio

import trio_ws
from trio_ws._app.cors import CrossOrigin, cross_origin, preflight_response

from ..helpers import IO_DEADLINE, start_server

LISTED = "https://app.example"
# The headers SignalR's browser client sends, with credentials.
SIGNALR_HEADERS = "X-Requested-With, X-SignalR-User-Agent, Authorization, Content-Type"


def _app(calls: list[str]) -> trio_ws.App:
    app = trio_ws.App()

    @app.route("/hub/negotiate", methods=["POST"])
    async def negotiate(request: trio_ws.Request) -> trio_ws.Response:
        calls.append(request.header("origin") or "")
        return trio_ws.Response.json(200, {"connectionId": "abc"})

    @app.websocket("/hub")
    async def hub(ws: trio_ws.WebSocketConnection) -> None:
        pass

    return app


async def test_a_preflight_from_a_listed_origin_is_answered_with_methods_headers_and_credentials(
    nursery: trio.Nursery,
) -> None:
    """OPTIONS with Access-Control-Request-Method from a listed origin: 204 with the path's methods,
    the headers asked for, credentials, a max age and Vary; the handler never sees it."""
    calls: list[str] = []
    server = await start_server(nursery, _app(calls), allowed_origins=[LISTED])
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.options(
                "/hub/negotiate",
                headers={
                    "Origin": LISTED,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": SIGNALR_HEADERS,
                },
            )
    assert response.status_code == 204 and calls == []
    headers = response.headers
    assert headers["access-control-allow-origin"] == LISTED
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-allow-methods"] == "OPTIONS, POST"
    assert headers["access-control-allow-headers"] == (
        "x-requested-with, x-signalr-user-agent, authorization, content-type"
    )
    assert headers["access-control-max-age"] == "600"
    assert "Origin" in headers["vary"] and "Access-Control-Request-Headers" in headers["vary"]


async def test_requests_from_each_kind_of_origin(nursery: trio.Nursery) -> None:
    """A listed origin may read with credentials; '*' lets any origin read without them; the page's
    own origin needs no CORS headers; any other origin gets 403 and the handler never runs. Every
    answer varies by Origin."""
    calls: list[str] = []
    listed = await start_server(nursery, _app(calls), allowed_origins=[LISTED])
    anyone = await start_server(nursery, _app(calls), allowed_origins=["*"])
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient() as client:
            ok = await client.post(listed.url + "hub/negotiate", headers={"Origin": LISTED})
            other = await client.post(
                anyone.url + "hub/negotiate", headers={"Origin": "https://other.example"}
            )
            own = f"http://127.0.0.1:{listed.port}"
            same = await client.post(listed.url + "hub/negotiate", headers={"Origin": own})
            refused = await client.post(
                listed.url + "hub/negotiate", headers={"Origin": "https://evil.example"}
            )
            preflight = await client.options(
                listed.url + "hub/negotiate",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
    assert (ok.status_code, ok.headers["access-control-allow-origin"]) == (200, LISTED)
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert (other.status_code, other.headers["access-control-allow-origin"]) == (200, "*")
    assert "access-control-allow-credentials" not in other.headers
    assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
    assert refused.status_code == 403 and b"--allowed-origin https://evil.example" in refused.content
    assert preflight.status_code == 403
    assert calls == [LISTED, "https://other.example", own]
    for response in (ok, other, same, refused):
        assert "Origin" in response.headers["vary"]


async def test_plain_options_gets_allow(nursery: trio.Nursery) -> None:
    """OPTIONS that is not a preflight gets 204 with the path's methods in Allow."""
    server = await start_server(nursery, _app([]))
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.options("/hub/negotiate")
    assert (response.status_code, response.headers["allow"]) == (204, "POST")


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "verdict"),
    [
        (None, "h", (), CrossOrigin.NONE),
        ("http://h", "h", (), CrossOrigin.SAME),
        ("https://app.example", "h", ("https://app.example",), CrossOrigin.LISTED),
        ("HTTPS://APP.EXAMPLE/", "h", ("https://app.example",), CrossOrigin.LISTED),
        ("https://x.example", "h", ("*",), CrossOrigin.ANY),
        ("https://app.example", "h", ("*", "https://app.example"), CrossOrigin.LISTED),
        ("null", "null", (), CrossOrigin.FORBIDDEN),
        ("http://[", "h", (), CrossOrigin.FORBIDDEN),
        ("https://x.example", "h", (), CrossOrigin.FORBIDDEN),
    ],
)
def test_cross_origin_verdicts(
    origin: str | None, host: str, allowed: tuple[str, ...], verdict: CrossOrigin
) -> None:
    """Listed beats '*', which beats nothing; the same host is the page's own; 'null' and junk are no one."""
    assert cross_origin(origin, host, allowed) is verdict


def test_a_malformed_header_list_is_not_echoed() -> None:
    """Access-Control-Request-Headers that is not a list of header names is not allowed back."""
    response = preflight_response(CrossOrigin.LISTED, LISTED, ["GET"], "x-ok, bad header\r\n")
    assert "access-control-allow-headers" not in dict(response.headers)
