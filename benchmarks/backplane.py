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

The same runs with one worker and no Redis (``InProcessBackplane``) give
the in-process figures beside them. Both workers share this process and its
CPU, so the figures per worker are conservative: in a deployment each
worker has its own. The process's CPU time per send is shown too.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
                    self.arrived[number] = time.perf_counter()
                    self.received += 1
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        while self.received < count:
            await self.changed.wait()


@asynccontextmanager
async def workers(redis_url: str | None) -> AsyncIterator[tuple[HubServer, Listener]]:
    """The sending hub server, and a listener on the other one (the same one without Redis)."""
    prefix = f"bench:{secrets.token_hex(4)}"
    listening = Room()
    if redis_url is None:
        servers = [HubServer(listening)]
    else:
        backplanes = [RedisBackplane(redis_url, prefix=prefix) for _ in range(2)]
        servers = [HubServer(Room(), backplane=backplanes[0]), HubServer(listening, backplane=backplanes[1])]
    async with trio.open_nursery() as nursery:
        for server in servers:
            await nursery.start(server.run)
        for server in servers:
            if isinstance(server.backplane, RedisBackplane):
                await server.backplane.wait_connected()
        client_end, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(partial(servers[-1].serve_transport, StreamTransport(server_end, name="Memory")))
        listener = Listener(client_end)
        nursery.start_soon(listener.run)
        await listening.joined.wait()
        yield servers[0], listener
        nursery.cancel_scope.cancel()


async def measure(redis_url: str | None, sends: int, senders: int, latency_sends: int) -> dict[str, float]:
    async with workers(redis_url) as (server, listener):
        group = server.clients.group(ROOM)
        # Warm up: the first sends pay for imports and caches. Sender 0 sends the numbers the
        # listener records arrival times for; the others go on from their own first number.
        for number in range(100):
            await group.send("Posted", 0, number)
        await listener.wait_for(100)
        first = dict.fromkeys(range(1, senders), 0)
        first[0] = 100
        each = sends // senders

        async def sender(name: int) -> None:
            for number in range(first[name], first[name] + each):
                await group.send("Posted", name, number)

        cpu = time.process_time()
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for name in range(senders):
                nursery.start_soon(sender, name)
        sent = time.perf_counter()
        await listener.wait_for(100 + each * senders)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu

        latencies = []
        for number in range(100 + each, 100 + each + latency_sends):
            began = time.perf_counter()
            await group.send("Posted", 0, number)
            await listener.wait_for(listener.received + 1)
            latencies.append(listener.arrived[number] - began)
        latencies.sort()
    sends = each * senders
    return {
        "sends_per_s": sends / seconds,
        "sender_sends_per_s": sends / (sent - start),
        "cpu_us_per_send": cpu / sends * 1e6,
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
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the table shows medians")
    parser.add_argument("--redis-url", help="a Redis to use (default: start redis-server on a free port)")
    args = parser.parse_args()

    def run(redis_url: str | None) -> dict[str, float]:
        rounds = [
            trio.run(measure, redis_url, args.sends, args.senders, args.latency_sends)
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
        f"then {args.latency_sends:,} one at a time"
    )
    print(f"{'':<38}{'Redis, 2 workers':>18}{'one process':>14}")
    rows = [
        ("sends/s, first send to last receipt", "sends_per_s", "{:,.0f}"),
        ("sends/s the senders made", "sender_sends_per_s", "{:,.0f}"),
        ("process CPU per send", "cpu_us_per_send", "{:,.1f} us"),
        ("p50 send to receipt, one at a time", "p50_us", "{:,.0f} us"),
        ("p99 send to receipt, one at a time", "p99_us", "{:,.0f} us"),
    ]
    for title, key, form in rows:
        print(f"{title:<38}{form.format(through_redis[key]):>18}{form.format(in_process[key]):>14}")


if __name__ == "__main__":
    main()
