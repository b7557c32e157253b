"""The example pages in real headless Chromium: chat between two tabs, and the live dashboard.

Each example runs as ``python examples/<name>.py`` in a child process; the
browser fixture (and its skip-or-fail rule) is tests/app/test_echo_page.py's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ..app.test_echo_page import ARTIFACTS, browser
from .programs import running_example, stop_with_ctrl_c

__all__ = ["browser"]  # the fixture, shared with tests/app/test_echo_page.py

pytestmark = pytest.mark.browser


@pytest.fixture
def chat_url() -> Iterator[str]:
    with running_example("chat") as (proc, url, _):
        yield url
        stop_with_ctrl_c(proc)


def test_chat_page_between_two_tabs(browser: Any, chat_url: str) -> None:
    """Ann and Bob join from two tabs; Ann sees Bob join, speak and leave; Bob's page shows his close."""
    from playwright.sync_api import expect

    ann, bob = browser.new_page(), browser.new_page()
    for page, name in ((ann, "Ann"), (bob, "Bob")):
        page.goto(chat_url)
        page.fill("#name", name)
        page.click("#join")
        expect(page.locator("#status")).to_have_text(f"In the room as {name}")
    expect(bob.locator("#messages li").first).to_have_text("You joined as Bob. Here now: Ann, Bob.")
    expect(ann.locator("#messages")).to_contain_text("Bob joined.")

    bob.fill("#text", "hi from Bob")
    bob.press("#text", "Enter")
    for page in (ann, bob):
        expect(page.locator("#messages li.message")).to_have_text(["Bob: hi from Bob"])
    ARTIFACTS.mkdir(exist_ok=True)
    ann.screenshot(path=str(ARTIFACTS / "chat_page.png"), full_page=True)

    bob.click("#leave")
    expect(bob.locator("#status")).to_have_text("Not in the room (code 1000: left the room)")
    expect(ann.locator("#messages li").last).to_have_text("Bob left (left).")
    expect(bob.locator("#join")).to_be_enabled()
    ann.close()
    bob.close()


@pytest.fixture
def dashboard_url() -> Iterator[str]:
    with running_example("dashboard", "--period", "0.1") as (proc, url, _):
        yield url
        stop_with_ctrl_c(proc)


def test_dashboard_page_draws_live_figures(browser: Any, dashboard_url: str) -> None:
    """The page goes live, shows one connection, draws points, and counts a burst of 100 messages."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(dashboard_url)
    expect(page.locator("#status")).to_have_text("Live")
    expect(page.locator("#connections")).to_have_text("1")
    expect(page.locator("#chart")).not_to_have_attribute("data-points", re.compile(r"^[0-2]$"))
    page.click("#burst")
    expect(page.locator("#total")).to_have_text("100")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard_page.png"), full_page=True)
    other = browser.new_page()
    other.goto(dashboard_url)
    expect(page.locator("#connections")).to_have_text("2")
    other.close()
    expect(page.locator("#connections")).to_have_text("1")
    page.close()
