"""A page on another origin uses the hubs in headless Chromium, over each transport, with credentials.

The page is served from ``http://localhost:A``; the conformance hub from ``http://127.0.0.1:B``,
which allows that origin (``Options(allowed_origins=...)``). The official browser bundle
sends its requests with credentials, so every answer must name the page's origin and allow
credentials (CORS preflights included), and a browser cannot put a header on a WebSocket or an
``EventSource``, so there the token travels as ``?access_token=``. Over each transport the page
fetches a token, opens ``/authorizedhub`` with it (Echo, and the user the token names), and
uses ``/testhub``: a stream, a client result, and a group message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import trio_ws
from examples.signalr.testhub import OPTIONS, build_app

from ...examples.test_signalr_chat import BUNDLE, WAIT_MS, browser
from ..helpers import served_in_thread

__all__ = ["browser"]  # the fixture, shared with the chat page's tests

pytestmark = pytest.mark.browser

# Scripts are files of their own: trio_ws's static pages forbid inline scripts (CSP).
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>cross-origin hub</title>
<pre id="out">running</pre>
<script src="/signalr.js"></script>
<script src="/page.js"></script>
"""

SCRIPT = """"use strict";
const params = new URLSearchParams(location.search);
const hub = params.get("hub");
const transport = Number(params.get("transport"));
(async () => {
    const result = {};
    const token = await (await fetch(hub + "/generateJwtToken", { credentials: "include" })).text();
    const secured = new signalR.HubConnectionBuilder()
        .withUrl(hub + "/authorizedhub", { transport, accessTokenFactory: () => token })
        .build();
    await secured.start();
    result.echo = await secured.invoke("Echo", "hello across origins");
    result.user = await secured.invoke("GetUserNameIdentifier");
    await secured.stop();

    const test = new signalR.HubConnectionBuilder().withUrl(hub + "/testhub", { transport }).build();
    test.on("Result", () => 42);
    const grouped = new Promise((resolve) => test.on("GroupMessage", (group, text) => resolve(text)));
    await test.start();
    result.transport = await test.invoke("GetActiveTransportName");
    result.items = await new Promise((resolve, reject) => {
        const items = [];
        test.stream("Stream").subscribe({
            next: (item) => items.push(item),
            complete: () => resolve(items),
            error: reject,
        });
    });
    const id = await test.invoke("GetCallerConnectionId");
    result.clientResult = await (await fetch(hub + "/clientresult?id=" + encodeURIComponent(id))).text();
    await test.invoke("JoinGroup", "page");
    await test.invoke("SendToGroup", "page", "to the group");
    result.group = await grouped;
    await test.stop();
    document.getElementById("out").textContent = JSON.stringify(result);
})().catch((error) => {
    document.getElementById("out").textContent = "error: " + error;
});
"""


# trio_ws's pages may connect only to their own origin unless they say otherwise: this one
# talks to the hub on 127.0.0.1, any port.
POLICY = (
    "default-src 'self'; script-src 'self'; "
    "connect-src 'self' http://127.0.0.1:* ws://127.0.0.1:*; frame-ancestors 'none'"
)


def _page_app() -> trio_ws.App:
    app = trio_ws.App()
    page = trio_ws.Response(
        200, PAGE.encode(), "text/html; charset=utf-8", (("content-security-policy", POLICY),)
    )

    @app.route("/")
    async def index(request: trio_ws.Request) -> trio_ws.Response:
        return page

    app.add_static("/signalr.js", BUNDLE.read_bytes(), "text/javascript; charset=utf-8")
    app.add_static("/page.js", SCRIPT.encode(), "text/javascript; charset=utf-8")
    return app


@pytest.mark.parametrize(
    ("transport", "name"), [(1, "WebSockets"), (2, "ServerSentEvents"), (4, "LongPolling")]
)
def test_a_page_on_another_origin_uses_the_hubs_with_credentials(
    browser: Any, transport: int, name: str
) -> None:
    """From another origin, over each transport: a bearer token (as access_token where headers
    can't go), calls, a stream, a client result and a group message, all with credentials."""
    from playwright.sync_api import expect

    with served_in_thread(_page_app()) as page_url:
        page_origin = page_url.replace("127.0.0.1", "localhost")
        hub_options = trio_ws.Options(allowed_origins=[page_origin])
        with served_in_thread(build_app(OPTIONS), hub_options) as hub_url:
            page = browser.new_page()
            try:
                page.goto(f"{page_origin}/?hub={hub_url}&transport={transport}")
                out = page.locator("#out")
                expect(out).not_to_have_text("running", timeout=WAIT_MS)
                text = out.text_content() or ""
            finally:
                page.close()
    assert not text.startswith("error"), text
    assert json.loads(text) == {
        "echo": "hello across origins",
        "user": "testuser",
        "transport": name,
        "items": ["a", "b", "c"],
        "clientResult": "42",
        "group": "to the group",
    }
