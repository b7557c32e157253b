"""What a hub method, or a whole hub, requires of its callers: authorization and rate limits.

::

    @authorize                                  # every method: an authenticated user
    class Admin(Hub):
        @authorize(roles=["admin"])             # and this one: the role admin
        @rate_limit(5, per=1.0)                 # at most 5 calls a second per connection
        async def purge(self) -> None: ...

        @allow_anonymous                        # anyone, signed in or not
        async def status(self) -> str: ...

Rules of this module:

* The decorators only mark the function or the class; the hub server turns
  the marks into steps of each method's filter pipeline (``_filters.py``)
  when it starts. They run after the app's and the hub's filters, so those
  see a refusal as a ``CallRefused`` with its ``outcome``.
* Authorization first: every ``authorize`` on the hub's classes and on the
  method must pass (the hub's first), each needing an authenticated user
  (an ``Identity`` from the auth hook), one of its ``roles`` if it names
  any, and its ``policy`` if it has one. A refusal is ASP.NET's answer,
  ``Failed to invoke 'M' because user is unauthorized``, and the
  connection stays open. ``allow_anonymous`` on a method lifts them all.
* Then the rate limits, each a token bucket on trio's clock: ``calls``
  tokens, refilled at ``calls`` per ``per`` seconds, one taken per call. A
  limit on a hub class is one bucket for all its methods; on a method, a
  bucket for that method. ``by="connection"`` keeps a bucket per
  connection (gone with it); ``by="user"`` one per user across their
  connections in this process (callers without a user: per connection).
  A call over the limit is refused with a text that says so, and nothing
  else is slowed: other calls and other clients go on.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import trio

from .filters import CallRefused, HubInvocationContext, NextInvoke, Step

if TYPE_CHECKING:
    from ..._app.request import Identity
    from .methods import HubMethod

__all__ = ["Policy", "allow_anonymous", "authorize", "rate_limit", "requirement_steps"]

T = TypeVar("T")
Policy = Callable[["Identity", HubInvocationContext], "bool | Awaitable[bool]"]
"""``policy(identity, invocation) -> bool`` (or ``async``): whether this authenticated caller may
make this call."""

_MARKS = "__trio_ws_requirements__"
_ANONYMOUS = "__trio_ws_allow_anonymous__"
_MANY_USERS = 1024  # past this many users' buckets, the full ones are forgotten
UNAUTHORIZED = "Failed to invoke '{}' because user is unauthorized"  # ASP.NET's text, exactly


class _Authorize:
    __slots__ = ("policy", "roles")

    def __init__(self, roles: frozenset[str], policy: Policy | None) -> None:
        self.roles = roles
        self.policy = policy

    async def __call__(self, invocation: HubInvocationContext, next: NextInvoke) -> Any:
        identity = invocation.caller.identity
        if identity is None or (self.roles and self.roles.isdisjoint(identity.roles)):
            raise CallRefused(UNAUTHORIZED.format(invocation.target), outcome="unauthorized")
        if self.policy is not None:
            allowed = self.policy(identity, invocation)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise CallRefused(UNAUTHORIZED.format(invocation.target), outcome="unauthorized")
        return await next(invocation)


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class _RateLimit:
    """One ``rate_limit`` mark: its buckets, by connection or by user."""

    __slots__ = ("by", "calls", "per", "rate", "users")

    def __init__(self, calls: int, per: float, by: Literal["connection", "user"]) -> None:
        self.calls = calls
        self.per = per
        self.by = by
        self.rate = calls / per  # tokens per second
        self.users: dict[object, Any] = {}  # buckets by user id

    def _bucket(self, invocation: HubInvocationContext, now: float) -> _Bucket:
        caller = invocation.caller
        user_id = caller.user_id
        key: object
        if self.by == "user" and user_id is not None:
            buckets = self.users
            key = user_id
            if len(buckets) >= _MANY_USERS and user_id not in buckets:
                self._forget_full(now)
        else:
            if caller._limits is None:  # per connection, gone with it
                caller._limits = {}
            buckets = caller._limits
            key = self
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket(float(self.calls), now)
        return bucket

    def _forget_full(self, now: float) -> None:
        """Drop the users' buckets that have refilled: keeping them would change nothing."""
        for user_id, bucket in list(self.users.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.calls:
                del self.users[user_id]

    async def __call__(self, invocation: HubInvocationContext, next: NextInvoke) -> Any:
        now = trio.current_time()
        bucket = self._bucket(invocation, now)
        bucket.tokens = min(float(self.calls), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / self.rate
            raise CallRefused(
                f"Failed to invoke '{invocation.target}' because of a rate limit: at most "
                f"{self.calls} call(s) per {self.per:g} s per {self.by}; try again in {wait:.2f} s",
                outcome="rate_limited",
            )
        bucket.tokens -= 1.0
        return await next(invocation)


def _mark(target: T, mark: object) -> T:
    if not (inspect.isclass(target) or inspect.isfunction(target)):
        raise TypeError(f"decorate a hub class or a hub method, not {target!r}")
    # Decorators apply from the bottom up: put this one first, so the list reads top-down.
    # A class's own marks only (vars): its base classes' are read from them.
    setattr(target, _MARKS, (mark, *vars(target).get(_MARKS, ())))
    return target


@overload
def authorize(target: T, /) -> T: ...
@overload
def authorize(*, roles: Iterable[str] | None = None, policy: Policy | None = None) -> Callable[[T], T]: ...
def authorize(
    target: Any = None, /, *, roles: Iterable[str] | None = None, policy: Policy | None = None
) -> Any:
    """Require an authenticated caller for a hub method, or for every method of a hub class.

    ``@authorize`` alone requires a user (an ``Identity`` from the auth
    hook); ``roles`` requires one of them too (``Identity.roles``);
    ``policy(identity, invocation)`` decides the rest (sync or async). Each
    ``authorize`` must pass. A refused call gets ASP.NET's error, ``Failed to
    invoke 'Method' because user is unauthorized``; the connection stays open.

    Example::

        @authorize(roles=["admin"])
        async def purge(self) -> None: ...

        @authorize(policy=lambda identity, call: identity.claims.get("plan") == "pro")
        async def export(self) -> bytes: ...
    """
    if isinstance(roles, str):
        raise TypeError(f"roles is a list of role names, not the string {roles!r}: roles=[{roles!r}]")
    if policy is not None and not callable(policy):
        raise TypeError(f"policy must be a function of (identity, invocation), got {policy!r}")
    mark = _Authorize(frozenset(roles or ()), policy)
    if target is not None:
        return _mark(target, mark)
    return lambda decorated: _mark(decorated, mark)


def allow_anonymous(function: T) -> T:
    """Let anyone call this method, whatever ``authorize`` its hub class (or the method) carries."""
    if not inspect.isfunction(function):
        raise TypeError(f"allow_anonymous decorates a hub method, not {function!r}")
    setattr(function, _ANONYMOUS, True)
    return function


def rate_limit(
    calls: int, per: float = 1.0, *, by: Literal["connection", "user"] = "connection"
) -> Callable[[T], T]:
    """Allow at most ``calls`` calls per ``per`` seconds (a token bucket), per connection or per user.

    On a method, the limit is that method's; on a hub class, one limit for
    all its methods together. A call over it gets an error completion
    saying so (``Failed to invoke 'M' because of a rate limit: ...``).

    Example::

        @rate_limit(5, per=1.0)                  # 5 calls a second per connection, bursts of 5
        async def limited(self) -> str: ...
    """
    if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
        raise ValueError(f"calls must be a whole number of at least 1, got {calls!r}")
    if not isinstance(per, int | float) or isinstance(per, bool) or not (0 < per < math.inf):
        raise ValueError(f"per must be a number of seconds greater than 0, got {per!r}")
    if by not in ("connection", "user"):
        raise ValueError(f"by must be 'connection' or 'user', got {by!r}")
    mark = _RateLimit(calls, float(per), by)
    return lambda decorated: _mark(decorated, mark)


def _marks_of_class(hub_type: type) -> list[object]:
    marks: list[object] = []
    for klass in reversed(hub_type.__mro__):  # base classes first
        marks.extend(vars(klass).get(_MARKS, ()))
    return marks


def requirement_steps(hub_type: type, method: HubMethod) -> list[Step]:
    """The steps ``method`` of ``hub_type`` requires: authorization first, then rate limits."""
    marks: Collection[object] = [*_marks_of_class(hub_type), *getattr(method.function, _MARKS, ())]
    anonymous = getattr(method.function, _ANONYMOUS, False)
    steps: list[Step] = [m for m in marks if isinstance(m, _Authorize) and not anonymous]
    steps += [m for m in marks if isinstance(m, _RateLimit)]
    return steps
