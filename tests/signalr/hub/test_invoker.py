"""Calls one at a time in one task per connection, the invoker: what runs there, and what never
waits for the call it runs (streams, error answers, the calls behind one awaiting a client)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
import trio.lowlevel

from trio_ws.signalr import Hub, HubOptions
from trio_ws.signalr._protocol.messages import Completion, Invocation, StreamInvocation, StreamItem

from ..helpers import connect, serve_hub


class Held(Hub):
    """A call that waits for the test to let it go, and a record of where calls ran."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.holding = trio.Event()
        self.tasks: list[trio.lowlevel.Task] = []
        self.log: list[str] = []

    async def hold(self) -> str:
        self.holding.set()
        await self.release.wait()
        self.log.append("hold ended")
        return "held"

    async def note(self, text: str) -> str:
        self.tasks.append(trio.lowlevel.current_task())
        self.log.append(text)
        return text

    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


async def test_calls_one_at_a_time_run_in_one_task_in_order() -> None:
    """With the default one call at a time, pipelined calls all run in the same task (no task per
    call), one after another, and each is answered in order."""
    hub = Held()
    async with serve_hub(hub) as server, connect(server) as client:
        for i in range(5):
            await client.send(Invocation("Note", (str(i),), str(i)))
        answers = [await client.receive() for _ in range(5)]
    assert answers == [Completion.with_result(str(i), str(i)) for i in range(5)]
    assert hub.log == [str(i) for i in range(5)]
    assert len(set(hub.tasks)) == 1


async def test_calls_in_parallel_get_a_task_each() -> None:
    """With more than one slot, each call runs in its own task, and one waiting call does not hold
    up another."""
    hub = Held()
    async with (
        serve_hub(hub, max_parallel_invocations=2) as server,
        connect(server) as client,
    ):
        await client.send(Invocation("Hold", (), "h"))
        await hub.holding.wait()
        assert await client.call("Note", "a") == "a"
        assert await client.call("Note", "b") == "b"
        hub.release.set()
        assert await client.receive() == Completion.with_result("h", "held")
    assert len(set(hub.tasks)) == 2


async def test_a_stream_starts_while_a_call_runs() -> None:
    """A stream takes no slot: it runs to its end while the one call slot is busy, as it did when
    every call had a task of its own."""
    hub = Held()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(Invocation("Hold", (), "h"))
        await hub.holding.wait()
        with trio.fail_after(5):
            await client.send(StreamInvocation("s", "Count", (2,)))
            assert [await client.receive() for _ in range(3)] == [
                StreamItem("s", 0),
                StreamItem("s", 1),
                Completion("s"),
            ]
        hub.release.set()
        assert await client.receive() == Completion.with_result("h", "held")


async def test_a_bad_call_is_answered_while_a_call_runs() -> None:
    """An unknown method or bad arguments are answered at once, not after the call that runs."""
    hub = Held()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(Invocation("Hold", (), "h"))
        await hub.holding.wait()
        with trio.fail_after(5):
            await client.send(Invocation("Nope", (), "x"))
            unknown = await client.receive()
            assert isinstance(unknown, Completion) and unknown.invocation_id == "x"
            assert "Method does not exist" in str(unknown.error)
            await client.send(Invocation("Note", (1, 2), "y"))
            wrong = await client.receive()
            assert isinstance(wrong, Completion) and wrong.invocation_id == "y" and wrong.error
        hub.release.set()
        assert await client.receive() == Completion.with_result("h", "held")


async def test_a_call_behind_a_stream_still_waits_for_the_slot() -> None:
    """Once a stream has gone ahead of the running call, the next call still waits for that call
    to end: one call at a time, in order."""
    hub = Held()
    async with serve_hub(hub) as server, connect(server) as client:
        await client.send(Invocation("Hold", (), "h"))
        await hub.holding.wait()
        await client.send(StreamInvocation("s", "Count", (1,)))
        await client.send(Invocation("Note", ("after",), "n"))
        assert [await client.receive() for _ in range(2)] == [StreamItem("s", 0), Completion("s")]
        await trio.testing.wait_all_tasks_blocked()
        assert hub.log == []  # "Note" waits for "Hold"
        hub.release.set()
        assert await client.receive() == Completion.with_result("h", "held")
        assert await client.receive() == Completion.with_result("n", "after")
    assert hub.log == ["hold ended", "after"]


async def test_the_next_call_runs_after_one_that_waited_for_a_client() -> None:
    """A call that gave its slot back to await a client result, and the calls that ran meanwhile,
    all end well, and later calls run in the task that took the backlog over."""

    class Asking(Held):
        async def ask_caller(self) -> object:
            return await self.clients.caller.invoke("Answer")

    hub = Asking()
    async with serve_hub(hub, HubOptions()) as server, connect(server) as client:
        await client.send(Invocation("AskCaller", (), "1"))
        asked = await client.receive()
        assert isinstance(asked, Invocation) and asked.invocation_id is not None
        assert await client.call("Note", "a") == "a"
        await client.send(Completion.with_result(asked.invocation_id, 42))
        assert await client.receive() == Completion.with_result("1", 42)
        assert await client.call("Note", "b") == "b"
    assert hub.log == ["a", "b"]
    assert len(set(hub.tasks)) == 1
