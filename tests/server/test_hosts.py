"""Many hosts: two trio_ws servers in network namespaces of their own, sharing one Redis.

Each "host" is a network namespace made by the test (``ip netns add``), joined
to this one by a veth pair on a /30 of its own; Redis listens on this side of
both pairs, and each host runs the conformance hub as a user would (``python
-m trio_ws examples.signalr.testhub:app --backplane redis://...``) on its own
address. The test's clients, here, reach both hosts: WebSocket clients on
each, and a Long Polling client whose requests go to the host that does not
hold its connection. Everything made is removed after. Without the rights
to make namespaces (not root, no ``CAP_NET_ADMIN``) the test is skipped and
says why, unless ``TRIO_WS_REQUIRE_NETNS`` is set.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass

import pytest
import trio

from ..processes import STARTUP_DEADLINE, read_output_until
from ..signalr.helpers import open_hub_websocket
from ..signalr.http_helpers import HttpHubClient
from ..signalr.redis_helpers import free_port, redis_binary
from .test_scale_out import _poll_call, _poll_until, received

DEADLINE = 30


@dataclass
class Host:
    """One server in a namespace of its own: its namespace, its address, its port, its process."""

    namespace: str
    address: str
    port: int
    proc: subprocess.Popen[str]


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("TRIO_WS_REQUIRE_NETNS"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def namespace(name: str, subnet: int) -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: (this side's address, its address)."""
    if shutil.which("ip") is None:
        _skip_or_fail("the ip command (iproute2) is not installed")
    outside, inside = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
    veth = name[-9:]  # interface names are at most 15 characters
    try:
        _run("ip", "netns", "add", name)
    except subprocess.CalledProcessError as exc:
        _skip_or_fail(f"cannot make a network namespace ({exc.stderr.strip()}): run as root")
    try:
        _run("ip", "link", "add", f"{veth}o", "type", "veth", "peer", "name", f"{veth}i")
        _run("ip", "link", "set", f"{veth}i", "netns", name)
        _run("ip", "addr", "add", f"{outside}/30", "dev", f"{veth}o")
        _run("ip", "link", "set", f"{veth}o", "up")
        _run("ip", "netns", "exec", name, "ip", "addr", "add", f"{inside}/30", "dev", f"{veth}i")
        _run("ip", "netns", "exec", name, "ip", "link", "set", f"{veth}i", "up")
        _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield outside, inside
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)  # its end of the pair goes too
        subprocess.run(["ip", "link", "del", f"{veth}o"], capture_output=True)


@contextmanager
def redis_on(addresses: list[str]) -> Iterator[int]:
    """A private redis-server listening on ``addresses`` (and loopback); its port."""
    port = free_port()
    directory = tempfile.mkdtemp(prefix="trio-ws-redis-")
    command = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", *addresses]
    command += ["--protected-mode", "no", "--dir", directory, "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
            time.sleep(0.01)  # a subprocess starting: nothing to wait on but its port
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def host(name: str, address: str, backplane: str) -> Iterator[Host]:
    """The conformance hub served in namespace ``name`` on ``address``, on the backplane."""
    command = ["ip", "netns", "exec", name, sys.executable, "-m", "trio_ws"]
    command += ["examples.signalr.testhub:app", "--host", address, "--port", "0", "--backplane", backplane]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = read_output_until(proc, lambda text: "Press Ctrl-C" in text)
        found = re.search(r"listening on http://[^:/]+:(\d+)/", banner)
        if found is None:
            proc.kill()
            _, stderr = proc.communicate(timeout=10)
            raise AssertionError(f"unexpected banner {banner!r}; stderr:\n{stderr}")
        yield Host(name, address, int(found.group(1)), proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=STARTUP_DEADLINE)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
    subnets = random.sample(range(1, 250), 2)
    with ExitStack() as stack:
        (out_a, in_a) = stack.enter_context(namespace(f"trio-ws-{tag}a", subnets[0]))
        (out_b, in_b) = stack.enter_context(namespace(f"trio-ws-{tag}b", subnets[1]))
        port = stack.enter_context(redis_on([out_a, out_b]))
        a = stack.enter_context(host(f"trio-ws-{tag}a", in_a, f"redis://{out_a}:{port}/0"))
        b = stack.enter_context(host(f"trio-ws-{tag}b", in_b, f"redis://{out_b}:{port}/0"))
        yield a, b


async def test_two_hosts_in_network_namespaces_share_one_redis() -> None:
    """Two hosts (network namespaces) serving the conformance hub on one Redis: WebSocket clients on
    each; GroupCount agrees on both; a group send and a broadcast reach the clients of both; a
    Long Polling client opened on B and then served only through A (relayed across hosts) works."""
    with two_hosts() as (a, b), trio.fail_after(DEADLINE):
        async with AsyncExitStack() as stack:
            clients = []
            for where in (a, b, a, b):
                url = f"ws://{where.address}:{where.port}/testhub"
                clients.append(await stack.enter_async_context(open_hub_websocket(url)))
            assert len({await client.call("WorkerId") for client in clients}) == 2
            for client in clients:
                await client.call("JoinGroup", "hosts")
            for client in clients:
                assert await client.call("GroupCount", "hosts") == 4

            target = a

            async def connect() -> trio.abc.Stream:
                return await trio.open_tcp_stream(target.address, target.port)

            polling = HttpHubClient(connect, "/testhub")
            await polling.negotiate()  # reserved from A
            target = b
            first = await polling.poll()  # opened on B
            assert (first.status, first.body) == (200, b"")
            target = a  # from now on every request reaches A, which relays it to B
            assert (await polling.post(b'{"protocol":"json","version":1}\x1e')).status == 200
            assert (await polling.poll()).body == b"{}\x1e"
            assert await _poll_call(polling, "Echo", "across hosts") == "across hosts"
            await _poll_call(polling, "JoinGroup", "hosts")
            sender_url = f"ws://{b.address}:{b.port}/testhub"
            sender = await stack.enter_async_context(open_hub_websocket(sender_url))
            await sender.call("SendToGroup", "hosts", "to both hosts")
            await sender.call("Broadcast", "to all")
            for client in clients:
                said = await received(client, {"GroupMessage", "Broadcast"})
                assert said == {"GroupMessage": ["hosts", "to both hosts"], "Broadcast": ["to all"]}
            said = await _poll_until(polling, {"GroupMessage", "Broadcast"})
            assert said == {"GroupMessage": ["hosts", "to both hosts"], "Broadcast": ["to all"]}
            assert (await polling.request("DELETE")).status == 202
