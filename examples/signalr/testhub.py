"""The conformance hub: what the official SignalR clients' functional tests call.

The functional tests of ``@microsoft/signalr`` (aspnetcore's
``src/SignalR/clients/ts/FunctionalTests``) run against a server with a
``TestHub``; this is trio_ws's, method for method, with the error texts
those tests compare, plus ``JoinGroup``, ``LeaveGroup``, ``SendToGroup``,
``Broadcast``, ``GroupCount`` and ``WorkerId`` for the group, broadcast and
scale-out tests. ``AuthorizedHub`` is the hub behind a token.

What the official TestHub reads from the HTTP request (``GetHeader``,
``GetCookie``, ``GetContentTypeHeader``, ``GetNumRedirects``), and the app
that serves these hubs at ``/testhub`` and ``/authorizedhub`` with
``/generateJwtToken`` and ``/clientresult``, come with the HTTP side of the
hubs; ``client_result_text`` is the hub half of ``/clientresult`` already.

Detailed errors are on (``OPTIONS``), as in the official test server.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterator
from typing import Any

import trio

from trio_ws.signalr import ClientResultError, Hub, HubError, HubOptions, HubServer, HubStream

__all__ = ["OPTIONS", "AuthorizedHub", "InvalidOperationException", "TestHub", "client_result_text"]

OPTIONS = HubOptions(detailed_errors=True)


class InvalidOperationException(HubError):
    """Named as .NET names it, because the functional tests compare the error text.

    A ``HubError``, because failing is what the methods that raise it are for:
    the caller reads the text, and the server logs no traceback for it.
    """


class TestHub(Hub):
    """The official functional tests' TestHub, plus groups, broadcast and the worker's id."""

    __test__ = False  # not a pytest test class, whatever its name

    async def echo(self, message: str) -> str:
        return message

    async def get_caller_connection_id(self) -> str:
        return self.context.connection_id

    async def throw_exception(self, message: str) -> None:
        raise InvalidOperationException(message)

    async def invoke_with_string(self, message: str) -> None:
        await self.clients.client(self.context.connection_id).send("Message", message)

    async def send_custom_object(self, custom_object: dict[str, Any]) -> None:
        # Sent back as it came, so its PascalCase keys ("Name", "Value") stay as the test expects.
        await self.clients.client(self.context.connection_id).send("CustomObject", custom_object)

    async def stream(self) -> AsyncIterator[str]:
        for item in ("a", "b", "c"):
            yield item

    async def infinite_stream(self) -> AsyncIterator[str]:
        """Sends nothing until the client cancels it; then tells the client "StreamCanceled"."""
        try:
            await trio.sleep_forever()
            yield ""  # never reached; makes this an async generator, so the client must stream it
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.clients.caller.send("StreamCanceled")

    async def streaming_concat(self, stream: HubStream[str]) -> str:
        return "".join([item async for item in stream])

    async def empty_stream(self) -> AsyncIterator[int]:
        return
        yield 0  # never reached; makes this an async generator

    async def stream_throw_exception(self, message: str) -> AsyncIterator[str]:
        # Raising before returning an iterator is "An unexpected error occurred invoking ...",
        # as the official TestHub's method throws before it returns its channel.
        raise InvalidOperationException(message)

    async def get_active_transport_name(self) -> str | None:
        return self.context.transport

    async def echo_complex_object(self, complex_object: Any) -> Any:
        return complex_object

    async def send_complex_object(self) -> dict[str, Any]:
        return {
            "ByteArray": b"\x01\x02\x03",
            "DateTime": datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
            "Guid": "00010203-0405-0607-0706-050403020100",
            "IntArray": [1, 2, 3],
            "String": "hello world",
        }

    # For the group, broadcast and scale-out tests.

    async def join_group(self, name: str) -> None:
        await self.groups.add(self.context.connection_id, name)

    async def leave_group(self, name: str) -> None:
        await self.groups.remove(self.context.connection_id, name)

    async def send_to_group(self, name: str, message: str) -> None:
        await self.clients.group(name).send("GroupMessage", name, message)

    async def broadcast(self, message: str) -> None:
        await self.clients.all.send("Broadcast", message)

    async def group_count(self, name: str) -> int:
        return await self.groups.count(name)

    async def worker_id(self) -> int:
        return os.getpid()


class AuthorizedHub(Hub):
    """The hub behind a token: the transport's authentication names the user."""

    async def echo(self, message: str) -> str:
        return message

    async def get_user_name_identifier(self) -> str | None:
        return self.context.user_id


async def client_result_text(hub_server: HubServer, connection_id: str) -> str:
    """What ``GET /clientresult?id=...`` answers: the client's ``Result`` as text, or the error text."""
    try:
        result = await hub_server.clients.client(connection_id).invoke("Result")
    except ClientResultError as exc:
        return exc.reason
    return str(result)
