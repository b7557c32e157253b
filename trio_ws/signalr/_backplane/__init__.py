"""Backplanes: where connections, groups and users are kept, and messages routed.

base.py         the Backplane interface, Audience, SerializedMessage, local delivery
in_process.py   InProcessBackplane: one process, tables in memory
redis.py        RedisBackplane: every worker and host, through Redis or Valkey
redis_link.py   its link to Redis: sessions, heartbeats, healing
redis_outbox.py the link's send buffer, and batching consecutive sends per channel
redis_wire.py   what it keeps in Redis and sends between workers (pure)
"""

from __future__ import annotations

from .base import Audience, Backplane, LocalConnection, Pending, SerializedMessage, deliver_locally, frozen
from .in_process import InProcessBackplane
from .redis import RedisBackplane

__all__ = [
    "Audience",
    "Backplane",
    "InProcessBackplane",
    "LocalConnection",
    "Pending",
    "RedisBackplane",
    "SerializedMessage",
    "deliver_locally",
    "frozen",
]
