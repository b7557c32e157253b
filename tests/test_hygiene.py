"""Resource hygiene: after hundreds of connections, polite and abrupt, nothing is left behind.

A small-scale version of ``benchmarks/soak.py``: real sockets, a mix of
clean closes, TCP resets, vanishing without a Close frame and plain HTTP,
then the task count and the open file descriptors must be back at their
baseline, and the memory Python holds must not have grown with the cycles.
"""

from __future__ import annotations

import gc
import random
import socket
import struct
import tracemalloc
from functools import partial

import trio
import trio.testing

import trio_ws

from .helpers import IO_DEADLINE, client_frame, open_fd_count, task_count, upgrade_request


async def _read_until(stream: trio.SocketStream, buffer: bytearray, marker: bytes) -> bytes:
    while marker not in buffer:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}")
        buffer += chunk
    end = buffer.index(marker) + len(marker)
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


async def _read_frame(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    """One unmasked server frame with a payload under 126 bytes: (opcode, payload)."""
    while len(buffer) < 2 or len(buffer) < 2 + (buffer[1] & 0x7F):
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise AssertionError("connection closed mid-frame")
        buffer += chunk
    opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
    payload = bytes(buffer[2 : 2 + length])
    del buffer[: 2 + length]
    return opcode, payload


def _reset(stream: trio.SocketStream) -> None:
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _cycle(port: int, kind: str) -> None:
    """One connection's life, ending the way ``kind`` says."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buffer = bytearray()
    if kind == "http":
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _read_until(stream, buffer, b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        await stream.aclose()
        return
    await stream.send_all(upgrade_request())
    assert (await _read_until(stream, buffer, b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
    await stream.send_all(client_frame(0x1, b"ping me back"))
    assert await _read_frame(stream, buffer) == (0x1, b"ping me back")
    if kind == "close":
        await stream.send_all(client_frame(0x8, struct.pack("!H", 1000)))
        assert (await _read_frame(stream, buffer))[0] == 0x8
    elif kind == "reset":
        _reset(stream)
    elif kind == "reset mid-frame":
        await stream.send_all(client_frame(0x1, b"x" * 100)[:40])
        _reset(stream)
    # "vanish": no Close frame, just the FIN of aclose()
    await stream.aclose()


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
