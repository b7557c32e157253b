"""The undocumented parts of wsproto and trio-websocket that trio_ws reaches into, one check each.

``pyproject.toml`` bounds both packages to the versions the suite has run on,
because trio_ws swaps classes on wsproto's decoders, replaces
``PerMessageDeflate``'s decompressor and takes over ``WebSocketConnection``'s
reader and channels. When a new release is tried, these tests say which of
those internals moved, by name, before anything else fails in a puzzling
way. The lists of reaches are in the docstrings of ``trio_ws/_fastframes.py``,
``_deflate.py``, ``_fastio.py`` and ``_websocket.py``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import AcceptConnection
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import (
    Buffer,
    CloseReason,
    Frame,
    FrameDecoder,
    FrameProtocol,
    MessageDecoder,
    Opcode,
    ParseFailed,
    XorMaskerSimple,
)
from wsproto.handshake import H11Handshake

from trio_ws._websocket.frames import _accelerate, _FastFrameDecoder, _FastMessageDecoder

from .helpers import upgrade_request


def _open_wsproto() -> WSConnection:
    """A wsproto server connection past its handshake, as trio_ws opens one."""
    ws = WSConnection(ConnectionType.SERVER)
    head = upgrade_request().split(b"\r\n")
    target = head[0].split(b" ")[1]
    headers = [tuple(line.split(b": ", 1)) for line in head[1:] if line]
    ws.initiate_upgrade_connection(headers, target)  # type: ignore[arg-type]
    for _ in ws.events():
        pass
    ws.send(AcceptConnection())
    return ws


def _wsproto_checks() -> dict[str, tuple[str, Callable[[], bool]]]:
    """Each internal of wsproto: (the trio_ws module that relies on it, a check that it is as expected)."""
    ws = _open_wsproto()
    connection = ws.connection
    assert connection is not None
    proto = connection._proto
    deflate = PerMessageDeflate()
    fast = "trio_ws/_fastframes.py"
    return {
        "WSConnection.connection (the open Connection)": (fast, lambda: isinstance(connection, Connection)),
        "WSConnection.handshake (an H11Handshake)": (fast, lambda: isinstance(ws.handshake, H11Handshake)),
        "H11Handshake._events (empty once open)": (fast, lambda: not ws.handshake._events),
        "Connection._proto (a FrameProtocol)": (fast, lambda: isinstance(proto, FrameProtocol)),
        "Connection._state (a ConnectionState)": (fast, lambda: connection._state is ConnectionState.OPEN),
        "Connection._events (append, popleft, truthiness)": (
            fast,
            lambda: all(hasattr(connection._events, name) for name in ("append", "popleft")),
        ),
        "FrameProtocol._frame_decoder (a FrameDecoder)": (
            fast,
            lambda: type(proto._frame_decoder) is FrameDecoder,
        ),
        "FrameProtocol._message_decoder (a MessageDecoder)": (
            fast,
            lambda: type(proto._message_decoder) is MessageDecoder,
        ),
        "FrameProtocol.extensions (a list)": (fast, lambda: proto.extensions == []),
        "FrameProtocol._outbound_opcode (None between messages)": (
            fast,
            lambda: proto._outbound_opcode is None,
        ),
        "FrameProtocol.send_data(data, fin)": (
            "trio_ws/_websocket.py",
            lambda: _parameters(proto.send_data)[:2] == ["payload", "fin"],
        ),
        "FrameDecoder.header (None between frames)": (fast, lambda: proto._frame_decoder.header is None),
        "FrameDecoder.buffer (a Buffer)": (fast, lambda: type(proto._frame_decoder.buffer) is Buffer),
        "FrameDecoder.masker and parse_header()": (
            fast,
            lambda: hasattr(proto._frame_decoder, "masker") and callable(proto._frame_decoder.parse_header),
        ),
        "Buffer.buffer (a bytearray) and Buffer.bytes_used (an int)": (
            fast,
            lambda: (
                type(proto._frame_decoder.buffer.buffer) is bytearray
                and proto._frame_decoder.buffer.bytes_used == 0
            ),
        ),
        "XorMaskerSimple._masking_key and process(data)": (
            fast,
            lambda: (
                XorMaskerSimple(b"abcd")._masking_key == b"abcd"
                and _parameters(XorMaskerSimple.process) == ["self", "data"]
            ),
        ),
        "MessageDecoder.opcode and process_frame(frame)": (
            fast,
            lambda: (
                proto._message_decoder.opcode is None
                and _parameters(MessageDecoder.process_frame) == ["self", "frame"]
            ),
        ),
        "Frame(opcode, payload, frame_finished, message_finished)": (
            fast,
            lambda: Frame(Opcode.TEXT, "x", True, True).message_finished is True,
        ),
        "ParseFailed(message, code)": (
            fast,
            lambda: ParseFailed("x", CloseReason.MESSAGE_TOO_BIG).code is CloseReason.MESSAGE_TOO_BIG,
        ),
        "the decoders' classes can be swapped on a live connection": (fast, _decoders_swap),
        "PerMessageDeflate._enabled, _inbound_compressed, _decompressor, _compressor": (
            "trio_ws/_deflate.py",
            lambda: (
                deflate._enabled is False
                and deflate._inbound_compressed is None
                and deflate._decompressor is None
                and deflate._compressor is None
            ),
        ),
        "PerMessageDeflate.client_max_window_bits and server_max_window_bits (settable)": (
            "trio_ws/_deflate.py",
            lambda: (
                _settable(deflate, "client_max_window_bits") and _settable(deflate, "server_max_window_bits")
            ),
        ),
    }


def _decoders_swap() -> bool:
    """What ``_accelerate`` does to each open connection: its decoders change class, keeping state."""
    connection = _open_wsproto().connection
    assert connection is not None
    _accelerate(connection, 1024)
    proto = connection._proto
    return isinstance(proto._frame_decoder, _FastFrameDecoder) and isinstance(
        proto._message_decoder, _FastMessageDecoder
    )


def _settable(obj: object, name: str) -> bool:
    value = getattr(obj, name)
    setattr(obj, name, value)
    return bool(getattr(obj, name) == value)


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def _trio_websocket_checks() -> dict[str, tuple[str, Callable[[], bool]]]:
    """Each internal of trio-websocket's WebSocketConnection that trio_ws replaces or uses."""
    left, _ = trio.testing.memory_stream_pair()
    ws = trio_websocket.WebSocketConnection(
        left,
        WSConnection(ConnectionType.SERVER),
        message_queue_size=1,
        max_message_size=1024,
        receive_buffer_size=4096,
    )
    cls = trio_websocket.WebSocketConnection
    attributes = {
        "_send_channel": "trio_ws/_fastio.py",
        "_recv_channel": "trio_ws/_fastio.py",
        "_message_parts": "trio_ws/_fastio.py",
        "_for_testing_peer_closed_connection": "trio_ws/_websocket.py",
        "_stream_lock": "trio_ws/_fastio.py",
        "_reader_running": "trio_ws/_websocket.py",
        "_close_reason": "trio_ws/_websocket.py",
        "_close_handshake": "trio_ws/_websocket.py",
        "_open_handshake": "trio_ws/_websocket.py",
        "_wsproto": "trio_ws/_websocket.py",
        "_stream": "trio_ws/_fastio.py",
        "_receive_buffer_size": "trio_ws/_websocket.py",
        "_max_message_size": "trio_ws/_websocket.py",
        "_subprotocol": "trio_ws/_websocket.py",
        "_path": "trio_ws/_websocket.py",
    }
    checks: dict[str, tuple[str, Callable[[], bool]]] = {
        f"WebSocketConnection.{name} (an attribute)": (where, partial(hasattr, ws, name))
        for name, where in attributes.items()
    }
    methods = {
        "_abort_web_socket": ["self"],
        "_close_stream": ["self"],
        "_close_web_socket": ["self", "code", "reason"],
        "_get_request": ["self"],
        "_handle_close_connection_event": ["self", "event"],
        "_handle_message_event": ["self", "event"],
        "_handle_ping_event": ["self", "event"],
        "_handle_pong_event": ["self", "event"],
        "_handle_request_event": ["self", "event"],
        "_send": ["self", "event"],
        "_accept": ["self", "request", "subprotocol", "extra_headers"],
        "_reader_task": ["self"],
    }
    for name, parameters in methods.items():
        checks[f"WebSocketConnection.{name}({', '.join(parameters[1:])}) (a coroutine function)"] = (
            "trio_ws/_websocket.py",
            partial(_coroutine_method, cls, name, parameters),
        )
    return checks


def _coroutine_method(cls: type, name: str, parameters: list[str]) -> bool:
    method = getattr(cls, name, None)
    return inspect.iscoroutinefunction(method) and _parameters(method) == parameters


def _run_check(package: str, internal: str, where: str, check: Callable[[], bool]) -> None:
    advice = (
        f"{package} {version(package)} changed an internal that trio_ws relies on: {internal}. "
        f"See the list of reaches in {where}, adapt it, and bound {package} in pyproject.toml "
        f"to the versions the suite passes on."
    )
    try:
        held = check()
    except Exception as exc:  # an attribute gone, a signature changed: the message names it
        pytest.fail(f"{advice} ({type(exc).__name__}: {exc})")
    if not held:
        pytest.fail(advice)


# Only the names, at collection: each test builds the live objects it checks, so none stays alive
# (an open wsproto connection here would hold an h11 connection for the rest of the run).
WSPROTO_INTERNALS = list(_wsproto_checks())
TRIO_WEBSOCKET_INTERNALS = list(_trio_websocket_checks())


@pytest.mark.parametrize("internal", WSPROTO_INTERNALS)
def test_wsproto_internal(internal: str) -> None:
    """Each internal of wsproto that trio_ws uses is there, with the shape trio_ws expects."""
    where, check = _wsproto_checks()[internal]
    _run_check("wsproto", internal, where, check)


@pytest.mark.parametrize("internal", TRIO_WEBSOCKET_INTERNALS)
def test_trio_websocket_internal(internal: str) -> None:
    """Each internal of trio-websocket's WebSocketConnection that trio_ws uses is there, as expected."""
    where, check = _trio_websocket_checks()[internal]
    _run_check("trio-websocket", internal, where, check)
