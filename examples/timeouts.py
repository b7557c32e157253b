"""Deadlines for each message with ``trio.move_on_after`` and ``trio.fail_after``, and what cancellation does.

The endpoint is a pretend slow worker: send it a number of seconds and it
works that long (``trio.sleep`` stands in for a slow query). At most two jobs
run at once on the whole server; the others wait for a free worker.

What it teaches:

* ``move_on_after`` is a soft deadline. When the time is up the job is
  cancelled, the ``with`` block simply ends, and ``scope.cancelled_caught``
  tells the handler so: it answers "gave up" and waits for the next
  message. The deadline covers waiting for a worker as well as working.
* ``fail_after`` is a hard deadline: it raises ``trio.TooSlowError``. Here a
  client that sends nothing for ``idle_timeout`` seconds gets it, and the
  handler turns it into close 1000 with the reason "idle for 10 s".
* What cancellation does to a handler: ``trio.Cancelled`` is raised at the
  next ``await`` inside the job, ``finally`` blocks and ``async with``
  exits run on the way out (so the worker slot is always given back), and
  the cancel scope that asked for it catches it. The handler never catches
  ``Cancelled`` itself. A cancelled task can't send, so the reply comes
  after the ``with`` block, never inside the cancelled code.
* On Ctrl-C the server says goodbye with 1001; a job in progress still ends
  by its deadline, so the deadline also bounds how long shutdown waits.

Run it with ``python examples/timeouts.py``, connect with any WebSocket
client (``python -m websockets ws://127.0.0.1:5000/ws`` is one, installed with
the test extra), send ``0.5``, then ``5``, then wait ten seconds.
"""

from __future__ import annotations

import argparse
import math
import signal
from dataclasses import dataclass
from functools import partial

import trio

import trio_ws

WORK_DEADLINE = 2.0  # seconds one message may take, waiting for a worker included
IDLE_TIMEOUT = 10.0  # seconds a client may stay silent
WORKERS = 2  # jobs that may run at once on the whole server


def timeouts_app(
    workers: trio.Semaphore,
    jobs: Jobs,
    *,
    work_deadline: float = WORK_DEADLINE,
    idle_timeout: float = IDLE_TIMEOUT,
) -> trio_ws.App:
    """The slow worker at ``/ws``, sharing ``workers`` between all connections."""
    app = trio_ws.App()

    @app.websocket("/ws")
    async def worker(ws: trio_ws.WebSocketConnection) -> None:
        while True:
            try:
                with trio.fail_after(idle_timeout):  # hard: raises TooSlowError
                    request = await ws.get_message()
            except trio.TooSlowError:
                await ws.aclose(1000, f"idle for {idle_timeout:g} s")
                return
            except trio_ws.ConnectionClosed:
                return
            seconds = parse_seconds(request)
            if seconds is None:
                await ws.send_message(f"send a number of seconds, such as 0.5 (not {request!r})")
                continue
            with trio.move_on_after(work_deadline) as deadline:  # soft: just ends the block
                await work(seconds, workers, jobs)
            # Outside the cancelled block again, so sending works.
            if deadline.cancelled_caught:
                await ws.send_message(
                    f"gave up: {seconds:g} s of work did not finish within {work_deadline:g} s"
                )
            else:
                await ws.send_message(f"done: {seconds:g} s of work")

    return app


@dataclass
class Jobs:
    """What the jobs did, so you (and the tests) can see that cancelled ones cleaned up."""

    running: int = 0
    finished: int = 0
    cancelled: int = 0


async def work(seconds: float, workers: trio.Semaphore, jobs: Jobs) -> None:
    """Take a worker and work for ``seconds``. If cancelled, the worker is still given back."""
    async with workers:  # waiting here can be cancelled too; then nothing was taken
        jobs.running += 1
        try:
            await trio.sleep(seconds)  # a deadline's Cancelled is raised right here
            jobs.finished += 1
        except trio.Cancelled:
            jobs.cancelled += 1
            raise  # always re-raise: the cancel scope that asked for it catches it
        finally:
            # Runs however the job ends. No await here: in a cancelled task every
            # await is cancelled at once (cleanup that must await needs a shielded scope).
            jobs.running -= 1


def parse_seconds(request: str | bytes) -> float | None:
    """The number of seconds asked for, or ``None`` if the request is not one."""
    try:
        seconds = float(request)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 <= seconds <= 3600 else None


async def main(host: str, port: int) -> None:
    app = timeouts_app(trio.Semaphore(WORKERS), Jobs())
    with trio.open_signal_receiver(signal.SIGINT) as ctrl_c:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(trio_ws.serve, app, host, port))
            print(f"WebSocket at {server.ws_url('/ws')} (send it a number of seconds)", flush=True)
            async for _ in ctrl_c:
                await server.aclose()  # close 1001; jobs in progress end by their deadline
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
