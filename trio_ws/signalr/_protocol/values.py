"""How Python values travel in hub messages, for both encodings.

Rules of this module:

* JSON and MessagePack carry the same Python types natively (None, bool,
  int, float, str, lists, dicts with string keys); everything else goes
  through the ``default`` hooks here.
* The hooks follow ASP.NET's type mapping (HubProtocol.md, "Type
  Mappings"): ``bytes`` as base64 text in JSON and as ``bin`` in
  MessagePack, datetimes as ISO 8601 text (UTC written with ``Z``) in JSON
  and as the timestamp extension in MessagePack, a UUID as its text, an
  enum as its value, a dataclass as an object of its fields, a set as an array.
* A value the hooks do not know raises ``TypeError`` naming its type, in the
  task that tried to send it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import threading
import uuid
from collections.abc import Mapping, Set
from typing import Any

import msgpack

__all__ = ["json_default", "msgpack_default", "packb"]


def _common(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Set):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(
        f"{type(value).__name__!r} values cannot be sent in a hub message; send a str, number, bool, "
        "None, bytes, datetime, UUID, enum, dataclass, list or dict instead"
    )


def _utc(value: datetime.datetime) -> datetime.datetime:
    """Naive datetimes are taken to be UTC, as .NET's ``DateTimeKind.Unspecified`` mostly is."""
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` hook."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        value = _utc(value)
        if value.utcoffset() == datetime.timedelta(0):
            return value.replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return _common(value)


def msgpack_default(value: Any) -> Any:
    """``msgpack.packb``'s ``default`` hook."""
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        return msgpack.Timestamp.from_datetime(_utc(value))
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return _common(value)


_packers = threading.local()


def packb(value: Any) -> bytes:
    """``value`` as MessagePack, with ``msgpack_default`` for the types it does not carry itself.

    One ``Packer`` per thread, made once: ``msgpack.packb`` would make one
    per call, which costs more than packing a small message. Not shared
    between threads, because a ``default`` hook written in Python can let
    another thread in halfway through a message.

    Raises:
        TypeError: a value cannot be sent (``msgpack_default`` names its type).
    """
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True, datetime=False, default=msgpack_default)
    data: bytes = packer.pack(value)  # after a failure the packer starts afresh (autoreset)
    return data
