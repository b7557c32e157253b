"""The conformance hub (examples/signalr/testhub.py) answers as the official functional tests
expect, method by method, over in-memory transports in both protocols."""

from __future__ import annotations

import datetime
import os
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import trio_ws
from examples.signalr.testhub import (
    OPTIONS,
    AuthorizedHub,
    TestHub,
    build_app,
    client_result_text,
    verify_token,
)
from trio_ws.signalr import InvocationError, open_hub_client
from trio_ws.signalr._protocol.messages import (
    CancelInvocation,
    Completion,
    Invocation,
    StreamInvocation,
    StreamItem,
)

from ..helpers import IO_DEADLINE
from ..signalr.helpers import HubTestClient, assert_no_tracebacks, connect, serve_hub

HELLO = "\u4f60\u597d\uff0c\u4e16\u754c\uff01"
PROTOCOLS = pytest.mark.parametrize("protocol", ["json", "messagepack"])


async def next_invocation(client: HubTestClient) -> Invocation:
    message = await client.receive()
    assert isinstance(message, Invocation), message
    return message


@PROTOCOLS
async def test_echo_connection_id_and_transport_name(protocol: str) -> None:
    """Echo with UTF-8 text, the caller's connection id, the active transport's name."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server, protocol) as client:
        assert await client.call("Echo", HELLO) == HELLO
        assert await client.call("echo", "") == ""
        assert (
            await client.call("GetCallerConnectionId")
            == next(iter(server._connections.values())).connection_id
        )
        assert await client.call("GetActiveTransportName") == "Memory"


@PROTOCOLS
async def test_errors_read_as_the_functional_tests_expect(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """ThrowException, StreamThrowException and the mismatched invocations give the tests' texts,
    and failing on purpose logs no traceback."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server, protocol) as client:
        assert (await client.invoke("ThrowException", "An error occurred.")).error == (
            "An unexpected error occurred invoking 'ThrowException' on the server. "
            "InvalidOperationException: An error occurred."
        )
        assert (await client.stream("StreamThrowException", "An error occurred."))[1].error == (
            "An unexpected error occurred invoking 'StreamThrowException' on the server. "
            "InvalidOperationException: An error occurred."
        )
        for target in ("EmptyStream", "Stream"):
            assert (await client.invoke(target)).error == (
                f"The client attempted to invoke the streaming '{target}' method "
                "with a non-streaming invocation."
            )
        assert (await client.stream("Echo", "42"))[1].error == (
            "The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation."
        )
    assert_no_tracebacks(caplog)


@PROTOCOLS
async def test_server_calls_reach_the_caller(protocol: str) -> None:
    """InvokeWithString sends "Message"; SendCustomObject sends "CustomObject" with its PascalCase keys."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server, protocol) as client:
        await client.send(Invocation("InvokeWithString", (HELLO,), "1"))
        assert await next_invocation(client) == Invocation("Message", (HELLO,))
        assert await client.receive() == Completion.with_result("1", None)
        await client.send(Invocation("SendCustomObject", ({"Name": "test", "Value": 42},)))
        assert await next_invocation(client) == Invocation("CustomObject", ({"Name": "test", "Value": 42},))


@PROTOCOLS
async def test_streams(protocol: str) -> None:
    """Stream gives a, b, c; EmptyStream nothing; InfiniteStream, cancelled, sends "StreamCanceled"."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server, protocol) as client:
        assert await client.stream("Stream") == (["a", "b", "c"], Completion.void("1"))
        assert await client.stream("EmptyStream") == ([], Completion.void("2"))
        await client.send(StreamInvocation("3", "InfiniteStream", ()))
        await trio.testing.wait_all_tasks_blocked()
        await client.send(CancelInvocation("3"))
        first, second = await client.receive(), await client.receive()
        assert {repr(first), repr(second)} == {
            repr(Invocation("StreamCanceled", ())),
            repr(Completion.void("3")),
        }


@PROTOCOLS
async def test_streaming_concat_and_its_error(protocol: str) -> None:
    """StreamingConcat joins the client's stream; the client's error reads "HubException: Something bad"."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server, protocol) as client:
        for number, ending in enumerate(
            [Completion.void("s1"), Completion.with_error("s2", "Something bad")]
        ):
            stream_id = ending.invocation_id
            await client.send(Invocation("StreamingConcat", (), str(number), (stream_id,)))
            for word in ("Hello ", "world", "!"):
                await client.send(StreamItem(stream_id, word))
            await client.send(ending)
        assert await client.receive() == Completion.with_result("0", "Hello world!")
        assert await client.receive() == Completion.with_error(
            "1",
            "An unexpected error occurred invoking 'StreamingConcat' on the server. "
            "HubException: Something bad",
        )


async def test_complex_objects_in_json() -> None:
    """EchoComplexObject returns what came; SendComplexObject carries base64 bytes and a UTC date."""
    sent = {
        "ByteArray": "aGVsbG8=",
        "DateTime": "2002-04-01T10:20:15Z",
        "Guid": "00010203-0405-0607-0706-050403020100",
        "IntArray": [1, 2, 3, 255],
        "String": "Hello, World!",
    }
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server) as client:
        assert await client.call("EchoComplexObject", sent) == sent
        assert await client.call("SendComplexObject") == {
            "ByteArray": "AQID",
            "DateTime": "2000-01-01T00:00:00Z",
            "Guid": "00010203-0405-0607-0706-050403020100",
            "IntArray": [1, 2, 3],
            "String": "hello world",
        }


async def test_complex_objects_in_messagepack() -> None:
    """In MessagePack the bytes are binary and the dates timestamps, both ways."""
    when = datetime.datetime(2002, 4, 1, 10, 20, 15, tzinfo=datetime.UTC)
    sent: dict[str, Any] = {
        "ByteArray": b"hello",
        "DateTime": when,
        "IntArray": [1, 2, 3, 255],
        "String": "x",
    }
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server, "messagepack") as client:
        assert await client.call("EchoComplexObject", sent) == sent
        received = await client.call("SendComplexObject")
        assert received["ByteArray"] == b"\x01\x02\x03"
        assert received["DateTime"] == datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


async def test_groups_broadcast_and_worker_id() -> None:
    """JoinGroup, SendToGroup ("GroupMessage", members only), GroupCount, LeaveGroup, Broadcast, WorkerId."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server) as ann, connect(server) as bob:
        await ann.call("JoinGroup", "g")
        await bob.call("JoinGroup", "g")
        assert await ann.call("GroupCount", "g") == 2
        await bob.call("LeaveGroup", "g")
        await ann.send(Invocation("SendToGroup", ("g", "hi")))
        assert await next_invocation(ann) == Invocation("GroupMessage", ("g", "hi"))
        await bob.send(Invocation("Broadcast", ("all",)))
        assert await next_invocation(ann) == Invocation("Broadcast", ("all",))
        assert await next_invocation(bob) == Invocation("Broadcast", ("all",))
        assert await bob.call("GroupCount", "g") == 1
        assert await bob.call("WorkerId") == os.getpid()


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        (lambda i: Completion.with_result(i, 10), "10"),
        (lambda i: Completion.with_error(i, "Error: from callback"), "Error: from callback"),
        (
            lambda i: Completion.with_error(i, "Client didn't provide a result."),
            "Client didn't provide a result.",
        ),
    ],
)
async def test_client_result_text(reply: Any, text: str) -> None:
    """The hub half of /clientresult: the client's Result as text, or its error text."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server) as client:
        connection_id = await client.call("GetCallerConnectionId")
        async with trio.open_nursery() as nursery:
            results: list[str] = []

            async def ask() -> None:
                results.append(await client_result_text(server, connection_id))

            nursery.start_soon(ask)
            asked = await next_invocation(client)
            assert asked.target == "Result" and asked.invocation_id is not None
            await client.send(reply(asked.invocation_id))
        assert results == [text]


async def test_authorized_hub_sees_the_user() -> None:
    """AuthorizedHub echoes, and names the user the transport authenticated."""
    async with (
        serve_hub(AuthorizedHub(), OPTIONS) as server,
        connect(server, user_id="testuser") as client,
    ):
        assert await client.call("Echo", HELLO) == HELLO
        assert await client.call("GetUserNameIdentifier") == "testuser"


async def test_admin_only_wants_a_token_with_the_admin_role(nursery: trio.Nursery) -> None:
    """``/generateJwtToken?role=admin`` gives the token's identity the role ``admin``, which
    ``AdminOnly`` requires; without it the call gets ASP.NET's text and the connection goes on."""
    server = await trio_ws.testing.start_server(nursery, build_app(OPTIONS))
    with trio.fail_after(IO_DEADLINE):
        async with httpx.AsyncClient(base_url=server.url) as http:
            admin = (await http.get("generateJwtToken", params={"role": "admin"})).text
            plain = (await http.get("generateJwtToken")).text
            refused = await http.get("generateJwtToken", params={"role": "x" * 65})
            assert refused.status_code == 400
        assert verify_token(admin) == trio_ws.Identity("testuser", roles={"admin"})
        assert verify_token(plain) == trio_ws.Identity("testuser")
        async with open_hub_client(server.url + "authorizedhub", access_token=admin) as hub:
            assert await hub.invoke("AdminOnly") == "admin"
        async with open_hub_client(server.url + "authorizedhub", access_token=plain) as hub:
            with pytest.raises(InvocationError) as error:
                await hub.invoke("AdminOnly")
            assert str(error.value) == "Failed to invoke 'AdminOnly' because user is unauthorized"
            assert await hub.invoke("Echo", HELLO) == HELLO


async def test_limited_allows_five_calls_a_second_per_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``Limited`` answers "ok" five times, then an error saying it is a rate limit; a second later
    (trio's clock) it answers again; another connection has its own five."""
    async with serve_hub(TestHub(), OPTIONS) as server, connect(server) as client, connect(server) as other:
        assert [await client.call("Limited") for _ in range(5)] == ["ok"] * 5
        over = await client.invoke("Limited")
        assert over.error == (
            "Failed to invoke 'Limited' because of a rate limit: at most 5 call(s) per 1 s per connection; "
            "try again in 0.20 s"
        )
        assert await other.call("Limited") == "ok"
        await trio.sleep(1)
        assert [await client.call("Limited") for _ in range(5)] == ["ok"] * 5
