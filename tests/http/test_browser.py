"""The HTTP front door in real headless Chromium: EventSource, and a CORS preflight from a page on
another origin (issue 10's browser tests).

The servers run in a thread of their own with its own ``trio.run``, so the
sync Playwright API in the test never blocks their loop. Like the page tests,
these skip without Chromium unless TRIO_WS_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import trio

import trio_ws

from ..app.test_echo_page import (
    browser as browser,  # the module-scoped Chromium fixture (re-exported for pytest)
)
from ..helpers import trio_in_thread

pytestmark = pytest.mark.browser

_EVENTS_PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>events</title>
<ul id="log"></ul>
<script src="/events.js"></script>
"""
_EVENTS_JS = b"""
const log = (text) => {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("log").appendChild(item);
};
const source = new EventSource("/events");
source.onopen = () => log("open");
source.onmessage = (event) => log("message: " + event.data);
source.addEventListener("update", (event) => {
  log("update " + event.lastEventId + ": " + event.data);
  source.close();
});
"""
_CORS_PAGE = """<!doctype html>
<meta charset="utf-8"><title>cors</title>
<pre id="result">waiting</pre>
<script src="/cors.js"></script>
"""
_CORS_JS = """
const call = async (base) => {
  try {
    const response = await fetch(base + "/api/negotiate", {
      method: "POST",
      credentials: "include",
      headers: {
        "X-Requested-With": "XMLHttpRequest",
        "X-SignalR-User-Agent": "Microsoft SignalR/10.0 (test)",
        "Authorization": "Bearer t-page",
        "Content-Type": "application/json",
      },
      body: JSON.stringify({negotiateVersion: 1}),
    });
    return response.status + " " + await response.text();
  } catch (error) {
    return "blocked: " + error.name;
  }
};
(async () => {
  const allowed = await call("API");
  const refused = await call("OTHER");
  document.getElementById("result").textContent = allowed + "\\n" + refused;
})();
"""


@dataclass
class _Servers:
    events_url: str
    page_url: str
    calls: list[tuple[str | None, str | None, bytes]]


def _events_app() -> trio_ws.App:
    app = trio_ws.App()
    subscribers: trio.MemorySendChannel[trio.MemorySendChannel[str | trio_ws.ServerSentEvent]]
    subscribers, incoming = trio.open_memory_channel[trio.MemorySendChannel[str | trio_ws.ServerSentEvent]](8)

    @app.service
    async def publisher(
        server: trio_ws.Server, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for send in incoming:
            async with send:
                await send.send("hello")
                await send.send("line 1\nline 2")
                await send.send(trio_ws.ServerSentEvent("tick", event="update", id="42"))

    @app.route("/events")
    async def events(request: trio_ws.Request) -> trio_ws.Response:
        send, receive = trio.open_memory_channel[str | trio_ws.ServerSentEvent](8)
        await subscribers.send(send)
        return trio_ws.sse_response(receive)

    app.add_static("/events.html", _EVENTS_PAGE, "text/html; charset=utf-8")
    app.add_static("/events.js", _EVENTS_JS, "text/javascript; charset=utf-8")
    return app


def _api_app(calls: list[tuple[str | None, str | None, bytes]]) -> trio_ws.App:
    async def verify(token: str) -> trio_ws.Identity | None:
        await trio.lowlevel.checkpoint()
        return trio_ws.Identity("page-user") if token == "t-page" else None

    app = trio_ws.App(auth=trio_ws.bearer_auth(verify))

    @app.route("/api/negotiate", methods=["POST"])
    async def negotiate(request: trio_ws.Request) -> trio_ws.Response:
        user = request.identity.user_id if request.identity else None
        calls.append((request.header("origin"), user, request.body))
        return trio_ws.Response.json(200, {"connectionId": "c1", "user": user})

    return app


@pytest.fixture(scope="module")
def servers() -> Iterator[_Servers]:
    """An events server, an API that lists the page's origin, one that lists none, and the page's server."""
    calls: list[tuple[str | None, str | None, bytes]] = []

    async def main(ready: Callable[[_Servers], None], stop: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            events: trio_ws.Server = await nursery.start(trio_ws.serve, _events_app(), "127.0.0.1", 0)
            page_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            page_origin = f"http://127.0.0.1:{page_listeners[0].socket.getsockname()[1]}"
            options = trio_ws.Options(allowed_origins=[page_origin])
            api: trio_ws.Server = await nursery.start(
                partial(trio_ws.serve, _api_app(calls), "127.0.0.1", 0, options=options)
            )
            other: trio_ws.Server = await nursery.start(trio_ws.serve, _api_app(calls), "127.0.0.1", 0)
            page = trio_ws.App()
            api_base, other_base = api.url.rstrip("/"), other.url.rstrip("/")
            policy = f"default-src 'self'; connect-src 'self' {api_base} {other_base}"
            page.add_route("/cors.html", _static(_CORS_PAGE.encode(), "text/html; charset=utf-8", policy))
            script = _CORS_JS.replace("API", api_base).replace("OTHER", other_base).encode()
            page.add_static("/cors.js", script, "text/javascript; charset=utf-8")
            await nursery.start(trio_ws.serve_listeners, page, list(page_listeners))
            ready(_Servers(events.url + "events.html", page_origin + "/cors.html", calls))
            await stop.wait()
            nursery.cancel_scope.cancel()

    with trio_in_thread(main) as servers:
        yield servers


def _static(body: bytes, content_type: str, policy: str) -> trio_ws.HTTPHandler:
    async def static(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response(200, body, content_type, (("content-security-policy", policy),))

    return static


def test_eventsource_reads_server_sent_events(browser: Any, servers: _Servers) -> None:
    """Chromium's EventSource opens the stream, gets each event as it is sent (a two-line payload as
    two lines), and a named event with its id."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(servers.events_url)
    items = page.locator("#log li")
    expect(items).to_have_count(4)
    assert items.all_text_contents() == [
        "open",
        "message: hello",
        "message: line 1\nline 2",
        "update 42: tick",
    ]
    page.close()


def test_a_cors_preflight_from_another_origin_lets_the_page_call_with_credentials(
    browser: Any, servers: _Servers
) -> None:
    """A page on another origin POSTs JSON with SignalR's headers and credentials: the preflight is
    answered, the call reaches the handler with its identity, and the page reads the answer; a
    server that does not list the page's origin is unreadable to it."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(servers.page_url)
    result = page.locator("#result")
    expect(result).not_to_have_text("waiting")
    allowed, refused = result.inner_text().splitlines()
    assert allowed == '200 {"connectionId":"c1","user":"page-user"}'
    assert refused == "blocked: TypeError"
    origin = servers.page_url.removesuffix("/cors.html")
    assert servers.calls == [(origin, "page-user", b'{"negotiateVersion":1}')]
    page.close()
