"""Structured logs: one JSON object per line, with what is known of the connection.

::

    {"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "trio_ws.signalr",
     "message": "hub connection Qx...: connected to Chat over WebSockets with json",
     "connection_id": "Qx...", "transport": "WebSockets", "hub": "Chat", "user": "ada",
     "remote": "127.0.0.1:53412"}

``python -m trio_ws APP --log-format json`` turns it on; from Python, give a
handler ``JsonFormatter()`` (``configure_logging(format="json")`` does it for
the root logger, as the command line does).

Rules of this module:

* Fields about the connection come from context variables, not from the
  log calls: ``log_context(**fields)`` sets them for a block (and the tasks
  it starts), the server sets them per WebSocket, and field providers
  (``add_log_fields``; the hubs add the hub connection, its user and the
  method being called) are asked only when a record is written as JSON, so
  text logs and unlogged records cost nothing extra.
* Every string field is passed through ``printable``: escaped and
  length-capped, whoever set it, because most come from a peer (a user
  name, a close reason, a path). The message is the log call's own text
  (whose peer-provided parts the call escaped), and ``json.dumps`` with
  ASCII output keeps every record on one line.
* Fields given with ``extra={...}`` on a log call are written too (escaped
  likewise); a field set in several places takes the most specific value:
  the call's ``extra``, then providers, then ``log_context``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Literal

from .._printable import printable

__all__ = ["JsonFormatter", "add_log_fields", "configure_logging", "log_context"]

FieldProvider = Callable[[], Mapping[str, object] | None]

_EMPTY: Mapping[str, object] = MappingProxyType({})
_fields: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "trio_ws.log_fields", default=_EMPTY
)
_providers: list[FieldProvider] = []
# What every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every JSON log record written in this block (and in tasks started in it).

    Example::

        with trio_ws.log_context(tenant=tenant_id):
            await handle(ws)
    """
    token = _fields.set({**_fields.get(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def set_log_fields(**fields: object) -> None:
    """Add ``fields`` for the rest of this task (and the tasks it starts from now on)."""
    _fields.set({**_fields.get(), **fields})


def add_log_fields(provider: FieldProvider) -> None:
    """Ask ``provider()`` for more fields each time a record is written as JSON (``None``: none)."""
    if provider not in _providers:
        _providers.append(provider)


def current_log_fields() -> dict[str, object]:
    """The fields a record written now would carry (before its own ``extra``)."""
    fields = dict(_fields.get())
    for provider in _providers:
        more = provider()
        if more:
            fields.update(more)
    return fields


class JsonFormatter(logging.Formatter):
    """Writes each record as one line of JSON: time (UTC, ISO 8601), level, logger, message,
    then the connection's fields, then ``exception`` (the traceback) if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = current_log_fields()
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                fields[name] = value
        for name, value in fields.items():
            if name not in entry and value is not None:
                entry[name] = _field(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int | str = logging.INFO, *, format: Literal["text", "json"] = "text") -> None:
    """Log to stderr at ``level``, as text or as JSON lines, as ``python -m trio_ws`` does.

    It replaces the root logger's handlers; to keep yours, give them a
    ``JsonFormatter()`` instead.
    """
    if format not in ("text", "json"):
        raise ValueError(f"the log format is 'text' or 'json', not {format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(_TEXT_FORMAT))
    logging.basicConfig(
        level=level.upper() if isinstance(level, str) else level, handlers=[handler], force=True
    )


def uses_json() -> bool:
    """Whether the root logger writes JSON (so workers started now should, too)."""
    return any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)


def _timestamp(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _field(value: object) -> Any:
    """A field as JSON may carry it: numbers and booleans as they are, anything else as escaped text."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str | bytes):
        return printable(value)
    return printable(str(value))
