"""What this process is part of: the app it serves, how many workers serve it, and their backplane.

``python -m trio_ws APP --workers 4 --backplane redis://...`` runs the same
app in four processes. Parts of an app that keep state for all clients (a
hub's groups, users and client results) must then share it through the
backplane; parts that keep none (the echo app) need nothing. The CLI says
so by running the server inside ``deployed(Deployment(...))``, and such a
part asks ``current_deployment()`` when it starts: a ``HubServer`` given no
backplane of its own takes the deployment's, or refuses to run on several
workers without one.

Rules of this module:

* The deployment is a context variable, set around ``serve()``: every task
  the server starts (its services, so every ``HubServer.run``) sees it, and
  nothing outside the block does. Outside any block it is one process with
  no backplane, which is what a program calling ``serve()`` itself gets.
* A part that starts under a deployment may register itself on it (its name,
  its health check); the deployment hands the health checks to the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .._app.app import App
from .._app.health import HealthCheck
from .._errors import TrioWsError

__all__ = ["Deployment", "DeploymentError", "backplane_url", "current_deployment", "deployed", "redacted"]

# valkey:// and valkeys:// are what Valkey's own clients call it; the protocol is Redis's.
_SCHEMES = {"redis": "redis", "rediss": "rediss", "valkey": "redis", "valkeys": "rediss"}


class DeploymentError(TrioWsError):
    """A part of the app cannot run as deployed; the message says what to change.

    Raised when the app starts (in ``serve``, or in each worker of
    ``serve_workers``, which reports it in one line and exits 1).

    For example, a hub on several workers without a backplane: its groups,
    users and client results would each see a quarter of the clients.
    """


@dataclass
class Deployment:
    """How the app in this process is deployed (the CLI makes one; see ``deployed``).

    Attributes:
        app: The app served; its health path reports the parts that register here.
        workers: How many processes serve the app (this one among them).
        worker: This process's number among them, from 1 (0 when not a worker of a supervisor).
        backplane: The URL of the backplane the workers share (``redis://...``), or ``None``.
    """

    app: App | None = None
    workers: int = 1
    worker: int = 0
    backplane: str | None = None
    _names: set[str] = field(default_factory=set, repr=False)

    def claim_name(self, wanted: str) -> str:
        """A name for a part, unique in this process: ``wanted``, else ``wanted-2``, ``wanted-3``...

        Every worker imports the same app, so the parts are made in the same
        order everywhere and get the same names: a hub's channels on the
        backplane are named so.
        """
        name, number = wanted, 1
        while name in self._names:
            number += 1
            name = f"{wanted}-{number}"
        self._names.add(name)
        return name

    def release_name(self, name: str) -> None:
        self._names.discard(name)

    def add_health_check(self, name: str, check: HealthCheck) -> None:
        """Report ``check`` on the app's health path (nothing, without an app)."""
        if self.app is not None:
            self.app.add_health_check(name, check)

    def remove_health_check(self, name: str) -> None:
        if self.app is not None:
            self.app.remove_health_check(name)


def backplane_url(text: str) -> str:
    """``text`` checked as a backplane URL, ``redis://host:port/db`` (``valkey://`` becomes ``redis://``).

    Raises:
        ValueError: it is not one, with a message saying what to write.
    """
    scheme, sep, rest = text.partition("://")
    usage = "write redis://HOST:PORT/DB (rediss:// for TLS; valkey:// works too)"
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(f"backplane {redacted(text)!r} is not a Redis URL; {usage}")
    parts = urlsplit(f"{_SCHEMES[scheme.lower()]}://{rest}")
    try:
        parts.port  # noqa: B018 (checked for its ValueError)
    except ValueError:
        raise ValueError(f"backplane {redacted(text)!r} has a bad port; {usage}") from None
    if not parts.hostname:
        raise ValueError(f"backplane {redacted(text)!r} names no host; {usage}")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"backplane {redacted(text)!r}: the database must be a number; {usage}")
    return parts.geturl()


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``, for banners and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


_current: ContextVar[Deployment | None] = ContextVar("trio_ws_deployment", default=None)


def current_deployment() -> Deployment:
    """The deployment the calling task runs under; one process with no backplane outside any."""
    return _current.get() or Deployment()


@contextmanager
def deployed(deployment: Deployment) -> Iterator[Deployment]:
    """Run the block (a ``serve()`` and all it starts) as part of ``deployment``."""
    token = _current.set(deployment)
    try:
        yield deployment
    finally:
        _current.reset(token)
