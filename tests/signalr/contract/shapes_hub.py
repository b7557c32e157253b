"""A typed hub that uses every kind of type a contract can express: the contract tests' subject.

The trio client, the generated TypeScript (compiled and run in Node) and the AsyncAPI
document are all checked against it.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, NotRequired, Protocol, TypedDict

import trio_ws
from trio_ws.signalr import Hub, HubStream, hub_method, map_hub


class Color(enum.Enum):
    """A shape's colour."""

    RED = "red"
    BLUE = "blue"


@dataclass
class Point:
    """A point on the canvas."""

    x: float
    y: float
    label: str | None = None


class ShapeInfo(TypedDict):
    """A shape as the hub keeps it."""

    name: str
    points: list[Point]
    kind: Literal["polygon", "line"]
    color: NotRequired[Color]


@dataclass
class Stamp:
    data: bytes
    when: datetime.datetime
    sizes: tuple[int, str]


class ShapesClient(Protocol):
    """What the hub calls on its clients."""

    async def shape_added(self, shape: ShapeInfo) -> None:
        """A shape was added by someone."""

    async def pick_color(self, choices: list[Color]) -> Color:
        """A client result: the client chooses."""
        ...

    @hub_method("renamedOnClient")
    async def renamed(self, count: int) -> None: ...


class Shapes(Hub[ShapesClient]):
    """Shapes on a shared canvas."""

    def __init__(self) -> None:
        self.shapes: dict[str, ShapeInfo] = {}

    async def add_shape(
        self, name: str, points: list[Point], kind: Literal["polygon", "line"] = "polygon"
    ) -> int:
        """Add a shape; returns how many there are."""
        shape: ShapeInfo = {"name": name, "points": points, "kind": kind}
        self.shapes[name] = shape
        await self.clients.all.shape_added(shape)
        await self.clients.caller.renamed(len(self.shapes))
        return len(self.shapes)

    async def all_shapes(self) -> dict[str, ShapeInfo]:
        return self.shapes

    async def count_to(self, n: int) -> AsyncIterator[int]:
        """Streams 1..n."""
        for i in range(1, n + 1):
            yield i

    async def total(self, numbers: HubStream[float]) -> float:
        """Adds up an uploaded stream."""
        return sum([number async for number in numbers])

    async def stamp(self, data: bytes, when: datetime.datetime) -> Stamp:
        return Stamp(data[::-1], when + datetime.timedelta(days=1), (len(data), "bytes"))

    @hub_method("getHTML")
    async def get_html(self, title: str | None = None) -> str:
        return f"<h1>{title or 'shapes'}</h1>"

    async def choose(self) -> Color:
        """Asks the caller to pick a colour (a client result)."""
        return await self.clients.caller.pick_color([Color.RED, Color.BLUE])


def build_app() -> trio_ws.App:
    """The hub at ``/shapes``."""
    app = trio_ws.App()
    map_hub(app, "/shapes", Shapes())
    return app
