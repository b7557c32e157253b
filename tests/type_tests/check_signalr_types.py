"""Checked by mypy in CI, never run: trio_ws.signalr's public API as a hub's code sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, assert_type

import trio

from trio_ws.signalr import (
    ClientResultError,
    DisconnectReason,
    Hub,
    HubOptions,
    HubServer,
    HubStream,
    SlowClientPolicy,
    StreamTransport,
    Transport,
    hub_method,
)


class Typed(Hub):
    async def on_disconnected(self, reason: DisconnectReason) -> None:
        assert_type(reason, DisconnectReason)

    async def total(self, numbers: HubStream[int]) -> int:
        total = 0
        async for number in numbers:
            assert_type(number, int)
            total += number
        return total

    async def ask(self) -> Any:
        try:
            return await self.clients.caller.invoke("Answer", 1, "two")
        except ClientResultError as exc:
            assert_type(exc.reason, str)
            raise

    @hub_method("Renamed")
    async def renamed(self) -> AsyncIterator[str]:
        yield self.context.connection_id
        assert_type(self.context.user_id, str | None)
        assert_type(await self.groups.count("room"), int)
        assert_type(await self.users.connections("ann"), frozenset[str])


async def serving(nursery: trio.Nursery, stream: trio.abc.Stream) -> None:
    options = HubOptions(slow_client=SlowClientPolicy.DROP_OLDEST, max_parallel_invocations=4)
    # trio types nursery.start() as returning Any, so annotate what started() hands back.
    hub_server: HubServer = await nursery.start(HubServer(Typed(), options=options).run)
    transport: Transport = StreamTransport(stream, name="Memory")
    nursery.start_soon(hub_server.serve_transport, transport)
    assert_type(hub_server.statistics().connections, int)
    await hub_server.clients.group("room").send("Message", "hi")
    await hub_server.aclose()
