"""RFC 6455 frames, byte by byte: unmasking, headers, close payloads. No state, no I/O.

The connection's state machine (``protocol.py``) reads and builds frames
with these functions; they know nothing of messages or of the close
handshake. Rules:

* ``unmask`` is the C ``apply_mask`` of the ``websockets`` package where its
  wheel has one (1.3 us for 64 KiB; a dependency chosen by measurement), or
  ``pure_unmask`` in Python (117 us for 64 KiB); the tests compare them.
* A server's frames are never masked (RFC 6455 section 5.1), and their
  lengths are always minimal (section 5.2), as a client checks.
* A frame with a payload of ``LONG_PAYLOAD`` bytes or more is built as its
  header and its payload apart, written together by ``writev``: the
  payload is never copied to join it to its header.
* Close codes follow section 7.4: what a peer may send is checked by
  ``close_code_problem``; what we send is made sendable by ``close_payload``
  (1005 means no code; 1006 and 1015 are never sent).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = [
    "BINARY",
    "BYTES_PER_FRAME",
    "CLOSE",
    "CONTINUATION",
    "LONG_PAYLOAD",
    "PING",
    "PONG",
    "TEXT",
    "close_code_problem",
    "close_payload",
    "header",
    "most_frames",
    "pure_unmask",
    "server_frame",
    "unmask",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_FIN = 0x80

# From this many bytes on, a payload is worth a step to avoid copying it: it is unmasked from a
# view of the receive buffer, and sent apart from its frame's header.
LONG_PAYLOAD = 4096

# A message may come in at most one frame per this many bytes of max_message_size (and never
# fewer than this many frames): every frame costs work even when it is empty.
BYTES_PER_FRAME = 64

# Control frames carry at most this many bytes (RFC 6455 section 5.5).
MAX_CONTROL_PAYLOAD = 125

# Close codes a peer may send below 3000 (section 7.4.1; 1004-1006 and 1015 are reserved).
_KNOWN_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})
# Codes that only say what happened locally: never on the wire.
_LOCAL_ONLY_CODES = frozenset({1005, 1006, 1015})


def most_frames(max_message_size: int) -> int:
    """How many frames one message may come in, for a given ``max_message_size``."""
    return max(BYTES_PER_FRAME, max_message_size // BYTES_PER_FRAME)


def pure_unmask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte masking ``key`` repeated (RFC 6455 section 5.3), in Python.

    Two big integers XORed at once: 100 times slower than C for 64 KiB, and
    still fast enough for a platform without the C wheel.
    """
    size = len(data)
    repeated = key * (size // 4 + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated[:size], "little")).to_bytes(
        size, "little"
    )


def _c_unmask() -> Callable[[bytes | bytearray | memoryview, bytes], bytes] | None:
    """websockets' C ``apply_mask``, if its wheel had one for this platform."""
    try:
        from websockets.speedups import apply_mask
    except ImportError:  # pragma: no cover - depends on the platform's wheel
        return None
    return apply_mask


# ``data`` XORed with the 4-byte masking ``key`` repeated: C where there is a wheel for it.
unmask: Callable[[bytes | bytearray | memoryview, bytes], bytes] = _c_unmask() or pure_unmask


def header(first: int, size: int) -> bytes:
    """An unmasked frame's header: ``first`` (FIN, RSV bits and opcode), then the minimal length."""
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return struct.pack("!BBH", first, 126, size)
    return struct.pack("!BBQ", first, 127, size)


def server_frame(payload: str | bytes | bytearray | memoryview) -> bytes:
    """One whole, unmasked, uncompressed data frame: Text for ``str``, Binary otherwise."""
    if isinstance(payload, str):
        data = payload.encode("utf-8")
        return header(_FIN | TEXT, len(data)) + data
    return header(_FIN | BINARY, len(payload)) + bytes(payload)


def close_payload(code: int | None, reason: str | None) -> bytes:
    """The payload of our Close frame: no code for ``None`` or 1005, 1000 for a local-only code,
    and the reason cut to fit a control frame at a character's edge."""
    if code is None or code == 1005:
        return b""
    if code in _LOCAL_ONLY_CODES:
        code = 1000
    data = (reason or "").encode("utf-8")
    room = MAX_CONTROL_PAYLOAD - 2
    if len(data) > room:
        data = data[:room].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + data


def close_code_problem(code: int) -> str | None:
    """Why a peer may not send Close ``code`` (RFC 6455 section 7.4), or ``None`` if it may."""
    if code < 1000 or code > 4999:
        return f"close code {code} out of range"
    if code in _LOCAL_ONLY_CODES:
        return f"close code {code} is never sent"
    if code < 3000 and code not in _KNOWN_CODES:
        return f"close code {code} is reserved"
    return None
