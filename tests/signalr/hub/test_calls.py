"""Calling a hub over an in-memory transport: results, names, arguments, errors and streams
both ways, with ASP.NET's exact error texts, and the connection left open after every mistake."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trio

from trio_ws.signalr import Hub, HubError, HubStream, hub_method
from trio_ws.signalr._protocol.messages import (
    CancelInvocation,
    Completion,
    Invocation,
    StreamInvocation,
    StreamItem,
)

from ..helpers import connect, serve_hub


class InvalidOperationException(Exception):
    """Named like .NET's, so detailed errors read as the official tests expect."""


@dataclass
class Point:
    x: int
    y: int


class Sample(Hub):
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.stream_ended = trio.Event()

    async def echo(self, message: str) -> str:
        return message

    async def add(self, a: int, b: int = 0) -> int:
        return a + b

    async def nothing(self) -> None:
        return None

    async def remember(self, text: str) -> None:
        self.sent.append(text)

    async def fail(self, text: str) -> None:
        raise InvalidOperationException(text)

    async def refuse(self, text: str) -> None:
        raise HubError(text)

    async def unsendable(self) -> object:
        return object()

    async def mirror(self, point: Point) -> Point:
        return Point(point.y, point.x)

    async def echo_bytes(self, data: bytes) -> bytes:
        return data

    @hub_method("fetchMarkup")
    async def get_html(self) -> str:
        return "<p>"

    async def counter(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def infinite(self) -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
                await trio.sleep(1)
        finally:
            self.stream_ended.set()

    async def breaks(self) -> AsyncIterator[int]:
        yield 1
        raise InvalidOperationException("ran out")

    async def stream_throw_exception(self, text: str) -> AsyncIterator[str]:
        raise InvalidOperationException(text)

    async def concat(self, items: HubStream[str]) -> str:
        return "".join([item async for item in items])

    async def sum_both(self, first: HubStream[int], scale: int, second: HubStream[int]) -> int:
        return scale * (sum([i async for i in first]) + sum([i async for i in second]))


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
async def test_a_call_returns_its_result(protocol: str) -> None:
    """Invoke gets a Completion with the method's result, in either protocol."""
    async with serve_hub(Sample()) as server, connect(server, protocol) as client:
        assert await client.call("Echo", "hello") == "hello"
        assert await client.call("Add", 2, 3) == 5


async def test_method_names_match_case_insensitively_and_as_pascal_case() -> None:
    """``add`` is called as "Add", "add" or "ADD"; ``@hub_method`` gives a name of its own."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        for target in ("Add", "add", "ADD"):
            assert await client.call(target, 1, 1) == 2
        assert await client.call("fetchMarkup") == "<p>"
        assert await client.call("FETCHMARKUP") == "<p>"
        unknown = await client.invoke("GetHtml")
        assert unknown.error == (
            "Failed to invoke 'GetHtml' due to an error on the server. HubException: Method does not exist."
        )


async def test_a_void_method_answers_with_a_null_result() -> None:
    """As ASP.NET does, a method returning None completes with ``"result": null``."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        assert await client.invoke("Nothing") == Completion.with_result("1", None)


async def test_a_call_without_an_invocation_id_gets_no_answer() -> None:
    """A client's ``send`` runs the method; nothing comes back, not even for an error."""
    hub = Sample()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(Invocation("Remember", ("first",)))
        await client.send(Invocation("NoSuchMethod", ()))
        await client.send(Invocation("Add", ("wrong",)))
        await client.send(Invocation("Fail", ("quietly",)))
        assert await client.call("Echo", "next") == "next"  # the first answer is this call's
        assert hub.sent == ["first"]


@pytest.mark.parametrize(
    ("target", "args", "error"),
    [
        (
            "Nope",
            (),
            "Failed to invoke 'Nope' due to an error on the server. HubException: Method does not exist.",
        ),
        ("Add", (), "Failed to invoke 'Add' due to an error on the server."),
        ("Add", (1, 2, 3), "Failed to invoke 'Add' due to an error on the server."),
        ("Add", ("1",), "Failed to invoke 'Add' due to an error on the server."),
        ("Mirror", ({"x": 1},), "Failed to invoke 'Mirror' due to an error on the server."),
        ("Fail", ("boom",), "An unexpected error occurred invoking 'Fail' on the server."),
        (
            "Refuse",
            ("not now",),
            "An unexpected error occurred invoking 'Refuse' on the server. HubException: not now",
        ),
        ("Unsendable", (), "An unexpected error occurred invoking 'Unsendable' on the server."),
        (
            "Counter",
            (3,),
            "The client attempted to invoke the streaming 'Counter' method with a non-streaming invocation.",
        ),
    ],
)
async def test_mistakes_get_aspnets_error_text_and_the_connection_stays_open(
    target: str, args: tuple[object, ...], error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown method, wrong count or type, a failing method: an error completion, then more calls work."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        completion = await client.invoke(target, *args)
        assert completion.error == error
        assert await client.call("Echo", "still here") == "still here"


@pytest.mark.parametrize(
    ("target", "args", "detail"),
    [
        ("Add", (), "InvalidDataException: Invocation provides 0 argument(s) but target expects 1 to 2."),
        ("Echo", (1, 2), "InvalidDataException: Invocation provides 2 argument(s) but target expects 1."),
        ("Add", ("1",), "InvalidDataException: argument 1 ('a'): expected an integer, got a string"),
        ("Add", (1, True), "InvalidDataException: argument 2 ('b'): expected an integer, got a boolean"),
        ("Mirror", ({"X": 1},), "InvalidDataException: argument 1 ('point'): missing property 'y'"),
        ("Fail", ("boom",), "InvalidOperationException: boom"),
        ("Unsendable", (), "TypeError: 'object' values cannot be sent in a hub message"),
    ],
)
async def test_detailed_errors_name_the_exception(target: str, args: tuple[object, ...], detail: str) -> None:
    """With ``detailed_errors`` on, the error text adds the exception's type and message."""
    async with serve_hub(Sample(), detailed_errors=True) as server, connect(server) as client:
        completion = await client.invoke(target, *args)
        assert completion.error is not None
        assert " " + detail in completion.error, completion.error


async def test_a_failing_method_is_logged_with_its_traceback_but_a_hub_error_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception from a hub method is a bug in the hub (ERROR with traceback); HubError is an answer."""
    caplog.set_level(logging.DEBUG, logger="trio_ws.signalr")
    async with serve_hub(Sample()) as server, connect(server) as client:
        await client.invoke("Refuse", "no")
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        await client.invoke("Fail", "boom")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage().startswith("hub method Fail failed on connection hub connection ")
    assert errors[0].exc_info is not None


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
async def test_dataclasses_and_bytes_cross_in_both_protocols(protocol: str) -> None:
    """A dataclass argument is filled from a map (names matched loosely); bytes travel as base64 in JSON."""
    async with serve_hub(Sample()) as server, connect(server, protocol) as client:
        assert await client.call("Mirror", {"X": 1, "Y": 2}) == {"x": 2, "y": 1}
        if protocol == "json":
            assert await client.call("EchoBytes", "AQID") == "AQID"
        else:
            assert await client.call("EchoBytes", b"\x01\x02\x03") == b"\x01\x02\x03"


async def test_headers_on_messages_are_accepted_and_ignored() -> None:
    """Messages may carry headers; the hub accepts them and answers as usual."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        await client.send(Invocation("Echo", ("h",), "7", headers={"trace": "abc"}))
        assert await client.receive() == Completion.with_result("7", "h")


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
async def test_a_stream_sends_items_then_a_void_completion(protocol: str) -> None:
    """An async generator's items arrive as StreamItems, then a Completion without result."""
    async with serve_hub(Sample()) as server, connect(server, protocol) as client:
        items, end = await client.stream("Counter", 3)
        assert items == [0, 1, 2]
        assert end == Completion.void("1")
        assert await client.stream("Counter", 0) == ([], Completion.void("2"))


async def test_cancel_invocation_cancels_the_stream_through_its_cancel_scope() -> None:
    """CancelInvocation cancels the generator (its ``finally`` runs), and a Completion still follows."""
    hub = Sample()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(StreamInvocation("s", "Infinite", ()))
        assert await client.receive() == StreamItem("s", 0)
        await client.send(CancelInvocation("s"))
        while not isinstance(message := await client.receive(), Completion):
            assert isinstance(message, StreamItem)
        assert message == Completion.void("s")
        assert hub.stream_ended.is_set()
        await client.send(CancelInvocation("s"))  # too late: ignored
        await client.send(CancelInvocation("never-existed"))
        assert await client.call("Echo", "ok") == "ok"


async def test_stream_errors_use_aspnets_texts() -> None:
    """A stream failing midway, or failing to start, completes with ASP.NET's two different texts."""
    async with serve_hub(Sample(), detailed_errors=True) as server, connect(server) as client:
        items, end = await client.stream("Breaks")
        assert items == [1]
        assert end.error == (
            "An error occurred on the server while streaming results. InvalidOperationException: ran out"
        )
        assert (await client.stream("StreamThrowException", "An error occurred."))[1].error == (
            "An unexpected error occurred invoking 'StreamThrowException' on the server. "
            "InvalidOperationException: An error occurred."
        )
        echo = await client.stream("Echo", "42")
        assert echo == (
            [],
            Completion.with_error(
                "3",
                "The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation.",
            ),
        )


async def test_a_stream_id_in_use_is_refused() -> None:
    """A second StreamInvocation with the id of a running stream gets ASP.NET's error."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        await client.send(StreamInvocation("s", "Infinite", ()))
        assert await client.receive() == StreamItem("s", 0)
        await client.send(StreamInvocation("s", "Counter", (1,)))
        message = await client.receive()
        assert message == Completion.with_error(
            "s",
            "An unexpected error occurred invoking 'Counter' on the server. "
            "HubException: Invocation ID 's' is already in use.",
        )


@pytest.mark.parametrize("protocol", ["json", "messagepack"])
async def test_a_client_stream_reaches_the_method_as_a_hub_stream(protocol: str) -> None:
    """Items sent under a stream id are iterated by the method; the stream's Completion ends it."""
    async with serve_hub(Sample()) as server, connect(server, protocol) as client:
        await client.send(Invocation("Concat", (), "1", ("a",)))
        for word in ("Hello ", "world", "!"):
            await client.send(StreamItem("a", word))
        await client.send(Completion.void("a"))
        assert await client.receive() == Completion.with_result("1", "Hello world!")


async def test_two_client_streams_between_arguments() -> None:
    """Stream parameters take the stream ids in order; the other parameters take the arguments."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        await client.send(Invocation("SumBoth", (10,), "1", ("a", "b")))
        await client.send(StreamItem("b", 5))
        await client.send(StreamItem("a", 1))
        await client.send(Completion.void("b"))
        await client.send(StreamItem("a", 2))
        await client.send(Completion.void("a"))
        assert await client.receive() == Completion.with_result("1", 80)


async def test_a_client_stream_error_reaches_the_method_as_a_hub_error() -> None:
    """The client's error on its stream fails the method with ``HubException: <text>``, as in ASP.NET."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        await client.send(Invocation("Concat", (), "1", ("a",)))
        await client.send(StreamItem("a", "Hello "))
        await client.send(Completion.with_error("a", "Something bad"))
        assert await client.receive() == Completion.with_error(
            "1", "An unexpected error occurred invoking 'Concat' on the server. HubException: Something bad"
        )


async def test_client_stream_mistakes_get_error_completions() -> None:
    """Too few or too many stream ids, a mistyped item: error completions; stray items are ignored."""
    async with serve_hub(Sample()) as server, connect(server) as client:
        assert (await client.invoke("Concat")).error == (
            "An unexpected error occurred invoking 'Concat' on the server. "
            "HubException: Client sent 0 stream(s), Hub method expects 1."
        )
        assert (await client.invoke("Echo", "x", stream_ids=("a",))).error == (
            "An unexpected error occurred invoking 'Echo' on the server. "
            "HubException: Client sent 1 stream(s), Hub method expects 0."
        )
        await client.send(StreamItem("nobody", "x"))
        await client.send(Completion.void("nobody"))
        await client.send(Invocation("SumBoth", (1,), "9", ("a", "b")))
        await client.send(StreamItem("a", "not a number"))
        assert await client.receive() == Completion.with_error(
            "9",
            "An unexpected error occurred invoking 'SumBoth' on the server. "
            "HubException: item 1 of stream a: expected an integer, got a string",
        )
        await client.send(StreamItem("b", 1))  # the call is over: its streams are forgotten
        assert await client.call("Echo", "ok") == "ok"
