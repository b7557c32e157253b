"""Typed hubs at run time: ``Hub[Protocol]`` calls clients by Python names, and the trio client's
``server()`` proxy and ``handle()`` registration, over real sockets.

What mypy makes of the same code is in ``test_typed_mypy.py``.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Protocol

import pytest
import trio

import trio_ws
from trio_ws.signalr import (
    Hub,
    InvocationError,
    hub_method,
    map_hub,
    open_hub_client,
)

from ...helpers import IO_DEADLINE
from ..contract.shapes_hub import Color, Point, ShapeInfo, Shapes, Stamp, build_app


@pytest.fixture
async def shapes_url(nursery: trio.Nursery) -> str:
    server = await trio_ws.testing.start_server(nursery, build_app())
    return server.url + "shapes"


class Page:
    """Implements ``ShapesClient``, recording the hub's calls."""

    def __init__(self) -> None:
        self.shapes: list[ShapeInfo] = []
        self.counts: list[int] = []
        self.offered: list[list[Color]] = []

    async def shape_added(self, shape: ShapeInfo) -> None:
        self.shapes.append(shape)

    async def pick_color(self, choices: list[Color]) -> Color:
        self.offered.append(choices)
        return choices[-1]

    async def renamed(self, count: int) -> None:
        self.counts.append(count)


async def test_the_typed_client_calls_the_hub_and_answers_it_by_python_names(shapes_url: str) -> None:
    """server() calls AddShape, getHTML, CountTo... and converts results by the hub's annotations;
    handle() answers ShapeAdded, PickColor and renamedOnClient with converted arguments; the
    remover takes the handlers away again."""
    page = Page()
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(shapes_url) as client:
            remove = client.handle(Shapes, page)
            shapes = client.server(Shapes)
            assert await shapes.add_shape("tri", [Point(0, 0), Point(1, 0.5, "top")]) == 1
            assert await shapes.add_shape("line", [Point(2, 3)], "line") == 2
            everything = await shapes.all_shapes()
            assert everything["tri"]["points"][1] == Point(1, 0.5, "top")  # a TypedDict's fields convert too
            assert [item async for item in shapes.count_to(3)] == [1, 2, 3]

            async def numbers() -> AsyncIterator[float]:
                for number in (1.5, 2.0):
                    yield number

            assert await shapes.total(numbers()) == 3.5  # type: ignore[arg-type]
            when = datetime.datetime(2026, 1, 31, 12, tzinfo=datetime.UTC)
            stamp = await shapes.stamp(b"\x01\x02\x03", when)
            assert stamp == Stamp(b"\x03\x02\x01", when + datetime.timedelta(days=1), (3, "bytes"))
            assert await shapes.get_html() == "<h1>shapes</h1>"
            assert await shapes.get_html("hi") == "<h1>hi</h1>"
            assert await shapes.choose() == Color.BLUE
            # The handlers got dataclasses and enums, as the protocol's annotations say.
            assert page.offered == [[Color.RED, Color.BLUE]]
            assert page.counts == [1, 2]
            assert [shape["name"] for shape in page.shapes] == ["tri", "line"]
            remove()
            with pytest.raises(InvocationError, match="Client didn't provide a result"):
                await shapes.choose()


async def test_a_stream_left_early_is_cancelled(shapes_url: str) -> None:
    """Leaving a typed stream's loop and closing its generator cancels the stream on the hub."""
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(shapes_url) as client:
            shapes = client.server(Shapes)
            async with aclosing(shapes.count_to(1000)) as items:  # type: ignore[type-var]
                async for item in items:
                    assert item == 1
                    break
            assert await shapes.get_html() == "<h1>shapes</h1>"  # the connection is fine


class Asker(Protocol):
    async def notify(self, text: str) -> None: ...

    async def ask(self, question: str) -> int: ...

    @hub_method("when_is_it")
    async def when(self) -> datetime.datetime: ...


class Questions(Hub[Asker]):
    def __init__(self) -> None:
        self.problems: list[str] = []

    async def ask_everyone(self) -> str:
        try:
            await self.clients.all.ask("no")
        except TypeError as exc:
            return str(exc)
        return "asked"

    async def ask_me(self) -> int:
        return await self.clients.caller.ask("how many?")

    async def ask_the_time(self) -> str:
        return (await self.clients.client(self.context.connection_id).when()).isoformat()

    async def misspell(self) -> str:
        try:
            await self.clients.all.notifi("x")  # type: ignore[attr-defined]
        except AttributeError as exc:
            return str(exc)
        return "sent"

    async def untyped(self) -> None:
        await self.clients.untyped.caller.send("Notify", "by wire name")
        await self.clients.others_in_group("nobody").notify("nobody hears this")


class Answers:
    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.notes: list[str] = []

    async def notify(self, text: str) -> None:
        self.notes.append(text)

    async def ask(self, question: str) -> int:
        return self.answer  # type: ignore[return-value]

    async def when(self) -> datetime.datetime:
        return datetime.datetime(2026, 12, 7, 18, tzinfo=datetime.UTC)


async def test_client_results_are_typed_and_refused_on_many_clients(nursery: trio.Nursery) -> None:
    """A protocol method with a result is awaited on one client and its answer converted (an ISO
    string becomes a datetime); on many clients it is refused with a TypeError; a misspelt
    method is an AttributeError naming the protocol; the untyped view sends by wire name; a
    client's answer of the wrong type is a ClientResultError."""
    app = trio_ws.App()
    map_hub(app, "/questions", Questions())
    server = await trio_ws.testing.start_server(nursery, app)
    answers = Answers(7)
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(server.url + "questions") as client:
            client.handle(Questions, answers)
            hub = client.server(Questions)
            assert await hub.ask_me() == 7
            assert await hub.ask_the_time() == "2026-12-07T18:00:00+00:00"
            assert "only one connection can give" in await hub.ask_everyone()
            assert await hub.misspell() == (
                "Asker has no method 'notifi'; add it to the protocol, or send by wire name with "
                "self.clients.untyped"
            )
            await hub.untyped()
            assert answers.notes == ["by wire name"]
            answers.answer = "seven"
            with pytest.raises(InvocationError, match=r"ClientResultError.*expected an integer"):
                await hub.ask_me()


def test_hub_clients_are_typed_only_with_a_protocol() -> None:
    """An untyped hub keeps HubClients; a typed one gets TypedHubClients; the protocol's wire
    names follow the hub methods' rule."""

    class Plain(Hub):
        pass

    assert Plain._client_protocol is None
    assert Questions._client_protocol is Asker
    assert {name: method.name for name, method in Questions._client_methods.items()} == {
        "notify": "Notify",
        "ask": "Ask",
        "when": "when_is_it",
    }
    assert isinstance(Plain.clients, object)

    class Sub(Questions):  # a subclass keeps its parent's protocol
        pass

    assert Sub._client_protocol is Asker


def test_a_protocol_the_hub_cannot_call_is_refused_at_once() -> None:
    """A plain def in a client protocol, or two methods with one wire name, fail when the hub
    class is defined, saying what to change."""

    class Blocking(Protocol):
        def message(self, text: str) -> None: ...

    with pytest.raises(TypeError, match=r"Blocking.message must be an 'async def' method"):

        class Bad(Hub[Blocking]):
            pass

    class Twice(Protocol):
        async def message(self) -> None: ...

        @hub_method("MESSAGE")
        async def other(self) -> None: ...

    with pytest.raises(TypeError, match="two methods named 'MESSAGE'"):

        class AlsoBad(Hub[Twice]):
            pass


async def test_handle_refuses_what_cannot_answer(shapes_url: str) -> None:
    """handle() refuses a hub without a protocol, and handlers that lack a method, at once."""

    class Plain(Hub):
        pass

    class Half:
        async def shape_added(self, shape: ShapeInfo) -> None: ...

    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(shapes_url) as client:
            with pytest.raises(TypeError, match="Plain declares no client protocol"):
                client.handle(Plain, Half())  # type: ignore[misc]
            with pytest.raises(TypeError, match="Half lacks ShapesClient's pick_color, renamed"):
                client.handle(Shapes, Half())  # type: ignore[misc]
            with pytest.raises(AttributeError, match="Shapes has no hub method 'add_shapes'"):
                client.server(Shapes).add_shapes  # type: ignore[attr-defined]  # noqa: B018
