"""The health check: what ``/healthz`` answers, and the checks an app adds to it.

A load balancer asks ``/healthz`` whether to send this server work. The
server answers 503 while it shuts down; an app can add checks for what it
depends on (a hub's Redis backplane adds one), and the server answers 503
while any of them fails, so the balancer takes it out until it recovers.

Rules of this module:

* A check is a plain function, ``check() -> Health``: it must answer at once
  from what its part already knows (the backplane's link state, say), never
  by doing I/O, because it runs while the request waits.
* The answer is plain text: ``ok`` or ``unhealthy`` on the first line, then
  one line per check, ``name: detail``. With no checks it is just ``ok``.
* A check that raises is a bug in it: it counts as failing, and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .._contain import contain
from .._printable import printable
from .response import Response

__all__ = ["Health", "HealthCheck", "health_response"]

logger = logging.getLogger("trio_ws.health")


@dataclass(frozen=True)
class Health:
    """One part's state, as its health check reports it.

    Attributes:
        ok: Whether this part can do its work now.
        detail: A short line saying its state, e.g. ``"connected to redis://cache:6379/0"``.
    """

    ok: bool
    detail: str = ""


HealthCheck = Callable[[], Health]
"""``check() -> Health``: answers at once, without I/O (see ``App.add_health_check``)."""


def health_response(checks: Iterable[tuple[str, HealthCheck]], *, closing: bool) -> Response:
    """The answer to ``GET /healthz``: 200 while every check passes, 503 otherwise or while closing."""
    if closing:
        return Response.text(503, "shutting down")
    lines: list[str] = []
    healthy = True
    for name, check in checks:
        try:
            health = check()
        except BaseException as exc:
            contain(exc, logger, "health check %r raised; counting it as failing", name)
            health = Health(False, f"the check raised {type(exc).__name__}")
        healthy = healthy and health.ok
        lines.append(f"{name}: {printable(health.detail)}" if health.detail else name)
    head = "ok" if healthy else "unhealthy"
    return Response.text(200 if healthy else 503, "\n".join([head, *lines]))
