"""Running what a client asks for: calls, streams both ways, cancellation.

One ``Dispatcher`` per hub connection. Client results (the hub calling the
client and awaiting its answer) are ``_hub/results.py``'s: the dispatcher
hands their Completions over. It knows the connection and the server only
as ``_hub/dispatched.py`` names them. The connection's reader hands it each
message in order (``dispatch``); the work those messages ask for runs in
tasks in the connection's nursery, so it ends with the connection::

    HubConnection.run                the reader: applies control messages, queues the rest
    └─ hub connection nursery
       ├─ invoker task               works through the backlog in order; runs plain calls
       │                             itself when they run one at a time (the default)
       ├─ one task per stream        and per call with uploads; per plain call when
       │                             max_parallel_invocations > 1
       └─ former invokers            each still running the call that handed the backlog on

Rules of this module:

* The reader never waits for a hub method. What steers the connection is
  applied the moment it is read, whatever calls are waiting: Acks, Pings,
  Close, Sequence, CancelInvocation and the Completions of client results
  (``_control``). A hub method's reply may be waiting for exactly those (a
  full replay buffer waits for an Ack), so reading them may never depend on
  a reply going out.
* A call takes one of ``max_parallel_invocations`` slots for as long as it
  runs (ASP.NET's default is 1: one call at a time). Work that is not
  applied at once (calls, upload items, error answers) waits in order in a
  backlog that one long-lived task, the invoker, works through. The reader
  stops reading, and a client that floods calls is slowed down through TCP,
  once ``_BACKLOG`` messages wait, unless a reply waits for room in the
  replay buffer: then it reads on (the Ack that makes room is somewhere
  behind the calls) up to ``_BACKLOG_MAX``.
* With one slot, the invoker runs each plain call itself, in its own task:
  a call costs no task, and the replies of pipelined calls can leave in one
  write.
  Whenever something behind the running call need not wait for it, the
  invoker hands the backlog to a new invoker task and ends once its call
  does: when the call gives its slot back to await a client result, or
  when a message that takes no slot (a stream, an upload item, an error
  answer) arrives with nothing ahead of it. So nothing waits longer than
  it did with a task per call. With more slots, each plain call gets a task
  of its own, started in the reader's turn when a slot is free.
* Streams (server-to-client, and calls that receive uploads) take no slot;
  at most ``max_streams`` run at once, and a client asking for more gets an
  error completion.
* Every mistake in a call gets a Completion with ASP.NET's error text, and
  the connection stays open: an unknown method, the wrong number or type of
  arguments, a streaming method called without streaming or the reverse.
  A call without an invocation id (a client's ``send``) gets no answer,
  errors included, as the spec says.
* Messages for ids nobody knows (a StreamItem, a Completion, a
  CancelInvocation) are ignored, as ASP.NET ignores them.
* A hub method's ``HubError`` is its answer, not a failure; any other
  exception is a bug in the hub and is logged with its traceback. A
  filter's ``CallRefused`` is answered with exactly its text.
* A method with filters or requirements runs through its pipeline
  (``_filters.py``), built when the hub server started; one without is
  called directly, so filters cost nothing where there are none.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..._contain import contain
from ..._parking import Slots, parked, wake
from ..._printable import printable
from .._errors import (
    NO_METHOD,
    NOT_STREAMING_STREAMED,
    STREAM_ERROR,
    STREAMING_INVOKED,
    DisconnectReason,
    HubError,
    InvalidData,
    error_text,
    unexpected_error,
)
from .._protocol.messages import (
    Ack,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    Ping,
    Sequence_,
    StreamInvocation,
    StreamItem,
)
from .binding import BindingError
from .call import CallInfo, current_call
from .dispatched import DispatchedConnection
from .filters import CallRefused, HubInvocationContext, NextInvoke
from .methods import as_stream, open_stream
from .results import ClientResults
from .streams import HubStream, StreamEnd

if TYPE_CHECKING:
    from trio.lowlevel import Task

    from .filters import NextInvoke
    from .methods import HubMethod

__all__ = ["Dispatcher"]

logger = logging.getLogger("trio_ws.signalr")

# Messages waiting in the backlog before the reader stops reading (a client pipelining calls)...
_BACKLOG = 16
# ... and at most, while replies wait for an Ack (each is at most ``max_message_size``).
_BACKLOG_MAX = 128


class Dispatcher:
    """Runs one connection's calls and streams, and awaits its client results."""

    def __init__(self, connection: DispatchedConnection) -> None:
        self._connection = connection
        server = connection.server
        self._hub = server.hub
        self._methods = server.methods
        self._pipelines = server.pipelines
        self._options = server.options
        self._slots = Slots(self._options.max_parallel_invocations)
        self._streams: dict[str, trio.CancelScope] = {}  # running server-to-client streams
        self._stream_calls = 0  # streams and calls with uploads, running
        self._uploads: dict[str, trio.MemorySendChannel[Any]] = {}  # client-to-server streams
        self.results = ClientResults(connection)  # the client results it awaits (_hub/results.py)
        # Work waiting its turn, oldest first: made, and the invoker task started, once work
        # first comes (a connection that never calls keeps neither).
        self._backlog: deque[HubMessage] | None = None
        self._one_at_a_time = self._options.max_parallel_invocations == 1  # plain calls run inline
        self._more_work: list[Task] = []  # where the invoker waits for work (trio_ws/_parking.py)
        self._generation = 0  # which invoker has the backlog (a new one after each hand-over)
        self._running: CallInfo | None = None  # the call the invoker runs itself, now
        self._hand_over_now = self._hand_over  # one bound method, not one per call
        self._backlog_shrank: trio.Event | None = None  # the reader waits for room in the backlog
        self._cancelled_early: set[str] | None = None  # streams cancelled while in the backlog

    async def dispatch(self, message: HubMessage) -> None:
        """Act on one message from the client, in the order they came (the reader calls it).

        It never waits for a hub method: control messages are applied at
        once, an upload item (or, with more than one slot, a call) that can
        go on at once goes on, and other work joins the invoker's backlog.
        It waits only while the backlog is full (see the module's rules),
        and takes no trip through the scheduler otherwise: the connection's
        reader takes its own schedule points (``_hub/connection.py``).
        """
        if self._control(message):
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        backlog = self._backlog
        if not backlog:
            if self._start_now(message):
                await trio.lowlevel.checkpoint_if_cancelled()
                return
            if backlog is None:
                backlog = self._backlog = deque([message])
                self._connection.start_task(self._work, self._generation)
            else:
                backlog.append(message)
                if self._running is not None and self._bind_plain(message) is None:
                    self._hand_over()  # it need not wait for the call the invoker is running
                else:
                    wake(self._more_work)
        else:
            backlog.append(message)
        while self._backlog_full():
            self._backlog_shrank = trio.Event()
            await self._backlog_shrank.wait()
        await trio.lowlevel.checkpoint_if_cancelled()

    def _backlog_full(self) -> bool:
        length = len(self._backlog or ())
        if length < _BACKLOG:
            return False
        if length >= _BACKLOG_MAX:
            return True
        replay = self._connection.sender.replay
        return replay is None or replay.has_room()

    @property
    def backlogged(self) -> bool:
        """Whether work waits in the backlog: its replies will follow the one going out now."""
        return bool(self._backlog)

    def replies_wait_for_ack(self) -> None:
        """A reply waits for room in the replay buffer: a reader paused by the backlog reads on."""
        if self._backlog_shrank is not None:
            self._backlog_shrank.set()

    async def _work(self, generation: int) -> None:
        """The invoker: work through the backlog, in order, and wait for more; with one slot, run
        each plain call here. Ends once its call has handed the backlog to a new invoker."""
        backlog = self._backlog
        assert backlog is not None
        while True:
            while not backlog:
                await trio.lowlevel.wait_task_rescheduled(parked(self._more_work))
            message = backlog[0]
            run = self._run_here(message) if self._one_at_a_time else None
            if run is None:
                run = await self._act(message)
            backlog.popleft()
            if self._backlog_shrank is not None:
                self._backlog_shrank.set()
            if run is not None:
                await run
                if self._generation != generation:
                    return  # the backlog is the next invoker's
                self._running = None

    def _hand_over(self) -> None:
        """Let the backlog go on in a new invoker while this one's call runs to its end."""
        running = self._running
        if running is not None:
            running.on_early_release = None  # handed over once is enough
            self._running = None
        self._generation += 1
        self._connection.start_task(self._work, self._generation)

    def _control(self, message: HubMessage) -> bool:
        """Apply ``message`` now if it steers the connection; whether it did."""
        match message:
            case CancelInvocation():
                scope = self._streams.get(message.invocation_id)
                if scope is not None:
                    scope.cancel()
                elif any(
                    isinstance(waiting, StreamInvocation) and waiting.invocation_id == message.invocation_id
                    for waiting in self._backlog or ()
                ):
                    if self._cancelled_early is None:
                        self._cancelled_early = set()
                    self._cancelled_early.add(message.invocation_id)  # cancelled once it starts
                else:
                    logger.debug(
                        "%s: CancelInvocation for unknown id %s",
                        self._connection,
                        printable(message.invocation_id),
                    )
            case Completion() if message.invocation_id in self.results:
                self.results.complete(message)
            case Ping():
                self._connection.arm_client_timeout()
            case Close():
                self._connection.close(DisconnectReason.CLIENT_CLOSED, message.error)
            case Ack():
                replay = self._connection.sender.replay
                if replay is not None:  # otherwise stateful reconnect is off: nothing is kept
                    replay.ack(message.sequence_id)
            case Sequence_():
                pass  # the reader acts on it (Replay.accept); without stateful reconnect, nothing to do
            case _:
                return False
        return True

    def _start_now(self, message: HubMessage) -> bool:
        """Start a plain call, or hand an upload its item, in the reader's turn if nothing needs
        waiting for; whether it did."""
        if isinstance(message, StreamItem):
            channel = self._uploads.get(message.invocation_id)
            if channel is None:
                return False  # the backlog logs it
            try:
                channel.send_nowait(message.item)
            except trio.WouldBlock:
                return False
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._uploads.pop(message.invocation_id, None)
            return True
        if self._one_at_a_time:
            return False  # the invoker runs plain calls
        plain = self._bind_plain(message)
        if plain is None:
            return False  # the backlog starts it, or answers it
        method, bound = plain
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            return False
        assert isinstance(message, Invocation)
        call = CallInfo(self._connection, slot=self._slots, method=method.name)
        self._connection.start_task(
            self._run_call,
            call,
            method,
            message.target,
            message.invocation_id,
            bound,
            (),
            self._pipelines.get(message.target.lower()),
        )
        return True

    def _bind_plain(self, message: HubMessage) -> tuple[HubMethod, list[Any]] | None:
        """The method and arguments of a plain call (one that takes a slot); ``None`` for anything
        else, a call that cannot be made included."""
        if not isinstance(message, Invocation) or message.stream_ids:
            return None
        method = self._methods.get(message.target.lower())
        if method is None or method.streams_result or method.stream_positions:
            return None
        try:
            return method, method.bind(message.arguments)
        except BindingError:
            return None

    def _run_here(self, message: HubMessage) -> Coroutine[Any, Any, None] | None:
        """A plain call with its slot free, ready for the invoker to run itself; ``None`` if
        ``message`` needs the long way (``_act``)."""
        plain = self._bind_plain(message)
        if plain is None:
            return None
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            return None
        assert isinstance(message, Invocation)
        method, bound = plain
        target = message.target
        call = self._running = CallInfo(
            self._connection, slot=self._slots, method=method.name, on_early_release=self._hand_over_now
        )
        pipeline = self._pipelines.get(target.lower())
        return self._run_call(call, method, target, message.invocation_id, bound, (), pipeline)

    async def _act(self, message: HubMessage) -> Coroutine[Any, Any, None] | None:
        """Do the work ``message`` asks for, waiting as long as it takes (the invoker's); a plain
        call for the invoker to run itself once ``message`` has left the backlog."""
        match message:
            case Invocation() | StreamInvocation():
                return await self._start(message)
            case StreamItem():
                await self._upload_item(message)
            case Completion():
                await self._completion(message)
        return None

    # -- calls and streams from the client ---------------------------------------------------

    async def _answer_error(self, invocation_id: str | None, text: str) -> None:
        if invocation_id is not None:
            await self._connection.send_message(Completion.with_error(invocation_id, text))

    async def _start(self, message: Invocation | StreamInvocation) -> Coroutine[Any, Any, None] | None:
        target, invocation_id = message.target, message.invocation_id
        streaming = isinstance(message, StreamInvocation)
        key = target.lower()
        method = self._methods.get(key)
        if method is None:
            logger.debug("%s: unknown hub method %s", self._connection, printable(target))
            await self._answer_error(
                invocation_id,
                NO_METHOD.format(target),
            )
            return None
        try:
            bound = method.bind(message.arguments)
        except BindingError as exc:
            logger.debug(
                "%s: bad arguments for %s: %s", self._connection, printable(target), printable(str(exc))
            )
            await self._answer_error(
                invocation_id,
                error_text(
                    f"Failed to invoke '{target}' due to an error on the server.",
                    InvalidData(str(exc)),
                    detailed=self._options.detailed_errors,
                ),
            )
            return None
        if method.streams_result and not streaming:
            await self._answer_error(
                invocation_id,
                STREAMING_INVOKED.format(target),
            )
            return None
        if streaming and not method.streams_result:
            await self._answer_error(
                invocation_id,
                NOT_STREAMING_STREAMED.format(target),
            )
            return None
        unexpected = f"An unexpected error occurred invoking '{target}' on the server."
        positions = method.stream_positions
        if len(message.stream_ids) != len(positions):
            problem = HubError(
                f"Client sent {len(message.stream_ids)} stream(s), Hub method expects {len(positions)}."
            )
            await self._answer_error(invocation_id, error_text(unexpected, problem, detailed=True))
            return None
        if not (streaming or positions):
            try:
                self._slots.acquire_nowait()
            except trio.WouldBlock:
                await self._slots.acquire()  # the backlog waits here while every slot is busy
            pipeline = self._pipelines.get(key)
            if self._one_at_a_time:
                call = CallInfo(
                    self._connection,
                    slot=self._slots,
                    method=method.name,
                    on_early_release=self._hand_over_now,
                )
                self._running = call
                return self._run_call(call, method, target, invocation_id, bound, (), pipeline)
            call = CallInfo(self._connection, slot=self._slots, method=method.name)
            self._connection.start_task(
                self._run_call, call, method, target, invocation_id, bound, (), pipeline
            )
            return None
        refusal = self._refuse_stream(message)
        if refusal is not None:
            await self._answer_error(invocation_id, error_text(unexpected, refusal, detailed=True))
            return None
        for position, stream_id, parameter in zip(
            positions, message.stream_ids, method.stream_parameters, strict=True
        ):
            send, receive = trio.open_memory_channel[Any](self._options.stream_buffer_capacity)
            self._uploads[stream_id] = send
            bound[position] = HubStream(stream_id, receive, parameter.convert)
        self._stream_calls += 1
        call = CallInfo(self._connection, method=method.name)
        pipeline = self._pipelines.get(key)
        if streaming:
            assert invocation_id is not None
            scope = self._streams[invocation_id] = trio.CancelScope()
            stream_ids = message.stream_ids
            if self._cancelled_early and invocation_id in self._cancelled_early:
                self._cancelled_early.discard(invocation_id)
                scope.cancel()
            self._connection.start_task(
                self._run_stream, call, method, target, invocation_id, bound, scope, stream_ids, pipeline
            )
        else:
            self._connection.start_task(
                self._run_call, call, method, target, invocation_id, bound, message.stream_ids, pipeline
            )
        return None

    def _refuse_stream(self, message: Invocation | StreamInvocation) -> HubError | None:
        if self._stream_calls >= self._options.max_streams:
            return HubError(
                f"This connection already runs {self._stream_calls} streams, the most the server allows."
            )
        if isinstance(message, StreamInvocation) and message.invocation_id in self._streams:
            return HubError(f"Invocation ID '{message.invocation_id}' is already in use.")
        for stream_id in message.stream_ids:
            if stream_id in self._uploads or message.stream_ids.count(stream_id) > 1:
                return HubError(f"Stream ID '{stream_id}' is already in use.")
        return None

    def _finish_streams(self, stream_ids: Sequence[str], *, counted: bool) -> None:
        """The call is over: it no longer counts against max_streams, and its uploads are unwanted."""
        if counted:
            self._stream_calls -= 1
        for stream_id in stream_ids:
            channel = self._uploads.pop(stream_id, None)
            if channel is not None:
                channel.close()

    def _invocation(
        self, method: HubMethod, target: str, invocation_id: str | None, bound: list[Any], streaming: bool
    ) -> HubInvocationContext:
        context = self._connection.context
        return HubInvocationContext(
            self._hub, context, method.function, method.name, bound, invocation_id, streaming, target
        )

    def _error(self, prefix: str, exc: BaseException) -> str:
        """The caller's error text: a refusal's own, or ``prefix`` with what the caller may see."""
        if isinstance(exc, CallRefused):
            return exc.text
        return error_text(prefix, exc, detailed=self._options.detailed_errors)

    def _failed(self, target: str, exc: BaseException) -> BaseException:
        """What ``exc`` from hub code answers the call with, logged; a stop (``_contain.py``) is raised."""
        if isinstance(exc, CallRefused):
            text = printable(exc.text)
            logger.debug("%s: %s refused (%s): %s", self._connection, printable(target), exc.outcome, text)
            return exc
        if isinstance(exc, HubError):
            logger.debug("%s: %s answered with %s", self._connection, printable(target), printable(str(exc)))
            return exc
        failure = contain(
            exc, logger, "hub method %s failed on connection %s", printable(target), self._connection
        )
        return exc if failure is None else failure

    async def _run_call(
        self,
        call: CallInfo,
        method: HubMethod,
        target: str,
        invocation_id: str | None,
        bound: list[Any],
        stream_ids: Sequence[str],
        pipeline: NextInvoke | None,
    ) -> None:
        token = current_call.set(call)  # reset at the end: the invoker's next call is another
        try:
            try:
                if pipeline is None:
                    result = await method.function(self._hub, *bound)
                else:
                    result = await pipeline(self._invocation(method, target, invocation_id, bound, False))
                if invocation_id is not None:
                    # ASP.NET answers a void method with "result": null too, and clients expect it.
                    # A result with no wire form fails here, while encoding, like a raised error.
                    await self._connection.send_message(Completion.with_result(invocation_id, result))
            except BaseException as exc:
                failure = self._failed(target, exc)
                text = self._error(unexpected_error(target), failure)
                await self._answer_error(invocation_id, text)
        finally:
            current_call.reset(token)
            call.end()
            self._finish_streams(stream_ids, counted=bool(stream_ids))

    async def _run_stream(
        self,
        call: CallInfo,
        method: HubMethod,
        target: str,
        invocation_id: str,
        bound: list[Any],
        scope: trio.CancelScope,
        stream_ids: Sequence[str],
        pipeline: NextInvoke | None,
    ) -> None:
        current_call.set(call)
        error: str | None = None
        with scope:  # CancelInvocation cancels this scope; the Completion below still goes out
            try:
                try:
                    if pipeline is None:
                        items = await open_stream(method, self._hub, bound)
                    else:
                        returned = await pipeline(
                            self._invocation(method, target, invocation_id, bound, True)
                        )
                        items = as_stream(method, returned)
                except BaseException as exc:
                    failure = self._failed(target, exc)
                    error = self._error(unexpected_error(target), failure)
                else:
                    try:
                        try:
                            async for item in items:
                                await self._connection.send_message(StreamItem(invocation_id, item))
                        finally:
                            # An async generator must be closed in the task that ran it (trio's rule).
                            aclose = getattr(items, "aclose", None)
                            if aclose is not None:
                                await aclose()
                    except BaseException as exc:
                        failure = self._failed(target, exc)
                        error = self._error(STREAM_ERROR, failure)
            finally:
                del self._streams[invocation_id]
                self._finish_streams(stream_ids, counted=True)
        if scope.cancelled_caught:
            logger.debug("%s: stream %s cancelled by the client", self._connection, printable(invocation_id))
        await self._connection.send_message(Completion(invocation_id, error=error))

    # -- uploads ---------------------------------------------------------------------------

    async def _upload_item(self, message: StreamItem) -> None:
        channel = self._uploads.get(message.invocation_id)
        if channel is None:
            logger.debug(
                "%s: StreamItem for unknown stream %s", self._connection, printable(message.invocation_id)
            )
            return
        try:
            await channel.send(message.item)  # waits while the buffer is full: reading pauses
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._uploads.pop(message.invocation_id, None)

    async def _completion(self, message: Completion) -> None:
        channel = self._uploads.pop(message.invocation_id, None)
        if channel is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await channel.send(StreamEnd(message.error))
            channel.close()
            return
        if self.results.complete(message):
            return
        logger.debug("%s: Completion for unknown id %s", self._connection, printable(message.invocation_id))
