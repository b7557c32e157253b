"""Group sends through the Redis backplane: sends per second and latency, with a real redis-server.

``python -m benchmarks.backplane`` starts ``redis-server`` on a free port
(or uses ``--redis-url``) and two hub servers in this process, each with
its own ``RedisBackplane`` on one prefix, as two workers would be. A client
on the second worker (over a memory stream) is in group ``room``; the first
worker sends to the group with ``server.clients.group("room").send(...)``,
as a hub method or a background task does:

* **throughput**: ``--sends`` sends by ``--senders`` tasks (16, as hub
  calls of many clients would be), each making its sends one after
  another as fast as it can; sends per second from the first send until
  the client on the other worker has received the last one. Every message
  must arrive once and in each sender's order, or the run fails.
* **latency**: ``--latency-sends`` sends one at a time, each waiting for its
  delivery: p50 and p99 from the send to the receipt on the other worker.
* **spaced**: ``--spaced-sends`` sends a millisecond apart, so that none
  joins another in a batch (as broadcasts one at a time do not): each
  worker's CPU per message when every send is a publish of its own and
  every receipt a read of its own, less what the pacing costs by itself.

Each worker is a process of its own, as in a deployment: this process is
the sending worker, and ``python -m benchmarks.backplane --listener``, which
this process starts, is the listening one. Each process's CPU time per send
is shown, and Redis's own (from ``INFO cpu``), so that the figure per worker
does not depend on how the two share this machine's cores: **sends per
worker CPU-second** is a million over the busier worker's microseconds per
send. The same runs with one worker and no Redis (``InProcessBackplane``,
the listener in this process) give the in-process figures beside them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import trio
import trio.testing

from trio_ws.signalr import Hub, HubServer, RedisBackplane, StreamTransport
from trio_ws.signalr._protocol import JSON
from trio_ws.signalr._protocol.handshake import encode_request
from trio_ws.signalr._protocol.messages import Invocation

from .hubs.run import redis_server

ROOM = "room"


class Room(Hub):
    """Every connection joins ``room`` as it connects."""

    def __init__(self) -> None:
        super().__init__()
        self.joined = trio.Event()

    async def on_connected(self) -> None:
        await self.groups.add(self.context.connection_id, ROOM)
        self.joined.set()


class Listener:
    """A hub client over a memory stream, in ``room``: the sends' numbers and when each arrived."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = JSON.reader(2**30)
        self.received = 0
        self.arrived: dict[int, float] = {}
        self.next: dict[int, int] = {}  # each sender's next number due
        self.last_arrival = 0.0
        self.changed = trio.Event()

    async def run(self) -> None:
        await self.stream.send_all(encode_request("json", 1))
        async for data in self.stream:
            if self.received == 0 and data.startswith(b"{}\x1e"):
                data = data[3:]  # the handshake's answer
            self.reader.receive_data(data)
            while (message := self.reader.next_message()) is not None:
                if isinstance(message, Invocation) and message.target == "Posted":
                    sender, number = message.arguments
                    due = self.next.get(sender, 0)
                    if number != due:
                        raise SystemExit(f"sender {sender}'s send {number} arrived where {due} was due")
                    self.next[sender] = number + 1
                    self.last_arrival = self.arrived[number] = time.monotonic()  # one clock for every process
                    self.received += 1
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        while self.received < count:
            await self.changed.wait()


@asynccontextmanager
async def listening_worker(redis_url: str | None, prefix: str) -> AsyncIterator[tuple[HubServer, Listener]]:
    """A hub server with a listener in ``room`` (over a memory stream), with its own backplane."""
    hub = Room()
    server = (
        HubServer(hub)
        if redis_url is None
        else HubServer(hub, backplane=RedisBackplane(redis_url, prefix=prefix))
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        if isinstance(server.backplane, RedisBackplane):
            await server.backplane.wait_connected()
        client_end, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(partial(server.serve_transport, StreamTransport(server_end, name="Memory")))
        listener = Listener(client_end)
        nursery.start_soon(listener.run)
        await hub.joined.wait()
        yield server, listener
        nursery.cancel_scope.cancel()


class Waiter:
    """Waiting for the listener, wherever it is: ``wait(count)`` gives (its CPU seconds, its last arrival)."""

    def __init__(self, wait: Callable[[int], Awaitable[tuple[float, float]]]) -> None:
        self.wait = wait


async def run_listener(redis_url: str, prefix: str) -> None:
    """``--listener``: the listening worker as a process; asked ``wait N`` on stdin, answers on stdout.

    The answer, once N messages have arrived: ``got <CPU seconds of this process> <last arrival>``.
    """
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with listening_worker(redis_url, prefix) as (_, listener):
        print("ready", flush=True)
        pending = b""
        while True:
            while b"\n" not in pending:
                data = await stdin.receive_some()
                if not data:
                    return
                pending += data
            line, pending = pending.split(b"\n", 1)
            await listener.wait_for(int(line.split()[1]))
            print(f"got {time.process_time()} {listener.last_arrival}", flush=True)


@asynccontextmanager
async def listener_process(redis_url: str, prefix: str) -> AsyncIterator[Waiter]:
    """The listening worker in a process of its own, and a ``Waiter`` that asks it."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.backplane",
        "--listener",
        "--redis-url",
        redis_url,
        "--prefix",
        prefix,
    ]
    process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    lines = LineReader(process.stdout)
    try:
        if await lines.next() != "ready":
            raise SystemExit("the listening worker did not start")

        async def wait(count: int) -> tuple[float, float]:
            assert process.stdin is not None
            await process.stdin.send_all(f"wait {count}\n".encode())
            answer = await lines.next()
            if not answer.startswith("got "):
                raise SystemExit(f"the listening worker failed ({answer or 'it ended'})")
            cpu, arrival = answer.split()[1:]
            return float(cpu), float(arrival)

        yield Waiter(wait)
    finally:
        process.kill()
        await process.wait()


class LineReader:
    """Lines of text from a trio stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.pending = b""

    async def next(self) -> str:
        while b"\n" not in self.pending:
            data = await self.stream.receive_some()
            if not data:
                return ""
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


def redis_cpu_seconds(redis_url: str) -> float:
    """Redis's own CPU seconds so far (``INFO cpu``: ``used_cpu_sys`` plus ``used_cpu_user``)."""
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as redis:
        redis.sendall(b"INFO cpu\r\n")
        data = b""
        while b"used_cpu_user:" not in data or not data.endswith(b"\r\n"):
            data += redis.recv(4096)
    fields = dict(line.split(":", 1) for line in data.decode().splitlines() if ":" in line)
    return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


SPACING = 0.001  # seconds between spaced sends


async def measure(
    redis_url: str | None, sends: int, senders: int, latency_sends: int, spaced_sends: int
) -> dict[str, float]:
    prefix = f"bench:{secrets.token_hex(4)}"
    async with AsyncExitStack() as stack:
        if redis_url is None:  # one worker: the listener in this process, on the sending server
            server, listener = await stack.enter_async_context(listening_worker(None, prefix))

            async def wait_here(count: int) -> tuple[float, float]:
                await listener.wait_for(count)
                return 0.0, listener.last_arrival

            waiter = Waiter(wait_here)
        else:
            waiter = await stack.enter_async_context(listener_process(redis_url, prefix))
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            server = HubServer(Room(), backplane=RedisBackplane(redis_url, prefix=prefix))
            await nursery.start(server.run)
            assert isinstance(server.backplane, RedisBackplane)
            await server.backplane.wait_connected()
        return await _measure(server, waiter, redis_url, sends, senders, latency_sends, spaced_sends)


async def _measure(
    server: HubServer,
    waiter: Waiter,
    redis_url: str | None,
    sends: int,
    senders: int,
    latency_sends: int,
    spaced_sends: int,
) -> dict[str, float]:
    group = server.clients.group(ROOM)
    # Warm up: the first sends pay for imports and caches. Sender 0 sends the numbers the
    # latency run goes on from; the others go on from their own first number.
    for number in range(100):
        await group.send("Posted", 0, number)
    listener_cpu, _ = await waiter.wait(100)
    first = dict.fromkeys(range(1, senders), 0)
    first[0] = 100
    each = sends // senders

    async def sender(name: int) -> None:
        for number in range(first[name], first[name] + each):
            await group.send("Posted", name, number)

    redis_cpu = redis_cpu_seconds(redis_url) if redis_url else 0.0
    cpu = time.process_time()
    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        for name in range(senders):
            nursery.start_soon(sender, name)
    sent = time.monotonic()
    cpu = time.process_time() - cpu
    listener_cpu_after, last = await waiter.wait(100 + each * senders)
    seconds = last - start
    listener_cpu = listener_cpu_after - listener_cpu
    redis_cpu = (redis_cpu_seconds(redis_url) - redis_cpu) if redis_url else 0.0

    latencies = []
    received = 100 + each * senders
    for number in range(100 + each, 100 + each + latency_sends):
        began = time.monotonic()
        await group.send("Posted", 0, number)
        received += 1
        _, arrival = await waiter.wait(received)
        latencies.append(arrival - began)
    latencies.sort()

    # Spaced: what the same loop costs with nothing sent, then with a send in each turn.
    pacing = time.process_time()
    for _ in range(spaced_sends):
        await trio.sleep(SPACING)
    pacing = time.process_time() - pacing
    listener_before, _ = await waiter.wait(received)
    spaced = time.process_time()
    for number in range(100 + each + latency_sends, 100 + each + latency_sends + spaced_sends):
        await group.send("Posted", 0, number)
        await trio.sleep(SPACING)
    spaced = time.process_time() - spaced - pacing
    received += spaced_sends
    listener_after, _ = await waiter.wait(received)

    sends = each * senders
    sender_us = cpu / sends * 1e6
    listener_us = listener_cpu / sends * 1e6
    return {
        "sends_per_s": sends / seconds,
        "sender_sends_per_s": sends / (sent - start),
        "sender_cpu_us": sender_us,
        "listener_cpu_us": listener_us,
        "redis_cpu_us": redis_cpu / sends * 1e6,
        "per_worker_cpu_s": 1e6 / max(sender_us, listener_us),
        "spaced_sender_cpu_us": spaced / spaced_sends * 1e6,
        "spaced_listener_cpu_us": (listener_after - listener_before) / spaced_sends * 1e6,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": latencies[int(0.99 * (len(latencies) - 1))] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sends", type=int, default=20_000, help="sends of the throughput run")
    parser.add_argument("--senders", type=int, default=16, help="tasks sending at once in the throughput run")
    parser.add_argument("--latency-sends", type=int, default=2_000, help="sends of the latency run")
    parser.add_argument(
        "--spaced-sends", type=int, default=1_000, help="sends a millisecond apart, for the CPU per message"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the table shows medians")
    parser.add_argument("--redis-url", help="a Redis to use (default: start redis-server on a free port)")
    parser.add_argument(
        "--listener", action="store_true", help=argparse.SUPPRESS
    )  # the listening worker's process
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listener:
        trio.run(run_listener, args.redis_url, args.prefix)
        return

    def run(redis_url: str | None) -> dict[str, float]:
        rounds = [
            trio.run(measure, redis_url, args.sends, args.senders, args.latency_sends, args.spaced_sends)
            for _ in range(args.rounds)
        ]
        return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}

    if args.redis_url:
        through_redis = run(args.redis_url)
    else:
        with redis_server(None) as url:
            through_redis = run(url)
    in_process = run(None)
    print(
        f"group sends, median of {args.rounds} round(s): {args.sends:,} sends by {args.senders} task(s), "
        f"then {args.latency_sends:,} one at a time, then {args.spaced_sends:,} spaced"
    )
    print(f"{'':<38}{'Redis, 2 workers':>18}{'one process':>14}")
    rows = [
        ("sends/s, first send to last receipt", "sends_per_s", "{:,.0f}"),
        ("sends/s the senders made", "sender_sends_per_s", "{:,.0f}"),
        ("CPU per send: sending worker", "sender_cpu_us", "{:,.1f} us"),
        ("CPU per send: listening worker", "listener_cpu_us", "{:,.1f} us"),
        ("CPU per send: redis-server", "redis_cpu_us", "{:,.1f} us"),
        ("sends per worker CPU-second", "per_worker_cpu_s", "{:,.0f}"),
        ("CPU per spaced send: sending worker", "spaced_sender_cpu_us", "{:,.1f} us"),
        ("CPU per spaced send: listening worker", "spaced_listener_cpu_us", "{:,.1f} us"),
        ("p50 send to receipt, one at a time", "p50_us", "{:,.0f} us"),
        ("p99 send to receipt, one at a time", "p99_us", "{:,.0f} us"),
    ]
    for title, key, form in rows:
        print(f"{title:<38}{form.format(through_redis[key]):>18}{form.format(in_process[key]):>14}")


if __name__ == "__main__":
    main()
