"""RFC 6455 as a state machine: bytes in, messages and events out. No I/O.

``Protocol`` is one open server WebSocket after its handshake, and
``ClientProtocol`` the client side (the test client's), which differs only
in masking: a client masks every frame with a fresh key, a server never
does, and each refuses the other kind from its peer (RFC 6455 section 5.1). The I/O layer
(``connection.py``) appends what it reads to ``buffer``, takes what
``events()`` makes of it, and writes the bytes that the ``send_*`` methods
return. Nothing here waits, reads a clock or knows about trio, so the tests
drive it with plain bytes. Rules:

* ``events()`` gives each whole message as its ``str`` or ``bytes`` (no
  event object for the common case), ``Ping``, ``Pong``, ``Close`` and
  ``Failure`` for the rest, and ``FRAGMENT`` for each fragment before a
  message's last (so that a caller can count the work they cost). It
  parses whole frames only: a frame whose end has not come stays in
  ``buffer`` as bytes, and its header was checked first, so what waits is
  never more than ``max_message_size`` (plus deflate's worst-case growth
  for a compressed frame).
* A frame that breaks the protocol, or a message over the limits, gives one
  ``Failure`` with the close code to send (1002 protocol, 1007 bad UTF-8 or
  bad deflate data, 1009 too big): errors are data, and the I/O layer
  decides when to send the Close. Nothing is parsed after it. The limits:
  ``max_message_size`` bytes (UTF-8 bytes for text, inflated bytes for a
  compressed message) and ``most_frames(max_message_size)`` frames.
* Text is checked as UTF-8 as it comes (an incremental decoder), so a bad
  byte fails the connection when it comes: not at the message's end, nor at
  its frame's end when the frame comes in pieces.
* The close handshake: ``OPEN``, then ``REMOTE_CLOSING`` once the peer's
  Close came or ``LOCAL_CLOSING`` once ours was built, then ``CLOSED`` once
  both. Nothing is parsed after the peer's Close. After ours, nothing more
  may be sent (``LocalProtocolError``); before ours, data may still go even
  though the peer's Close came (RFC 6455 section 5.5.1), so a handler can
  finish its replies.
* Control frames may come between the fragments of a message, and go between
  the fragments we send (``send_fragment``).
"""

from __future__ import annotations

import codecs
import enum
import secrets
import zlib
from collections.abc import Iterator

from .deflate import Deflate, MessageTooBig
from .frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    LONG_PAYLOAD,
    PING,
    PONG,
    TEXT,
    close_code_problem,
    close_payload,
    header,
    most_frames,
    unmask,
)

__all__ = [
    "FRAGMENT",
    "Close",
    "Fragment",
    "Failure",
    "ClientProtocol",
    "LocalProtocolError",
    "Ping",
    "Pong",
    "Protocol",
    "State",
]

_FIN = 0x80
_RSV1 = 0x40
_TEXT_FIN = _FIN | TEXT
_BINARY_FIN = _FIN | BINARY
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class State(enum.Enum):
    """Where the close handshake stands (RFC 6455 section 7)."""

    OPEN = "open"
    LOCAL_CLOSING = "local closing"  # our Close went; the peer's has not come
    REMOTE_CLOSING = "remote closing"  # the peer's Close came; ours has not gone
    CLOSED = "closed"


_OPEN, _LOCAL_CLOSING, _REMOTE_CLOSING = State.OPEN, State.LOCAL_CLOSING, State.REMOTE_CLOSING


class Ping:
    """A Ping came; the I/O layer answers it with ``send_pong(payload)`` while that is allowed."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Pong:
    """A Pong came, perhaps the answer to one of our pings."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class Close:
    """The peer's Close came: its code (1005 when it carried none) and reason."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class Failure:
    """The peer broke the protocol or a limit: fail the connection with Close ``code``."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"Failure({self.code}, {self.reason!r})"


class Fragment:
    """A fragment of a message came; the message comes with its last one. Given so that a caller
    can count frames: an empty fragment costs work too."""

    __slots__ = ()


FRAGMENT = Fragment()


class LocalProtocolError(Exception):
    """Our side asked for something the protocol forbids now, such as data after our Close."""


# What events() gives: a whole message, or one of the events above.
Received = str | bytes | Ping | Pong | Close | Failure | Fragment


class _Fail(Exception):
    """Raised inside the parser; events() turns it into a Failure."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Protocol:
    """One server-side WebSocket after the handshake, by the rules in the module docstring.

    ``deflate``: the permessage-deflate agreed in the handshake, if any.
    """

    __slots__ = (
        "_compressed",
        "_frames",
        "_opcode",
        "_parts",
        "_peek",
        "_sending",
        "_utf8",
        "buffer",
        "deflate",
        "failed",
        "max_frames",
        "max_message_size",
        "state",
    )

    #: Whether this is the client side (see ``ClientProtocol``).
    client = False

    def __init__(self, *, max_message_size: int, deflate: Deflate | None = None) -> None:
        #: What has been read and not yet parsed; the I/O layer appends to it.
        self.buffer = bytearray()
        self.max_message_size = max_message_size
        self.max_frames = most_frames(max_message_size)
        self.deflate = deflate
        self.state = State.OPEN
        #: The Failure given, once the peer broke the protocol: nothing is parsed after it.
        self.failed: Failure | None = None
        # The fragmented message coming in: its opcode (None: none), payload so far, frames so
        # far, whether it is compressed, and its UTF-8 check (text only).
        self._opcode: int | None = None
        self._parts = bytearray()
        self._frames = 0
        self._compressed = False
        self._utf8: codecs.IncrementalDecoder | None = None
        # A text frame that has partly come: its UTF-8 check so far, and how much it has checked.
        self._peek: tuple[codecs.IncrementalDecoder, int] | None = None
        # The opcode of the fragmented message going out (None: none).
        self._sending: int | None = None

    # -- receiving -------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the peer (or append to ``buffer`` directly)."""
        self.buffer += data

    @property
    def receiving(self) -> bool:
        """Whether frames are still parsed: no Close has come and no Failure was given."""
        state = self.state
        return self.failed is None and (state is _OPEN or state is _LOCAL_CLOSING)

    def events(self) -> Iterator[Received]:
        """What the whole frames received so far make, in order; ends when more bytes are needed,
        after a ``Close`` and after a ``Failure``."""
        data = self.buffer
        most = self.max_message_size
        while self.receiving:
            if self._opcode is None and self._peek is None and not self.client:
                # A server's common case, straight from the buffer: a whole text or binary message
                # in one masked frame of fewer than 64 KiB. `break` hands the next frame to _next_frame.
                while True:
                    size = len(data)
                    if size < 2:
                        return
                    first = data[0]
                    if first != _TEXT_FIN and first != _BINARY_FIN:
                        break
                    length = data[1] - 0x80  # negative: the frame is not masked
                    if 0 <= length < 126:
                        start = 6
                    elif length == 126 and size >= 4:
                        length = (data[2] << 8) | data[3]
                        if length < 126:
                            break  # not minimal: _next_frame fails it
                        start = 8
                    else:
                        break
                    end = start + length
                    if length > most or end > size:
                        break  # _next_frame fails it, or finds it has not all come
                    key = bytes(data[start - 4 : start])
                    if length < LONG_PAYLOAD:
                        payload = unmask(data[start:end], key)
                    else:
                        with memoryview(data) as view:  # see _next_frame
                            payload = unmask(view[start:end], key)
                    del data[:end]
                    if first == _BINARY_FIN:
                        yield payload
                        continue
                    try:
                        message = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        yield self._failure(1007, "invalid UTF-8 in a text message")
                        return
                    yield message
            if len(data) < 2:
                return
            try:
                event = self._next_frame(data, len(data), most)
            except _Fail as failed:
                yield self._failure(failed.code, failed.reason)
                return
            if event is None:
                return
            yield event

    def _failure(self, code: int, reason: str) -> Failure:
        self.failed = Failure(code, reason)
        self._peek = None
        self._parts = bytearray()
        self._utf8 = None
        return self.failed

    def _next_frame(self, data: bytearray, size: int, most: int) -> Received | None:
        """Parse the frame at the head of ``data``: what it makes, ``None`` if it has not all come."""
        first, second = data[0], data[1]
        masked = bool(second & 0x80)
        if masked is self.client:
            raise _Fail(1002, "masked frame from a server" if self.client else "unmasked frame from a client")
        length, start = second & 0x7F, 2
        if length == 126:
            if size < 4:
                return None
            length, start = (data[2] << 8) | data[3], 4
            if length < 126:
                raise _Fail(1002, "payload length not minimal")
        elif length == 127:
            if size < 10:
                return None
            length, start = int.from_bytes(data[2:10], "big"), 10
            if length >> 63:
                raise _Fail(1002, "payload length with the top bit set")
            if length < 65536:
                raise _Fail(1002, "payload length not minimal")
        opcode, fin, rsv = first & 0x0F, bool(first & _FIN), first & 0x70
        if opcode >= CLOSE:
            self._check_control_header(opcode, fin, rsv, length)
        else:
            self._check_data_header(opcode, fin, rsv, length, most)
        start += 4 if masked else 0
        end = start + length
        if end > size:
            continuing = opcode == CONTINUATION and self._utf8 is not None and not self._compressed
            if continuing or (opcode == TEXT and not rsv):
                self._check_text_so_far(data, start, size, continuing=continuing)
            return None
        self._peek = None
        if not masked:
            payload = bytes(data[start:end])
        elif length < LONG_PAYLOAD:
            payload = unmask(data[start:end], bytes(data[start - 4 : start]))
        else:
            # A view, not a slice: one copy of a long payload fewer. It is released before the
            # buffer shrinks (a bytearray can't be resized while viewed).
            with memoryview(data) as view:
                payload = unmask(view[start:end], bytes(data[start - 4 : start]))
        del data[:end]
        if opcode >= CLOSE:
            return self._control(opcode, payload)
        return self._data(opcode, fin, bool(rsv), payload, most)

    def _check_text_so_far(self, data: bytearray, start: int, size: int, *, continuing: bool) -> None:
        """Check the UTF-8 of the part of a text frame that has come, so that bad text fails the
        connection when it comes, not when its frame ends. Each byte is checked once here."""
        if self._peek is None:
            fresh: codecs.IncrementalDecoder = _Utf8Decoder()
            if continuing and self._utf8 is not None:
                fresh.setstate(self._utf8.getstate())
            self._peek = (fresh, 0)
        decoder, checked = self._peek
        if size - start <= checked:
            return
        part = data[start + checked : size]
        if not self.client:
            key = bytes(data[start - 4 : start])
            turn = checked % 4  # the key goes on where the last check stopped
            part = bytearray(unmask(part, key[turn:] + key[:turn]))
        try:
            decoder.decode(part)
        except UnicodeDecodeError:
            raise _Fail(1007, "invalid UTF-8 in a text message") from None
        self._peek = (decoder, size - start)

    def _check_control_header(self, opcode: int, fin: bool, rsv: int, length: int) -> None:
        if opcode > PONG:
            raise _Fail(1002, f"reserved opcode {opcode}")
        if not fin:
            raise _Fail(1002, "fragmented control frame")
        if length > 125:
            raise _Fail(1002, "control frame payload over 125 bytes")
        if rsv:
            raise _Fail(1002, "reserved bits set on a control frame")

    def _check_data_header(self, opcode: int, fin: bool, rsv: int, length: int, most: int) -> None:
        if opcode > BINARY:
            raise _Fail(1002, f"reserved opcode {opcode}")
        if rsv & ~_RSV1 or (rsv and (self.deflate is None or opcode == CONTINUATION)):
            raise _Fail(1002, "reserved bits set without an extension that uses them")
        if opcode == CONTINUATION:
            if self._opcode is None:
                raise _Fail(1002, "continuation frame with no message to continue")
            compressed = self._compressed
        else:
            if self._opcode is not None:
                raise _Fail(1002, "new message inside a fragmented one")
            compressed = bool(rsv)
        if compressed:
            # Deflate makes incompressible data a little longer: 5 bytes a 16 KiB block at most.
            most += most // 1024 + 64
        else:
            most -= len(self._parts)
        if length > most:
            raise _Fail(1009, f"message larger than {self.max_message_size} bytes")

    def _control(self, opcode: int, payload: bytes) -> Received:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        close = _parse_close(payload)
        self.state = State.CLOSED if self.state is State.LOCAL_CLOSING else State.REMOTE_CLOSING
        return close

    def _data(self, opcode: int, fin: bool, compressed: bool, payload: bytes, most: int) -> Received:
        if fin and not compressed and opcode != CONTINUATION:
            # A whole uncompressed message in one frame (its size was checked with its header).
            if opcode == BINARY:
                return payload
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                raise _Fail(1007, "invalid UTF-8 in a text message") from None
        if opcode != CONTINUATION:
            self._opcode, self._compressed, self._frames = opcode, compressed, 0
            self._utf8 = _Utf8Decoder() if opcode == TEXT else None
        message_opcode = self._opcode
        assert message_opcode is not None
        self._frames += 1
        if self._frames > self.max_frames:
            raise _Fail(1009, f"message in more than {self.max_frames} frames")
        parts = self._parts
        if self._compressed:
            assert self.deflate is not None
            try:
                payload = self.deflate.inflate(payload, most - len(parts), last=fin)
            except MessageTooBig:
                too_big = f"decompressed message larger than {self.max_message_size} bytes"
                raise _Fail(1009, too_big) from None
            except zlib.error:
                raise _Fail(1007, "invalid compressed data") from None
        if self._utf8 is not None:
            try:
                self._utf8.decode(payload, fin)
            except UnicodeDecodeError:
                raise _Fail(1007, "invalid UTF-8 in a text message") from None
        if not fin:
            parts += payload
            return FRAGMENT
        if parts:
            parts += payload
            whole = bytes(parts)
            self._parts = bytearray()
        else:
            whole = payload
        self._opcode, self._utf8 = None, None
        return whole.decode("utf-8") if message_opcode == TEXT else whole

    def control_frame_next(self) -> bool:
        """Whether the next bytes to come may complete a control frame at the head of ``buffer``:
        it is empty, or starts with a control frame. ``False`` while a data frame waits there."""
        data = self.buffer
        return not data or bool(data[0] & 0x08)

    def control_events(self) -> Iterator[Received]:
        """The events of the whole control frames at the head of ``buffer``, stopping before a data
        frame: for a reader with no room for another message, which must still see a Close."""
        data = self.buffer
        while self.receiving and len(data) >= 2 and data[0] & 0x08:
            length = data[1] & 0x7F
            if length <= 125 and len(data) < 2 + (4 if data[1] & 0x80 else 0) + length:
                return  # not all come yet (a longer one fails at once)
            for event in self.events():  # parses one frame for each event it gives
                yield event
                break
            else:
                return

    # -- sending ---------------------------------------------------------------------

    @property
    def sending(self) -> bool:
        """Whether we may still send: our Close has not gone."""
        state = self.state
        return state is _OPEN or state is _REMOTE_CLOSING

    @property
    def fragmenting(self) -> bool:
        """Whether a message going out in fragments has had its first and not its last."""
        return self._sending is not None

    def send_message(self, message: str | bytes, *, text: bool = False) -> bytes | tuple[bytes, bytes]:
        """The frame for a whole message; a long uncompressed one as its header and its payload,
        to be written together. A Text message for ``str``, or for ``bytes`` with ``text``: text
        the caller has encoded as UTF-8 already (not checked again)."""
        state = self.state
        if (state is not _OPEN and state is not _REMOTE_CLOSING) or self._sending is not None:
            raise self._refusal()
        if isinstance(message, str):
            first, payload = _TEXT_FIN, message.encode("utf-8")
        else:
            first, payload = (_TEXT_FIN if text else _BINARY_FIN), message
        if self.deflate is None and len(payload) < 126 and not self.client:
            return bytes((first, len(payload))) + payload
        if self.deflate is not None:
            compressed, payload = self.deflate.compress(payload, first=True, last=True)
            if compressed:
                first |= _RSV1
        if len(payload) < LONG_PAYLOAD or self.client:
            return self._frame(first, payload)
        return header(first, len(payload)), bytes(payload)

    def send_fragment(self, data: str | bytes, *, last: bool) -> bytes:
        """One fragment of a message going out in several frames (its first: Text for ``str``)."""
        if not self.sending:
            raise self._refusal()
        opcode = CONTINUATION
        if self._sending is None:
            opcode = self._sending = TEXT if isinstance(data, str) else BINARY
        payload = data.encode("utf-8") if isinstance(data, str) else data
        first = opcode | (_FIN if last else 0)
        if self.deflate is not None:
            compressed, payload = self.deflate.compress(payload, first=opcode != CONTINUATION, last=last)
            if compressed and opcode != CONTINUATION:
                first |= _RSV1
        if last:
            self._sending = None
        return self._frame(first, payload)

    def send_ping(self, payload: bytes) -> bytes:
        return self._control_frame(PING, payload)

    def send_pong(self, payload: bytes) -> bytes:
        return self._control_frame(PONG, payload)

    def send_close(self, code: int | None = 1000, reason: str | None = None) -> bytes:
        """Our Close frame (see ``frames.close_payload``); nothing may be sent after it."""
        frame = self._control_frame(CLOSE, close_payload(code, reason))
        self.state = State.CLOSED if self.state is State.REMOTE_CLOSING else State.LOCAL_CLOSING
        return frame

    def _control_frame(self, opcode: int, payload: bytes) -> bytes:
        if not self.sending:
            raise self._refusal()
        if len(payload) > 125:
            raise ValueError("a control frame carries at most 125 bytes")
        return self._frame(_FIN | opcode, payload)

    def _frame(self, first: int, payload: bytes) -> bytes:
        """A whole frame: ``first`` (FIN, RSV bits and opcode), the length, the payload."""
        return header(first, len(payload)) + payload

    def _refusal(self) -> LocalProtocolError:
        if self.sending:
            return LocalProtocolError("a fragmented message is being sent")
        return LocalProtocolError(f"nothing may be sent in state {self.state.value}: our Close went")


def _parse_close(payload: bytes) -> Close:
    """The peer's Close from its payload (RFC 6455 section 5.5.1), checked."""
    if not payload:
        return Close(1005, "")
    if len(payload) == 1:
        raise _Fail(1002, "close payload of one byte")
    code = int.from_bytes(payload[:2], "big")
    problem = close_code_problem(code)
    if problem is not None:
        raise _Fail(1002, problem)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise _Fail(1007, "invalid UTF-8 in a close reason") from None
    return Close(code, reason)


class ClientProtocol(Protocol):
    """The client side: each frame we send is masked with a fresh random key (RFC 6455 section 5.3)."""

    __slots__ = ()

    client = True

    def _frame(self, first: int, payload: bytes) -> bytes:
        key = secrets.token_bytes(4)
        head = header(first, len(payload))
        return bytes((head[0], head[1] | 0x80)) + head[2:] + key + unmask(payload, key)
