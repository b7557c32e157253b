"""Structured logs: ``--log-format json`` on the command line (one process and workers) and
``JsonFormatter`` from Python; every line is one JSON object with the connection's fields, and
whatever a peer chose (a user name, a close reason) arrives escaped and cut short."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from websockets.sync.client import connect

import trio_ws
import trio_ws.testing
from trio_ws._printable import LIMIT
from trio_ws.signalr import Hub, InvocationError, authorize, map_hub, open_hub_client

from ..helpers import IO_DEADLINE
from ..processes import running_cli, running_workers

# A peer's text that would forge a log line, recolour a terminal and reverse what follows.
HOSTILE = 'eve\n{"level": "CRITICAL"}\x1b[31m\u202e' + "x" * 500


def parse(lines: str) -> list[dict[str, Any]]:
    """Every line as JSON: a line that is not one JSON object fails the test."""
    records = [json.loads(line) for line in lines.splitlines() if line.strip()]
    assert records and all(isinstance(record, dict) for record in records)
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    return records


def assert_escaped(value: str) -> None:
    """What a peer sent, escaped by ``printable`` and capped at its limit."""
    assert "\n" not in value and "\x1b" not in value and "\u202e" not in value
    assert value.startswith("eve\\x0a") and "\\x1b[31m\\u202e" in value
    assert value.endswith("...") and len(value) <= LIMIT + 40


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, as ``--log-format json`` would write it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(trio_ws.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_record_is_one_line_of_json_with_its_fields(json_log: io.StringIO) -> None:
    """Time in UTC with milliseconds, level, logger, message; ``log_context`` and ``extra`` fields
    (the most specific wins), escaped; an exception's traceback as ``exception``."""
    logger = logging.getLogger("test.json")
    with trio_ws.log_context(tenant="acme", user="outer"), trio_ws.log_context(user=HOSTILE):
        logger.info("hello %s", "world", extra={"close_code": 1008, "close_reason": HOSTILE})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    first, second = parse(json_log.getvalue())
    assert first["level"] == "INFO" and first["logger"] == "test.json" and first["message"] == "hello world"
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-01-02T03:04:05.678Z")
    assert first["tenant"] == "acme" and first["close_code"] == 1008
    assert_escaped(first["user"])
    assert_escaped(first["close_reason"])
    assert "tenant" not in second  # the context ended with its block
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_configure_logging_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="'text' or 'json'"):
        trio_ws.configure_logging(format="xml")  # type: ignore[arg-type]


async def _verify(token: str) -> trio_ws.Identity | None:
    await trio.lowlevel.checkpoint()
    return trio_ws.Identity(HOSTILE) if token == "hostile" else None


class Audited(Hub):
    async def echo(self, text: str) -> str:
        logging.getLogger("test.hub").info("echoing %d characters", len(text))
        return text

    @authorize(roles=["admin"])
    async def admin_only(self) -> str:
        return "admin"


async def test_hub_records_carry_the_connection_hub_method_and_user(
    nursery: trio.Nursery, json_log: io.StringIO
) -> None:
    """A record written during a hub call names the hub connection, its transport and remote
    address, the hub, the method and the (escaped) user; the connection's close has its reason."""
    app = trio_ws.App()
    map_hub(app, "/audited", Audited(), auth=trio_ws.bearer_auth(_verify))
    server = await trio_ws.testing.start_server(nursery, app)
    with trio.fail_after(IO_DEADLINE):
        async with open_hub_client(server.url + "audited", access_token="hostile") as client:
            assert await client.invoke("Echo", "hi") == "hi"
            with pytest.raises(InvocationError):
                await client.invoke("AdminOnly")
            connection_id = client.connection_id
        await server.aclose()
    records = parse(json_log.getvalue())
    echo = next(record for record in records if record["logger"] == "test.hub")
    assert echo["message"] == "echoing 2 characters"
    assert echo["connection_id"] == connection_id
    assert (echo["hub"], echo["method"], echo["transport"]) == ("Audited", "Echo", "WebSockets")
    assert echo["remote"].startswith("127.0.0.1:")
    assert_escaped(echo["user"])
    refused = next(record for record in records if "refused (unauthorized)" in record["message"])
    assert refused["method"] == "AdminOnly" and refused["level"] == "DEBUG"
    closed = next(record for record in records if record["message"].endswith("closed: client closed"))
    assert closed["close_reason"] == "client closed" and closed["connection_id"] == connection_id
    assert "method" not in closed


def test_the_cli_writes_json_lines_with_the_websockets_fields() -> None:
    """``python -m trio_ws --log-format json``: every stderr line is JSON; a WebSocket's lines name
    it, its path and remote address, and its close has the code and the peer's reason, escaped."""
    with running_cli("--log-format", "json") as (proc, url):
        with connect(url.replace("http://", "ws://") + "ws", open_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
            ws.close(4000, HOSTILE[:100])  # a close reason is at most 123 bytes
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    records = parse(err)
    opened = next(record for record in records if "WebSocket /ws opened" in record["message"])
    assert opened["transport"] == "websocket" and opened["path"] == "/ws"
    assert opened["remote"].startswith("127.0.0.1:") and opened["connection_id"].startswith("server-")
    closed = next(record for record in records if record.get("close_code") == 4000)
    assert closed["connection_id"] == opened["connection_id"]
    reason = closed["close_reason"]
    assert reason.startswith("eve\\x0a") and "\n" not in reason and "\x1b" not in reason


def test_workers_write_json_lines_too() -> None:
    """With ``--workers 2 --log-format json`` each worker's lines are JSON, with its number."""
    with running_workers("--workers", "2", "--log-format", "json") as served:
        with connect(served.url.replace("http://", "ws://") + "ws", open_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
        served.log.wait_for(lambda line: "closed with 1000" in line)
        code, _ = served.stop()
    assert code == 0
    records = parse(served.log.text())
    closed = next(record for record in records if "closed with 1000" in record["message"])
    assert closed["worker"] in (1, 2) and closed["close_code"] == 1000
