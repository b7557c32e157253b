"""Resource hygiene: after hundreds of connections, polite and abrupt, nothing is left behind.

A small-scale version of ``benchmarks/soak.py``: real sockets, a mix of
clean closes, TCP resets, vanishing without a Close frame and plain HTTP,
then the task count and the open file descriptors must be back at their
baseline, and the memory Python holds must not have grown with the cycles.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from functools import partial

import trio
import trio.testing

import trio_ws

from .helpers import IO_DEADLINE, open_fd_count, task_count
from .raw import CLOSE, TEXT, Peer, client_frame, close_payload


async def _cycle(port: int, kind: str) -> None:
    """One connection's life, ending the way ``kind`` says."""
    peer = await Peer.connect(port)
    if kind == "http":
        await peer.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await peer.read_head()).startswith(b"HTTP/1.1 200 ")
        await peer.aclose()
        return
    await peer.upgrade()
    await peer.send(client_frame(TEXT, b"ping me back"))
    assert await peer.next_frame() == (TEXT, b"ping me back")
    if kind == "close":
        await peer.send(client_frame(CLOSE, close_payload(1000)))
        assert (await peer.next_frame())[0] == CLOSE
    elif kind == "reset":
        peer.reset()
    elif kind == "reset mid-frame":
        await peer.send(client_frame(TEXT, b"x" * 100)[:40])
        peer.reset()
    # "vanish": no Close frame, just the FIN of aclose()
    await peer.aclose()


async def _cycles(port: int, count: int, rng: random.Random, workers: int = 50) -> None:
    """``count`` cycles of random kinds, ``workers`` connections at a time."""
    kinds = ["close", "close", "reset", "reset mid-frame", "vanish", "http"]

    async def worker(cycles: int) -> None:
        for _ in range(cycles):
            await _cycle(port, rng.choice(kinds))

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker, count // workers)


async def test_connect_echo_close_cycles_leave_nothing_behind(nursery: trio.Nursery) -> None:
    """800 cycles (clean closes, resets, vanishing peers, HTTP): tasks and fds return to baseline,
    and the memory Python holds does not grow with the number of cycles."""
    rng = random.Random(4)
    server: trio_ws.Server = await nursery.start(partial(trio_ws.serve, trio_ws.echo_app(), "127.0.0.1", 0))
    await trio.testing.wait_all_tasks_blocked()
    tasks, fds = task_count(), open_fd_count()
    with trio.fail_after(IO_DEADLINE * 4):
        tracemalloc.start()
        try:
            # The first cycles fill caches (trio's, the logging module's, lazy imports), so the
            # memory baseline is taken after them.
            await _cycles(server.port, 300, rng)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            gc.collect()
            before, _ = tracemalloc.get_traced_memory()
            await _cycles(server.port, 500, rng)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert server.statistics().open_websockets == 0
    assert task_count() == tasks
    assert open_fd_count() == fds
    # Keeping even one small object per connection would hold 500 of them (tens of KiB).
    assert after - before < 16 * 1024, f"{after - before} bytes more held after 500 more cycles"
