"""Hub filters: code that runs around every call, connect and disconnect of a hub.

::

    class Audit(HubFilter):
        async def invoke(self, invocation, next):
            logger.info("%s calls %s", invocation.caller.user_id, invocation.method_name)
            return await next(invocation)

    add_hub_filter(app, Audit())                       # every hub mapped on app
    map_hub(app, "/chat", Chat(), filters=[Audit()])   # this hub only

A filter is a ``HubFilter`` (override ``invoke``, ``on_connected``,
``on_disconnected``: those left alone cost nothing), or a plain ``async def
f(invocation, next)``, which filters calls only. This is ASP.NET's
``IHubFilter``.

Rules of this module:

* Filters run in order, each around the next: the app's (``add_hub_filter``,
  in the order added), then the hub's (``filters=``), then what the method
  and its hub class require (``authorize``, ``rate_limit``), then the method.
  A filter that does not ``await next(...)`` stops the call there; what it
  returns is the call's result, what it raises is the caller's error.
* Filters see calls that reached a method: an unknown method, arguments of
  the wrong number or type, a stream call to a plain method or the reverse
  are answered before any filter runs, as in ASP.NET.
* For a streaming method, ``next`` returns the stream (an async iterator)
  before any item has gone out: a filter may refuse the call, or return
  another iterator (wrapping this one) to see or change the items. The
  code after ``await next`` runs as the stream begins, not when it ends.
* ``CallRefused`` is a filter's way of refusing: the caller gets exactly its
  text as the error, nothing is logged, and its ``outcome`` says why
  (``"unauthorized"``, ``"rate_limited"``) for whoever counts calls.
* With no filter and no requirement, a call costs what it cost before
  filters existed: the pipeline of each method is built once, when the hub
  server starts, and a method without one is called directly.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import DisconnectReason, HubError

if TYPE_CHECKING:
    from ..._app.app import App
    from ..._app.request import Identity
    from .call import HubCallerContext
    from .hub import Hub
    from .methods import HubMethod

__all__ = [
    "CallRefused",
    "HubFilter",
    "HubInvocationContext",
    "HubLifetimeContext",
    "InvocationFilter",
    "add_hub_filter",
]

NextInvoke = Callable[["HubInvocationContext"], Awaitable[Any]]
"""``await next(invocation)``: the rest of the pipeline, down to the hub method; its result."""
NextConnected = Callable[["HubLifetimeContext"], Awaitable[None]]
NextDisconnected = Callable[["HubLifetimeContext", DisconnectReason], Awaitable[None]]
InvocationFilter = Callable[["HubInvocationContext", NextInvoke], Awaitable[Any]]
"""A plain function filter: ``async def f(invocation, next) -> result``."""


class CallRefused(HubError):
    """Refuse a call from a filter: the caller's error is exactly ``text``, and the
    connection stays open. Nothing is logged: this is an answer, not a failure.

    Raised by a filter of your own, and by ``@authorize`` and ``@rate_limit``
    (``outcome`` ``"unauthorized"`` and ``"rate_limited"``).

    Attributes:
        text: The error completion's text, sent as is (no prefix added).
        outcome: Why, for counting: ``"unauthorized"``, ``"rate_limited"``, or
            ``"refused"`` (the default) for a filter's own reasons.
    """

    def __init__(self, text: str, *, outcome: str = "refused") -> None:
        super().__init__(text)
        self.text = text
        self.outcome = outcome

    def __str__(self) -> str:
        return self.text


class HubInvocationContext:
    """One call from a client, as filters see it.

    Attributes:
        hub: The hub instance.
        caller: The calling connection: ``connection_id``, ``user_id``,
            ``identity``, ``transport``, ``request``, ``items``...
        method: The method's Python function (read its attributes, or what
            decorators left on it).
        method_name: The method's name on the wire (``"SendMessage"``).
        target: The name as the client sent it, which may differ in case
            (``"sendmessage"``); error texts name the method this way, as
            ASP.NET's do.
        arguments: The arguments, converted by the method's annotations, in
            order; an uploaded stream is a ``HubStream``. A filter may change
            them before ``next``.
        invocation_id: The client's id for the call; ``None`` for a call
            that expects no answer (a client's ``send``).
        streaming: Whether the method streams its result (``next`` then
            returns the stream).
        items: Scratch space for filters, for this call only.
    """

    __slots__ = (
        "arguments",
        "caller",
        "hub",
        "invocation_id",
        "items",
        "method",
        "method_name",
        "streaming",
        "target",
    )

    def __init__(
        self,
        hub: Hub,
        caller: HubCallerContext,
        method: Callable[..., Any],
        method_name: str,
        arguments: list[Any],
        invocation_id: str | None,
        streaming: bool,
        target: str,
    ) -> None:
        self.hub = hub
        self.caller = caller
        self.method = method
        self.method_name = method_name
        self.arguments = arguments
        self.invocation_id = invocation_id
        self.streaming = streaming
        self.target = target
        self.items: dict[Any, Any] = {}

    @property
    def hub_name(self) -> str:
        """The hub's class name (ASP.NET's ``rpc.service``)."""
        return type(self.hub).__name__

    @property
    def python_name(self) -> str:
        """The method's Python name (``"send_message"``)."""
        return self.method.__name__

    @property
    def identity(self) -> Identity | None:
        """Who the caller authenticated as (their ``user_id``, ``roles``, ``claims``), or ``None``."""
        return self.caller.identity

    def __repr__(self) -> str:
        return f"<HubInvocationContext {self.hub_name}.{self.method_name} from {self.caller.connection_id}>"


class HubLifetimeContext:
    """A connection arriving or leaving, as filters see it.

    Attributes:
        hub: The hub instance.
        caller: The connection (see ``HubCallerContext``).
    """

    __slots__ = ("caller", "hub")

    def __init__(self, hub: Hub, caller: HubCallerContext) -> None:
        self.hub = hub
        self.caller = caller

    @property
    def hub_name(self) -> str:
        """The hub's class name."""
        return type(self.hub).__name__

    def __repr__(self) -> str:
        return f"<HubLifetimeContext {self.hub_name} {self.caller.connection_id}>"


class HubFilter:
    """Subclass it and override what you need; each method runs around the next filter's.

    The defaults pass straight through, and a filter that keeps one costs
    nothing there.
    """

    async def invoke(self, invocation: HubInvocationContext, next: NextInvoke) -> Any:
        """Around a call: ``return await next(invocation)``, or refuse, or change the result."""
        return await next(invocation)

    async def on_connected(self, context: HubLifetimeContext, next: NextConnected) -> None:
        """Around ``Hub.on_connected``; raising refuses the connection (it is closed with an error)."""
        await next(context)

    async def on_disconnected(
        self, context: HubLifetimeContext, reason: DisconnectReason, next: NextDisconnected
    ) -> None:
        """Around ``Hub.on_disconnected``."""
        await next(context, reason)


AnyFilter = HubFilter | InvocationFilter

# The app-wide filters, by app: add_hub_filter appends, hub servers read them when they start.
_app_filters: weakref.WeakKeyDictionary[App, list[AnyFilter]] = weakref.WeakKeyDictionary()


def add_hub_filter(app: App, hub_filter: AnyFilter) -> None:
    """Run ``hub_filter`` around the calls (and connects, disconnects) of every hub on ``app``.

    App filters run before each hub's own (``map_hub(..., filters=)``), in
    the order added. They apply to hubs mapped before or after, from the
    moment the app is served.
    """
    check_filter(hub_filter)
    _app_filters.setdefault(app, []).append(hub_filter)


def app_filters(app: App) -> list[AnyFilter]:
    """The list ``add_hub_filter`` fills for ``app`` (the same list, so later additions count)."""
    return _app_filters.setdefault(app, [])


def check_filter(hub_filter: object) -> None:
    """Refuse what cannot be a filter, when it is given rather than at the first call.

    Raises:
        TypeError: neither a ``HubFilter`` nor an ``async def f(invocation, next)``.
    """
    if isinstance(hub_filter, HubFilter):
        return
    if isinstance(hub_filter, type) and issubclass(hub_filter, HubFilter):
        raise TypeError(f"pass an instance of {hub_filter.__name__} as a hub filter, not the class")
    call = getattr(hub_filter, "__call__", None)  # noqa: B004 (an instance with an async __call__ will do)
    if not (inspect.iscoroutinefunction(hub_filter) or inspect.iscoroutinefunction(call)):
        raise TypeError(
            f"a hub filter is a HubFilter or an 'async def f(invocation, next)', got {hub_filter!r}"
        )


def _overrides(hub_filter: HubFilter, name: str) -> bool:
    return getattr(type(hub_filter), name) is not getattr(HubFilter, name)


# -- pipelines ------------------------------------------------------------------------------------


Step = Callable[[HubInvocationContext, NextInvoke], Awaitable[Any]]


def invocation_steps(filters: Iterable[AnyFilter]) -> list[Step]:
    """The call filters among ``filters``, as steps ``(invocation, next)``, outermost first."""
    steps: list[Step] = []
    for hub_filter in filters:
        if isinstance(hub_filter, HubFilter):
            if _overrides(hub_filter, "invoke"):
                steps.append(hub_filter.invoke)
        else:
            steps.append(hub_filter)
    return steps


def build_pipeline(steps: Sequence[Step], innermost: NextInvoke) -> NextInvoke:
    """``steps`` wrapped around ``innermost``: one function to call per invocation."""
    pipeline = innermost
    for step in reversed(steps):
        pipeline = functools.partial(_run_step, step, pipeline)
    return pipeline


async def _run_step(step: Step, rest: NextInvoke, invocation: HubInvocationContext) -> Any:
    return await step(invocation, rest)


def connected_pipeline(filters: Sequence[AnyFilter], hook: NextConnected) -> NextConnected | None:
    """The ``on_connected`` filters around ``hook``; ``None`` when no filter has one."""
    chosen = [f for f in filters if isinstance(f, HubFilter) and _overrides(f, "on_connected")]
    if not chosen:
        return None
    pipeline = hook
    for hub_filter in reversed(chosen):
        pipeline = functools.partial(_run_connected, hub_filter, pipeline)
    return pipeline


async def _run_connected(hub_filter: HubFilter, rest: NextConnected, context: HubLifetimeContext) -> None:
    await hub_filter.on_connected(context, rest)


def disconnected_pipeline(filters: Sequence[AnyFilter], hook: NextDisconnected) -> NextDisconnected | None:
    """The ``on_disconnected`` filters around ``hook``; ``None`` when no filter has one."""
    chosen = [f for f in filters if isinstance(f, HubFilter) and _overrides(f, "on_disconnected")]
    if not chosen:
        return None
    pipeline = hook
    for hub_filter in reversed(chosen):
        pipeline = functools.partial(_run_disconnected, hub_filter, pipeline)
    return pipeline


async def _run_disconnected(
    hub_filter: HubFilter, rest: NextDisconnected, context: HubLifetimeContext, reason: DisconnectReason
) -> None:
    await hub_filter.on_disconnected(context, reason, rest)


def method_pipelines(
    methods: dict[str, HubMethod],
    filters: Sequence[AnyFilter],
    requirements: Callable[[HubMethod], list[Step]],
) -> dict[str, NextInvoke]:
    """Each method's pipeline, by the same key as ``methods``; methods with none are left out."""
    shared = invocation_steps(filters)
    pipelines: dict[str, NextInvoke] = {}
    for key, method in methods.items():
        steps = shared + requirements(method)
        if steps:
            pipelines[key] = build_pipeline(steps, _call_method)
    return pipelines


async def _call_method(invocation: HubInvocationContext) -> Any:
    """The innermost step: the hub method itself (for a stream, the stream it returns)."""
    if invocation.streaming:
        returned = invocation.method(invocation.hub, *invocation.arguments)
        if inspect.isawaitable(returned):
            returned = await returned
        return returned
    return await invocation.method(invocation.hub, *invocation.arguments)
