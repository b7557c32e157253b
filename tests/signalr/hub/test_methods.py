"""Which methods a hub offers, under which names, and how arguments are checked and converted."""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from trio_ws.signalr import Hub, HubStream, hub_method
from trio_ws.signalr._hub.binding import BindingError, converter_for
from trio_ws.signalr._hub.methods import discover_methods, pascal_case


@pytest.mark.parametrize(
    ("python", "wire"),
    [
        ("echo", "Echo"),
        ("send_message", "SendMessage"),
        ("get_user_name_identifier", "GetUserNameIdentifier"),
        ("getHTML", "GetHTML"),
        ("x", "X"),
    ],
)
def test_pascal_case(python: str, wire: str) -> None:
    """snake_case becomes the PascalCase a .NET or TypeScript client calls."""
    assert pascal_case(python) == wire


class Example(Hub):
    async def echo(self, text: str) -> str:
        return text

    @hub_method("Custom")
    async def renamed(self) -> None:
        pass

    async def items(self) -> AsyncIterator[int]:
        yield 1

    async def later(self) -> AsyncIterable[int]:
        raise NotImplementedError

    async def upload(self, first: int, data: HubStream[bytes], last: str = "") -> None:
        pass

    async def _helper(self) -> None:
        pass

    def sync_helper(self) -> None:
        pass


def test_discovery_names_kinds_and_streams() -> None:
    """Public async methods, by lower-cased wire name; streams by generator or return annotation."""

    class Offered(Example):
        sync_helper = None  # type: ignore[assignment]  # hides the plain def, which would be refused

    methods = discover_methods(Offered, Hub)
    assert sorted(methods) == ["custom", "echo", "items", "later", "upload"]
    assert methods["custom"].name == "Custom"
    assert methods["items"].streams_result and methods["items"].is_generator
    assert methods["later"].streams_result and not methods["later"].is_generator
    assert not methods["echo"].streams_result
    upload = methods["upload"]
    assert upload.stream_positions == [1]
    assert upload.bind([1]) == [1, None, ""]
    assert upload.bind([1, "z"]) == [1, None, "z"]
    with pytest.raises(
        BindingError, match=r"Invocation provides 0 argument\(s\) but target expects 1 to 2\."
    ):
        upload.bind([])


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("def echo(self) -> None: ...", "must be 'async def'"),
        ("async def echo(self, *args: int) -> None: ...", "takes \\*args"),
        ("async def echo(self, *, key: int) -> None: ...", "keyword-only argument 'key'"),
        ("async def echo(self, x: set[int]) -> None: ...", "cannot convert arguments to set"),
        ("async def clients(self) -> None: ...", "would hide Hub.clients"),
        (
            "async def echo(self) -> None: ...\n    async def ECHO(self) -> None: ...",
            "two hub methods named 'ECHO'",
        ),
        ("async def echo(self, x: 'Missing') -> None: ...", "cannot read the annotations"),
    ],
)
def test_methods_a_hub_cannot_offer_are_refused_with_a_reason(body: str, problem: str) -> None:
    """A hub that cannot work fails when it is set up, saying which method and why."""
    namespace: dict[str, Any] = {"Hub": Hub}
    exec(f"class Broken(Hub):\n    {body}\n", namespace)
    with pytest.raises(TypeError, match=problem):
        discover_methods(namespace["Broken"], Hub)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    when: datetime.datetime
    tags: list[str] = field(default_factory=list)


@dataclass
class Outer:
    user_name: str
    inner: Inner | None = None


@pytest.mark.parametrize(
    ("annotation", "value", "converted"),
    [
        (Any, {"a": [1]}, {"a": [1]}),
        (float, 2, 2.0),
        (bytes, "AQID", b"\x01\x02\x03"),
        (bytes, b"\x01", b"\x01"),
        (
            datetime.datetime,
            "2002-04-01T10:20:15Z",
            datetime.datetime(2002, 4, 1, 10, 20, 15, tzinfo=datetime.UTC),
        ),
        (
            uuid.UUID,
            "00010203-0405-0607-0706-050403020100",
            uuid.UUID("00010203-0405-0607-0706-050403020100"),
        ),
        (Colour, "blue", Colour.BLUE),
        (list[int], [1, 2], [1, 2]),
        (tuple[int, ...], [1, 2], (1, 2)),
        (tuple[int, str], [1, "a"], (1, "a")),
        (dict[str, float], {"a": 1}, {"a": 1.0}),
        (int | None, None, None),
        (Literal["a", "b"], "b", "b"),
        (
            Outer,
            {"UserName": "ann", "Inner": {"When": "2000-01-01T00:00:00Z", "tags": ["x"]}},
            Outer("ann", Inner(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC), ["x"])),
        ),
    ],
)
def test_conversions(annotation: Any, value: Any, converted: Any) -> None:
    """What each annotation accepts from the wire, and what the method receives."""
    assert converter_for(annotation)(value) == converted


@pytest.mark.parametrize(
    ("annotation", "value", "problem"),
    [
        (int, 2.0, "expected an integer, got a number"),
        (int, True, "expected an integer, got a boolean"),
        (str, None, "expected a string, got null"),
        (bool, 1, "expected a boolean, got an integer"),
        (bytes, "%%%", "expected base64 text"),
        (datetime.datetime, "yesterday", "expected an ISO 8601 date and time"),
        (uuid.UUID, "not-a-uuid", "expected a UUID"),
        (Colour, "green", "expected one of 'red', 'blue', got 'green'"),
        (list[int], [1, "2"], "item 1: expected an integer, got a string"),
        (tuple[int, str], [1], "expected an array of 2 items, got an array"),
        (dict[str, int], [], "expected an object, got an array"),
        (int | None, "x", "expected an integer, got a string"),
        (int | str, None, "expected an integer or a string, got null"),
        (Outer, {"inner": {}}, "missing property 'user_name'"),
        (
            Outer,
            {"user_name": "a", "inner": {"when": 5}},
            "property 'inner': property 'when': expected a date",
        ),
    ],
)
def test_conversion_failures_say_what_was_expected(annotation: Any, value: Any, problem: str) -> None:
    """A value that does not fit raises BindingError naming what was expected and what came."""
    with pytest.raises(BindingError) as caught:
        converter_for(annotation)(value)
    assert str(caught.value).startswith(problem)
