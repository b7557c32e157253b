"""What a method or a hub requires of its callers: ``authorize`` (a user, a role, a policy) over
real sockets with a bearer auth hook, and ``rate_limit`` token buckets on trio's clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

import trio_ws
import trio_ws.signalr._hub.requirements
from trio_ws.signalr import (
    CallRefused,
    Hub,
    HubInvocationContext,
    HubServer,
    InvocationError,
    allow_anonymous,
    authorize,
    map_hub,
    open_hub_client,
    rate_limit,
)
from trio_ws.signalr._hub.filters import NextInvoke

from ...helpers import IO_DEADLINE
from ..helpers import assert_no_tracebacks, connect

UNAUTHORIZED = "Failed to invoke '{}' because user is unauthorized"  # ASP.NET's text
IDENTITIES = {
    "t-ada": trio_ws.Identity("ada", roles=["admin"]),
    "t-bob": trio_ws.Identity("bob", {"plan": "pro"}, roles={"ops"}),
    "t-eve": trio_ws.Identity("eve"),
}


async def verify(token: str) -> trio_ws.Identity | None:
    await trio.lowlevel.checkpoint()
    return IDENTITIES.get(token)


def pro_plan(identity: trio_ws.Identity, invocation: HubInvocationContext) -> bool:
    return identity.claims.get("plan") == "pro"


async def small_amounts(identity: trio_ws.Identity, invocation: HubInvocationContext) -> bool:
    await trio.lowlevel.checkpoint()
    return bool(invocation.arguments[0] <= 10)


class Shop(Hub):
    async def browse(self) -> str:
        return "anyone"

    @authorize
    async def orders(self) -> str:
        return f"orders of {self.context.user_id}"

    @authorize(roles=["admin", "ops"])
    async def refund(self) -> str:
        return "refunded"

    @authorize(policy=pro_plan)
    async def export(self) -> str:
        return "exported"

    @authorize(policy=small_amounts)
    @authorize(roles=["ops"])
    async def discount(self, percent: int) -> int:
        return percent


@authorize(roles=["admin"])
class Admin(Hub):
    async def purge(self) -> str:
        return "purged"

    @allow_anonymous
    async def status(self) -> str:
        return "up"


class Refusals:
    """An app filter noting the outcome of each refused call, as a metrics filter would."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str]] = []

    async def __call__(self, invocation: HubInvocationContext, next: NextInvoke) -> Any:
        try:
            return await next(invocation)
        except CallRefused as refused:
            self.outcomes.append((invocation.method_name, refused.outcome))
            raise


async def test_authorize_by_user_role_and_policy_over_real_sockets(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Each caller gets what their identity allows; a refusal is ASP.NET's exact text, its
    connection stays open, filters outside see ``outcome="unauthorized"``, nothing is logged."""
    app = trio_ws.App()
    refusals = Refusals()
    trio_ws.signalr.add_hub_filter(app, refusals)
    map_hub(app, "/shop", Shop())  # no auth hook: every caller is anonymous
    map_hub(app, "/signed", Shop(), auth=trio_ws.bearer_auth(verify))
    map_hub(app, "/admin", Admin(), auth=trio_ws.bearer_auth(verify))
    server = await trio_ws.testing.start_server(nursery, app)

    async def outcome(path: str, token: str | None, method: str, *args: Any) -> Any:
        async with open_hub_client(server.url + path, access_token=token) as client:
            try:
                result = await client.invoke(method, *args)
            except InvocationError as exc:
                result = str(exc)
            assert await client.invoke("Browse" if path != "admin" else "Status") in ("anyone", "up")
            return result

    with trio.fail_after(IO_DEADLINE):
        assert await outcome("shop", None, "Browse") == "anyone"
        assert await outcome("shop", None, "Orders") == UNAUTHORIZED.format("Orders")
        assert await outcome("shop", None, "oRdErS") == UNAUTHORIZED.format("oRdErS")  # as sent
        assert await outcome("signed", "t-eve", "Orders") == "orders of eve"
        assert await outcome("signed", "t-eve", "Refund") == UNAUTHORIZED.format("Refund")
        assert await outcome("signed", "t-ada", "Refund") == "refunded"
        assert await outcome("signed", "t-bob", "Refund") == "refunded"
        assert await outcome("signed", "t-ada", "Export") == UNAUTHORIZED.format("Export")
        assert await outcome("signed", "t-bob", "Export") == "exported"
        assert await outcome("signed", "t-bob", "Discount", 10) == 10
        assert await outcome("signed", "t-bob", "Discount", 50) == UNAUTHORIZED.format("Discount")
        assert await outcome("signed", "t-ada", "Discount", 5) == UNAUTHORIZED.format("Discount")
        assert await outcome("admin", "t-ada", "Purge") == "purged"
        assert await outcome("admin", "t-eve", "Purge") == UNAUTHORIZED.format("Purge")
        assert await outcome("admin", "t-eve", "Status") == "up"
    assert refusals.outcomes == [
        ("Orders", "unauthorized"),
        ("Orders", "unauthorized"),
        ("Refund", "unauthorized"),
        ("Export", "unauthorized"),
        ("Discount", "unauthorized"),
        ("Discount", "unauthorized"),
        ("Purge", "unauthorized"),
    ]
    assert_no_tracebacks(caplog)


def test_authorize_and_rate_limit_refuse_bad_arguments() -> None:
    """Mistakes in the decorators are caught where they are written, with what to change."""
    with pytest.raises(TypeError, match=r"roles=\['admin'\]"):
        authorize(roles="admin")
    with pytest.raises(ValueError, match="calls must be"):
        rate_limit(0)
    with pytest.raises(ValueError, match="per must be"):
        rate_limit(5, per=0)
    with pytest.raises(ValueError, match="by must be"):
        rate_limit(5, by="ip")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorate a hub class or a hub method"):
        rate_limit(5)(42)
    with pytest.raises(TypeError, match="not the string"):
        trio_ws.Identity("ada", roles="admin")


class Limited(Hub):
    @rate_limit(5, per=1.0)
    async def limited(self) -> str:
        return "ok"

    @rate_limit(2, per=10.0, by="user")
    async def per_user(self) -> str:
        return "ok"

    async def free(self) -> str:
        return "free"

    @rate_limit(1, per=1.0)
    async def ticks(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @authorize
    async def private_ticks(self) -> AsyncIterator[int]:
        yield 1


@rate_limit(3, per=1.0)
class WholeHub(Hub):
    async def one(self) -> int:
        return 1

    async def two(self) -> int:
        return 2


OVER = "Failed to invoke 'Limited' because of a rate limit: at most 5 call(s) per 1 s per connection; "


async def test_a_token_bucket_per_connection(autojump_clock: trio.testing.MockClock) -> None:
    """Five calls at once, then a refusal saying when to try again; tokens come back at five a
    second; other methods and other connections are untouched."""
    server = HubServer(Limited())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client, connect(server) as other:
            for _ in range(5):
                assert await client.call("Limited") == "ok"
            refused = await client.invoke("Limited")
            assert refused.error == OVER + "try again in 0.20 s"
            assert await client.call("Free") == "free"  # the connection stays open, other methods work
            assert await other.call("Limited") == "ok"  # another connection has its own bucket
            await trio.sleep(0.1)
            assert (await client.invoke("Limited")).error == OVER + "try again in 0.10 s"
            await trio.sleep(0.1)
            assert await client.call("Limited") == "ok"  # one token back after 0.2 s
            assert (await client.invoke("Limited")).error is not None
            await trio.sleep(10)  # a long rest refills the bucket to 5, no more
            for _ in range(5):
                assert await client.call("Limited") == "ok"
            assert (await client.invoke("Limited")).error == OVER + "try again in 0.20 s"
        await server.aclose()


async def test_a_token_bucket_per_user_spans_their_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``by="user"``: one bucket for all of a user's connections; callers without a user have one each."""
    server = HubServer(Limited())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with (
            connect(server, user_id="ada") as first,
            connect(server, user_id="ada") as second,
            connect(server, user_id="bob") as bob,
            connect(server) as anonymous,
        ):
            assert await first.call("PerUser") == "ok"
            assert await second.call("PerUser") == "ok"
            refused = await first.invoke("PerUser")
            assert refused.error == (
                "Failed to invoke 'PerUser' because of a rate limit: at most 2 call(s) per 10 s per user; "
                "try again in 5.00 s"
            )
            assert await bob.call("PerUser") == "ok"
            assert await anonymous.call("PerUser") == "ok"
            assert await anonymous.call("PerUser") == "ok"
            assert (await anonymous.invoke("PerUser")).error is not None
            await trio.sleep(5)
            assert await second.call("PerUser") == "ok"
        await server.aclose()


async def test_a_limit_on_the_hub_class_is_shared_by_its_methods(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``@rate_limit`` on a hub class: one bucket per connection for all of its methods."""
    server = HubServer(WholeHub(), filters=[refusals := Refusals()])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            assert [await client.call("One"), await client.call("Two"), await client.call("One")] == [1, 2, 1]
            refused = await client.invoke("Two")
            assert refused.error is not None and "because of a rate limit: at most 3 call(s)" in refused.error
        await server.aclose()
    assert refusals.outcomes == [("Two", "rate_limited")]


async def test_many_users_keep_bounded_buckets(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buckets of users that have refilled are forgotten once there are many, so memory stays bounded."""
    monkeypatch.setattr(trio_ws.signalr._hub.requirements, "_MANY_USERS", 32)
    hub = Limited()
    server = HubServer(hub)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        for n in range(40):
            async with connect(server, user_id=f"user{n}") as client:
                assert await client.call("PerUser") == "ok"
            if n == 30:
                await trio.sleep(10)  # every bucket so far refills
        await server.aclose()
    limit = type(hub).per_user.__trio_ws_requirements__[0]  # type: ignore[attr-defined]
    assert len(limit.users) < 32  # the 31 refilled ones went when the 33rd user came


async def test_streams_are_limited_and_authorized_too(autojump_clock: trio.testing.MockClock) -> None:
    """A stream call over its limit, or refused, ends at once with the refusal's text and no items."""
    server = HubServer(Limited())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        async with connect(server) as client:
            assert (await client.stream("Ticks", 3))[0] == [0, 1, 2]
            items, completion = await client.stream("Ticks", 3)
            assert items == [] and completion.error is not None
            assert completion.error.startswith("Failed to invoke 'Ticks' because of a rate limit")
            items, completion = await client.stream("PrivateTicks")
            assert (items, completion.error) == ([], UNAUTHORIZED.format("PrivateTicks"))
            await trio.sleep(1)
            assert (await client.stream("Ticks", 1))[0] == [0]
        await server.aclose()
