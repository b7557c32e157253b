"""mypy --strict on typed hub code: well-typed code passes, and each mistake is reported where it is.

The snippets are written to files and checked by mypy in a subprocess, as a user's editor or CI
would. Every line of the ill-typed snippet that ends in ``# error: CODE`` must be reported with
that code, and nothing else may be.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROTOCOL = """
from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, assert_type

from trio_ws.signalr import Hub, HubClient, HubClients, TypedHubClients, hub_method


@dataclass
class Point:
    x: float
    y: float


class ShapesClient(Protocol):
    async def shape_added(self, name: str, points: list[Point]) -> None: ...
    async def pick_color(self, choices: list[str]) -> str: ...
    @hub_method("wired")
    async def renamed(self) -> None: ...


class Shapes(Hub[ShapesClient]):
    async def add_shape(self, name: str, points: list[Point]) -> int:
        return len(points)

    async def count_to(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
"""

GOOD = (
    PROTOCOL
    + """

class Typed(Shapes):
    async def draw(self, name: str) -> str:
        assert_type(self.clients, TypedHubClients[ShapesClient])
        await self.clients.all.shape_added(name, [Point(0, 1)])
        await self.clients.group("room").renamed()
        await self.clients.others_in_group("room").shape_added(name, [])
        await self.clients.user("ann").renamed()
        await self.clients.client("id").renamed()
        await self.clients.untyped.all.send("Anything", 1, "two")
        color = await self.clients.caller.pick_color(["red"])
        assert_type(color, str)
        return color


class Untyped(Hub):
    async def shout(self, text: str) -> None:
        assert_type(self.clients, HubClients)
        await self.clients.all.send("Message", text)
        answer = await self.clients.caller.invoke("Ask", text)
        print(answer)


class Page:
    async def shape_added(self, name: str, points: list[Point]) -> None: ...
    async def pick_color(self, choices: list[str]) -> str:
        return choices[0]
    async def renamed(self) -> None: ...


async def client_side(hub: HubClient) -> None:
    shapes = hub.server(Shapes)
    count = await shapes.add_shape("tri", [Point(0, 0)])
    assert_type(count, int)
    async for item in shapes.count_to(3):
        assert_type(item, int)
    remove = hub.handle(Shapes, Page())
    remove()
"""
)

BAD = (
    PROTOCOL
    + """

class Mistakes(Shapes):
    async def draw(self, name: str) -> None:
        await self.clients.all.shape_add(name, [])  # error: attr-defined
        await self.clients.all.shape_added(name, [1])  # error: list-item
        await self.clients.group("room").shape_added(1, [])  # error: arg-type
        await self.clients.caller.renamed(1)  # error: call-arg
        await self.clients.all.send("ShapeAdded", name)  # error: attr-defined
        color: int = await self.clients.caller.pick_color(["red"])  # error: assignment


class Page:
    async def shape_added(self, name: str, points: list[str]) -> None: ...
    async def pick_color(self, choices: list[str]) -> str:
        return choices[0]
    async def renamed(self) -> None: ...


async def client_side(hub: HubClient) -> None:
    shapes = hub.server(Shapes)
    await shapes.add_shape(1, [])  # error: arg-type
    await shapes.add_shapes("tri", [])  # error: attr-defined
    name: str = await shapes.add_shape("tri", [])  # error: assignment
    hub.handle(Shapes, Page())  # error: misc
"""
)


def _mypy(tmp_path: Path, source: str) -> list[tuple[int, str, str]]:
    """mypy --strict's reports on ``source``: (line, code, message), with the project's settings."""
    path = tmp_path / "snippet.py"
    path.write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--show-error-codes", "--no-error-summary", str(path)],
        cwd=ROOT,  # the project's mypy settings, and its cache
        env={**os.environ, "MYPYPATH": str(ROOT)},  # this checkout's trio_ws, not an installed one
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    reports = []
    for line in done.stdout.splitlines():
        found = re.match(r".*snippet\.py:(\d+): error: (.*)  \[([a-z-]+)\]$", line)
        if found:
            reports.append((int(found[1]), found[3], found[2]))
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return reports


@pytest.mark.timeout(150)
def test_well_typed_hub_code_passes_mypy_strict(tmp_path: Path) -> None:
    """Typed clients, the untyped view and untyped hubs, and the typed trio client check clean."""
    assert _mypy(tmp_path, GOOD) == []


@pytest.mark.timeout(150)
def test_mypy_strict_rejects_wrong_names_and_argument_types(tmp_path: Path) -> None:
    """A misspelt client method, a wrong argument or result type, send() on a typed audience, a
    wrong call through the typed client proxy, and handlers that do not fit the protocol."""
    expected = {
        (number, line.rsplit("# error: ", 1)[1])
        for number, line in enumerate(BAD.splitlines(), start=1)
        if "# error: " in line
    }
    reports = _mypy(tmp_path, BAD)
    assert {(line, code) for line, code, _ in reports} == expected, reports
    messages = {line: message for line, _, message in reports}
    shape_add = next(number for number, code in expected if "shape_add(" in BAD.splitlines()[number - 1])
    assert messages[shape_add] == '"ShapesClient" has no attribute "shape_add"; maybe "shape_added"?'
