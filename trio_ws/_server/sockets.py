"""Several worker processes on one port: the sockets the supervisor holds and the ones workers listen on.

Two ways to share a port, chosen by ``sharing_mode()``:

* ``REUSE_PORT`` (Linux): every worker opens its own listening socket on the
  port with ``SO_REUSEPORT``, and the kernel spreads new connections evenly
  over them. The supervisor binds the port too (with ``SO_REUSEPORT``) but
  never listens, which reserves it: a worker that restarts finds it free,
  and port 0 becomes one real port every worker can bind. The kernel sends
  no connection to a socket that does not listen.
* ``INHERIT`` (other POSIX systems, where ``SO_REUSEPORT`` either does not
  exist or does not spread connections, as on macOS): the supervisor opens
  the listening sockets, and every worker inherits them and accepts on
  them. Whichever worker's accept comes first takes the connection, so a
  busy worker takes fewer; a worker that dies loses nothing queued.

Windows has neither ``fork`` semantics for sockets nor ``SO_REUSEPORT``:
several workers are refused there (``WorkersUnsupported``).

Rules of this module:

* Plain ``socket`` calls, no trio: the supervisor makes these before any
  worker starts, and a worker makes its own before ``trio.run``'s server
  accepts on them (``trio.socket.from_stdlib_socket``).
* An address the host resolves to is bound as ``open_tcp_listeners`` binds
  it (``SO_REUSEADDR``, IPv6 only on IPv6 sockets); port 0 keeps the first
  address only, as ``serve()`` does, so there is one port.
* A port already in use is refused (``EADDRINUSE``), even by another
  program's ``SO_REUSEPORT`` sockets, which Linux would otherwise let us
  join: the supervisor binds each address once without the option first.
"""

from __future__ import annotations

import enum
import socket
import sys

__all__ = [
    "BACKLOG",
    "Address",
    "SharingMode",
    "WorkersUnsupported",
    "addresses",
    "listen_on",
    "reserve",
    "sharing_mode",
]

BACKLOG = 65535  # as trio's default: the kernel caps it (net.core.somaxconn)

Address = tuple[int, tuple[object, ...]]
"""A socket family and the address bound, as ``getsockname()`` gives it."""


class WorkersUnsupported(OSError):
    """This system cannot run several workers on one port; the message says what to do instead."""


class SharingMode(enum.Enum):
    """How the workers share the port."""

    REUSE_PORT = "SO_REUSEPORT"
    INHERIT = "inherited sockets"


def sharing_mode(reuse_port: bool | None = None) -> SharingMode:
    """``REUSE_PORT`` where it spreads connections (Linux), else ``INHERIT``; ``reuse_port`` forces one.

    Raises:
        WorkersUnsupported: on Windows, or ``reuse_port=True`` where there is no ``SO_REUSEPORT``.
    """
    if sys.platform == "win32":
        raise WorkersUnsupported(
            "several workers need a POSIX system (Linux, macOS, BSD); on Windows run one "
            "process per port behind a load balancer"
        )
    has_it = hasattr(socket, "SO_REUSEPORT")
    if reuse_port is None:
        reuse_port = has_it and sys.platform.startswith("linux")
    if reuse_port and not has_it:
        raise WorkersUnsupported("this system has no SO_REUSEPORT; let the workers inherit the sockets")
    return SharingMode.REUSE_PORT if reuse_port else SharingMode.INHERIT


def reserve(host: str | None, port: int, mode: SharingMode) -> list[socket.socket]:
    """The supervisor's sockets: bound (``REUSE_PORT``: not listening) or listening (``INHERIT``).

    Raises:
        OSError: the port could not be bound (in use by another program, say).
    """
    sockets: list[socket.socket] = []
    try:
        for family, wanted in _resolve(host, port):
            sockaddr = wanted
            if mode is SharingMode.REUSE_PORT:
                # First without SO_REUSEPORT: a port another program holds, even with
                # SO_REUSEPORT (another supervisor's workers), must be refused, not shared.
                with _bound(family, wanted, reuse_port=False) as probe:
                    sockaddr = tuple(probe.getsockname())
            sock = _bound(family, sockaddr, reuse_port=mode is SharingMode.REUSE_PORT)
            sockets.append(sock)
            if mode is SharingMode.INHERIT:
                sock.listen(BACKLOG)
            if port == 0:
                break  # one address, one real port
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def addresses(sockets: list[socket.socket]) -> list[Address]:
    """Where the supervisor's sockets are bound, for workers to bind the same."""
    return [(sock.family, tuple(sock.getsockname())) for sock in sockets]


def listen_on(bound: list[Address]) -> list[socket.socket]:
    """A worker's own listening sockets with ``SO_REUSEPORT``, on the addresses the supervisor reserved.

    Raises:
        OSError: an address could not be bound.
    """
    sockets: list[socket.socket] = []
    try:
        for family, sockaddr in bound:
            sock = _bound(family, sockaddr, reuse_port=True)
            sockets.append(sock)
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _resolve(host: str | None, port: int) -> list[tuple[int, tuple[object, ...]]]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: list[tuple[int, tuple[object, ...]]] = []
    for family, _, _, _, sockaddr in infos:
        if (family, tuple(sockaddr)) not in seen:
            seen.append((family, tuple(sockaddr)))
    return seen


def _bound(family: int, sockaddr: tuple[object, ...], *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock
