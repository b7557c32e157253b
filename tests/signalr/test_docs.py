"""docs/hubs.md stays true: its first hub and its test example run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio

GUIDE = Path(__file__).parents[2] / "docs" / "hubs.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)


async def test_the_guides_first_hub_and_its_test_example_run(nursery: trio.Nursery) -> None:
    """The Chat hub from "A first hub" passes the test from "Testing a hub", verbatim."""
    blocks = python_blocks()
    first_hub = blocks[0]
    testing = next(block for block in blocks if "async def test_chat" in block)
    namespace: dict[str, Any] = {}
    exec(compile(first_hub, "docs/hubs.md (A first hub)", "exec"), namespace)
    exec(compile(testing, "docs/hubs.md (Testing a hub)", "exec"), namespace)
    await namespace["test_chat"](nursery)
    nursery.cancel_scope.cancel()


async def test_the_guides_running_example_runs() -> None:
    """The HubServer example from "Running a hub" starts, broadcasts and closes."""
    block = next(block for block in python_blocks() if "chat = HubServer(Chat()" in block)
    namespace: dict[str, Any] = {}
    exec(compile(python_blocks()[0], "docs/hubs.md (A first hub)", "exec"), namespace)
    exec(compile(block, "docs/hubs.md (Running a hub)", "exec"), namespace)
    with trio.fail_after(5):
        await namespace["main"]()
