"""examples/signalr/chat.py in headless Chromium, with the official ``@microsoft/signalr`` bundle.

Two pages join one room: each sees both names (presence) and the other's message. Then the
server is stopped with Ctrl-C: both pages show "reconnecting"; started again on the same
port, both are connected again, back in their room. The server is a child process, as a user
runs it; the browser is Debian's Chromium through Playwright's sync API (see tests/app/test_echo_page.py).
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trio_ws

from ..app.test_echo_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _missing_browser_reason
from ..processes import read_output_until
from ..signalr.helpers import served_in_thread

CHAT = Path(__file__).resolve().parents[2] / "examples" / "signalr" / "chat.py"
BUNDLE = CHAT.parent / "node_modules" / "@microsoft" / "signalr" / "dist" / "browser" / "signalr.min.js"
WAIT_MS = 15_000

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser_reason() or (None if BUNDLE.is_file() else f"run `npm ci` in {CHAT.parent}")
    if reason is not None:
        if os.environ.get("TRIO_WS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TRIO_WS_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class ChatServer:
    """``python examples/signalr/chat.py`` on one port, which can be stopped and started again."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHAT), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        banner = read_output_until(self.proc, lambda text: "\n" in text)
        assert re.match(rf"hub chat at {re.escape(self.url)} ", banner), banner

    def stop(self) -> str:
        """Ctrl-C; the server must exit 0 without a traceback. Returns what it wrote to stderr."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        self.proc = None
        return err

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


def join_lobby(browser: Any, url: str) -> tuple[Any, Any]:
    """Ann's and Bob's pages, connected and in the room "lobby", each seeing both names."""
    from playwright.sync_api import expect

    pages = []
    for name in ("ann", "bob"):
        page = browser.new_page()
        page.goto(url)
        expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
        page.fill("#name", name)
        page.fill("#room", "lobby")
        page.click("#join")
        pages.append(page)
    for page in pages:
        expect(page.locator("#people")).to_have_text("ann, bob", timeout=WAIT_MS)
    ann, bob = pages
    return ann, bob


def test_two_pages_chat_in_a_room_and_reconnect_across_a_restart(
    browser: Any, chat_server: ChatServer
) -> None:
    """Presence and a message reach both pages; across a server restart both show "reconnecting",
    then "connected" again, and presence comes back."""
    from playwright.sync_api import expect

    ann, bob = join_lobby(browser, chat_server.url)
    pages = [ann, bob]
    ann.fill("#text", "hello from ann")
    ann.press("#text", "Enter")
    for page in pages:
        expect(page.locator("#messages")).to_contain_text("ann: hello from ann", timeout=WAIT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "signalr_chat_page.png"), full_page=True)

    chat_server.stop()
    for page in pages:
        expect(page.locator("#state")).to_have_text("reconnecting", timeout=WAIT_MS)
    chat_server.start()
    for page in pages:
        expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)
        expect(page.locator("#people")).to_have_text("ann, bob", timeout=WAIT_MS)
    bob.fill("#text", "back again")
    bob.press("#text", "Enter")
    expect(ann.locator("#messages")).to_contain_text("bob: back again", timeout=WAIT_MS)

    bob.close()
    expect(ann.locator("#people")).to_have_text("ann", timeout=WAIT_MS)  # bob's page left: presence says so
    ann.close()


class Blocker:
    """An auth hook standing in for a proxy that breaks some transports: it refuses
    WebSocket upgrades (and, if told, Server-Sent Events) with 403, lets everything else in, and
    notes each request by kind, so the test can tell which transport carried the chat."""

    def __init__(self, *, refuse_sse: bool) -> None:
        self.refuse_sse = refuse_sse
        self.refused: list[str] = []
        self.let_in: list[str] = []

    async def __call__(self, request: trio_ws.Request) -> trio_ws.Identity | trio_ws.Response:
        kind = self.kind(request)
        if kind == "websocket" or (kind == "sse" and self.refuse_sse):
            self.refused.append(kind)
            return trio_ws.Response.text(403, "Forbidden: this network does not allow it")
        self.let_in.append(kind)
        return trio_ws.Identity("guest")

    @staticmethod
    def kind(request: trio_ws.Request) -> str:
        if (request.header("upgrade") or "").lower() == "websocket":
            return "websocket"
        if not request.path.lower().startswith("/chat") or request.path.lower().endswith("/negotiate"):
            return "other"
        if "text/event-stream" in (request.header("accept") or ""):
            return "sse"
        return {"GET": "poll", "POST": "post", "DELETE": "delete"}.get(request.method, "other")


@pytest.mark.parametrize(
    ("refuse_sse", "carrier"), [(False, "sse"), (True, "poll")], ids=["to-sse", "to-long-polling"]
)
def test_the_chat_falls_back_when_a_proxy_refuses_websockets(
    browser: Any, refuse_sse: bool, carrier: str
) -> None:
    """With WebSocket upgrades refused (403) the official bundle falls back to Server-Sent Events,
    and with those refused too to Long Polling; either way two pages still chat."""
    from playwright.sync_api import expect

    blocker = Blocker(refuse_sse=refuse_sse)
    # examples/signalr/chat.py (imported by name: its page directory, chat/, shares the name).
    chat = importlib.import_module("examples.signalr.chat")
    app = chat.build_app(auth=blocker)
    with served_in_thread(app) as url:
        ann, bob = join_lobby(browser, url + "/")
        ann.fill("#text", "hello over a strict proxy")
        ann.press("#text", "Enter")
        expect(bob.locator("#messages")).to_contain_text("ann: hello over a strict proxy", timeout=WAIT_MS)
        bob.fill("#text", "heard you")
        bob.press("#text", "Enter")
        expect(ann.locator("#messages")).to_contain_text("bob: heard you", timeout=WAIT_MS)
        ann.close()
        bob.close()
    assert blocker.refused.count("websocket") >= 2  # each page tried WebSockets first
    if refuse_sse:
        assert blocker.refused.count("sse") >= 2 and "sse" not in blocker.let_in
    else:
        assert "poll" not in blocker.let_in
    assert blocker.let_in.count(carrier) >= 2  # the transport that carried the chat, for each page
    assert "post" in blocker.let_in  # what the pages sent went in POSTs
