"""Backplanes: where connections, groups and users are kept, and messages routed.

base.py         the Backplane interface, Audience, SerializedMessage, local delivery
in_process.py   InProcessBackplane: one process, tables in memory
"""

from __future__ import annotations

from .base import Audience, Backplane, LocalConnection, SerializedMessage, deliver_locally, frozen
from .in_process import InProcessBackplane

__all__ = [
    "Audience",
    "Backplane",
    "InProcessBackplane",
    "LocalConnection",
    "SerializedMessage",
    "deliver_locally",
    "frozen",
]
