"""Test helpers: servers to test against, an in-memory listener, log checks and the task tree.

Raw clients (hand-built frames, hand-written requests, the wsproto client) are in ``tests/raw.py``.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import trio
import trio.testing

import trio_ws
import trio_ws.testing
from trio_ws.testing import MemoryListener as MemoryListener

# The deadline for real I/O is raw.py's (its clients use it); raw clients, frames and handshakes
# live there too, and stay importable from here for the tests of the WebSocket core that import
# them so.
from .raw import IO_DEADLINE as IO_DEADLINE
from .raw import RawClient as RawClient
from .raw import client_frame as client_frame
from .raw import open_raw_websocket as open_raw_websocket
from .raw import upgrade_request as upgrade_request


@contextmanager
def trio_in_thread(main: Callable[[Callable[[Any], None], trio.Event], Awaitable[None]]) -> Iterator[Any]:
    """Run ``main(ready, stop)`` under ``trio.run`` in a thread of its own, for clients that are
    not trio (asyncio, threads, browsers).

    ``main`` calls ``ready(value)`` once its servers listen, and must return soon after ``stop``
    is set. Yields that value; at the end sets ``stop`` and joins the thread. An exception
    raised before ``ready`` fails the test with it.
    """
    reported: queue.Queue[tuple[Any, trio.lowlevel.TrioToken] | BaseException] = queue.Queue()
    stop = trio.Event()

    async def run_main() -> None:
        token = trio.lowlevel.current_trio_token()
        await main(lambda value: reported.put((value, token)), stop)

    def run() -> None:
        try:
            trio.run(run_main)
        except BaseException as exc:  # handed to the test, which fails with it
            reported.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started = reported.get(timeout=30)
    if isinstance(started, BaseException):
        raise started
    value, token = started
    try:
        yield value
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(30)
        assert not thread.is_alive(), "the server thread did not stop"


async def start_server(nursery: trio.Nursery, app: trio_ws.App, **options: object) -> trio_ws.Server:
    """``app`` on 127.0.0.1, port 0, with ``options`` given to :class:`trio_ws.Options`."""
    return await trio_ws.testing.start_server(nursery, app, options=trio_ws.Options(**options))  # type: ignore[arg-type]


async def start_memory_server(
    nursery: trio.Nursery, app: trio_ws.App, listener: MemoryListener, **options: object
) -> trio_ws.Server:
    """``app`` served on an in-memory listener, for tests that control the clock."""
    server: trio_ws.Server = await nursery.start(
        partial(trio_ws.serve_listeners, app, [listener], options=trio_ws.Options(**options))  # type: ignore[arg-type]
    )
    return server


class OutOfFilesListener(MemoryListener):
    """A memory listener whose next ``failures`` accepts fail as if the process had no free fds."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def accept(self) -> trio.abc.Stream:
        stream = await super().accept()
        if self.failures:
            self.failures -= 1
            await stream.aclose()
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return stream


def warnings_logged(records: Iterable[logging.LogRecord]) -> list[str]:
    """The messages of records at WARNING or above: a peer's doing must leave this empty."""
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING]


def alarms_logged(records: Iterable[logging.LogRecord]) -> list[str]:
    """Records at WARNING or above, or with a traceback at any level: a peer's doing leaves none."""
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING or r.exc_info is not None]


def task_count() -> int:
    """How many trio tasks exist right now, counted over the whole task tree."""

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return count(trio.lowlevel.current_root_task())  # type: ignore[arg-type]


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def close_of(error: trio_ws.ConnectionClosed) -> tuple[int, str | None]:
    """The close code and reason that ``error`` reports."""
    assert error.reason is not None, error
    return error.reason.code, error.reason.reason
