"""The echo page in real headless Chromium, driven by Playwright (sync API, in plain sync tests).

The server runs as ``python -m trio_ws`` in a child process, so the browser
and the trio loop never share a thread. When Chromium or Playwright is
missing these tests skip with the reason, unless TRIO_WS_REQUIRE_BROWSER=1
(set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..processes import running_cli

CHROMIUM = os.environ.get("TRIO_WS_CHROMIUM", "/usr/bin/chromium")
# Headless, and no network beyond 127.0.0.1: Chromium otherwise phones home at start.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"

pytestmark = pytest.mark.browser


def _missing_browser_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing_browser_reason()
    if reason is not None:
        if os.environ.get("TRIO_WS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TRIO_WS_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_url() -> Iterator[str]:
    with running_cli() as (proc, url):
        yield url
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 0


def test_echo_page_round_trip(browser: Any, page_url: str) -> None:
    """Load the page, Connect, send text and binary, see both echoed in the log, Close Socket: 1000."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(page_url)
    port = page_url.rsplit(":", 1)[1].strip("/")
    status = page.locator("#status")
    log = page.locator("#log-body")

    expect(status).to_have_text("Ready to connect")
    expect(page.locator("#url")).to_have_value(f"ws://127.0.0.1:{port}/ws")
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator("#close")).to_be_disabled()

    page.click("#connect")
    expect(status).to_have_text("Open")
    expect(page.locator("#connect")).to_be_disabled()
    expect(page.locator("#send")).to_be_enabled()
    expect(log.locator("tr.open")).to_contain_text(f"connected to ws://127.0.0.1:{port}/ws")

    page.fill("#message", "hello trio")
    page.click("#send")
    expect(log.locator("tr.sent")).to_contain_text("text: hello trio")
    expect(log.locator("tr.received")).to_contain_text("text: hello trio")

    page.check("#binary")
    page.fill("#message", "bytes")
    page.press("#message", "Enter")
    expect(log.locator("tr.received").nth(1)).to_contain_text("binary, 5 bytes: bytes")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "echo_page.png"), full_page=True)

    page.click("#close")
    expect(status).to_have_text('Closed (code 1000, reason "Closing from client")')
    expect(log.locator("tr.close")).to_contain_text("code 1000")
    expect(page.locator("#connect")).to_be_enabled()
    expect(page.locator("#send")).to_be_disabled()
    kinds = log.locator("tr").evaluate_all("rows => rows.map(r => r.className)")
    assert kinds == ["connecting", "open", "sent", "received", "sent", "received", "closing", "close"]
    page.close()


def test_page_reports_a_failed_connection(browser: Any, page_url: str) -> None:
    """Connecting to a path with no endpoint shows the error and the close code 1006 in the log."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(page_url)
    page.fill("#url", page.locator("#url").input_value().replace("/ws", "/nowhere"))
    page.click("#connect")
    expect(page.locator("#status")).to_have_text("Closed (code 1006, not clean)")
    expect(page.locator("#log-body tr.error")).to_have_count(1)
    expect(page.locator("#connect")).to_be_enabled()
    page.close()


def test_page_negotiates_compression(browser: Any, page_url: str) -> None:
    """Chromium offers permessage-deflate and the server accepts it; large messages survive both ways.

    Chromium compresses what it sends, so this covers the server's inflating
    as well as its deflating, with a real browser's zlib on the other side.
    """
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(page_url)
    log = page.locator("#log-body")
    page.click("#connect")
    expect(log.locator("tr.open")).to_contain_text("extensions: permessage-deflate")

    message = " ".join(f"structured concurrency {i}" for i in range(400))  # ~10 kB, compressible
    page.fill("#message", message)
    page.click("#send")
    expect(log.locator("tr.received")).to_contain_text(f"text: {message}")
    page.fill("#message", "short")
    page.click("#send")
    expect(log.locator("tr.received").nth(1)).to_contain_text("text: short")
    page.close()
