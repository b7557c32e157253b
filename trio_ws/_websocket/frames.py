"""A fast path through wsproto's framing for the frames a busy server sees most, per connection.

wsproto parses every frame the general way: three generators deep, with a
header object, a frame object and an event object per frame, an extension
pass, a masking object that XORs with four strided ``translate`` calls, a
fresh UTF-8 incremental decoder per text message, and several copies of each
payload when a frame is built. Most frames on a busy server are the simple
case: one whole masked data frame, no extension, no fragmentation.
``FastWSConnection.received()`` takes that case from wsproto's receive
buffer straight to the message itself (a ``str`` or ``bytes``, with no
frame or event object made), and hands every other frame to wsproto's own
code, so what comes out (messages, events, errors, bytes on the wire) is
what wsproto would have produced.

Rules of this module:

* Nothing global is patched. ``FastWSConnection`` is a ``WSConnection``
  subclass; once its handshake completes, its own connection's frame and
  message decoders become instances of subclasses (which unmask in C, and
  put fragmented messages together within the limits). Other users of
  wsproto in the process are not affected.
* The fast path takes only what it can decode completely and exactly: a
  TEXT or BINARY frame with FIN set, no RSV bits, masked, with a minimal
  length and no more than ``max_message_size`` bytes; only while no
  extension is negotiated, no Close has been received (wsproto parses
  nothing after one) and wsproto has no frame or fragmented message in
  progress. Anything else, including every malformed frame, an oversized
  one and invalid UTF-8, goes to wsproto, which raises its usual errors;
  the fast path takes over again at the next simple frame.
* A simple frame whose end has not come yet stays in wsproto's buffer, as
  bytes, until it has: it was checked against ``max_message_size`` first,
  so that is the most it holds (wsproto would hand on its parts as they
  came, to be put together in a second buffer).
* Outgoing data frames are built directly only in the ``OPEN`` state, with
  no extension and no fragmented message in progress; everything else goes
  through wsproto's ``send``. ``send_message`` gives a frame whose payload
  has ``LONG_PAYLOAD`` bytes or more as its header and its payload, to be
  written together (``direct_socket.send_pieces``) rather than copied into
  one ``bytes``.
* A long payload is unmasked from a view of the receive buffer, not from a
  slice of it: the unmasked ``bytes`` is its one copy in user space after
  the read (``_websocket/direct_socket.py`` appends reads to that buffer).
* ``unmask`` equals wsproto's ``XorMaskerSimple`` for every length and key
  (tests compare them). It is the C ``apply_mask`` of the ``websockets``
  package (a dependency chosen by measurement: 1.3 us for 64 KiB, a 226 KB
  wheel, under a millisecond to import here) or, where that has no C
  extension, ``pure_unmask`` (117 us for 64 KiB), which the tests cover too.

What it reaches into (check on a wsproto upgrade; the tests cover each):
``Connection._proto``, ``Connection._state``, ``Connection.events()``,
``FrameProtocol._frame_decoder``, ``_message_decoder``, ``extensions`` and
``_outbound_opcode``, ``FrameDecoder.header``/``buffer``/``masker``/``parse_header``,
``Buffer.buffer``/``bytes_used``, ``XorMaskerSimple._masking_key``,
``MessageDecoder.opcode``/``process_frame``, ``Connection._events`` (a
list instead of a deque), and ``WSConnection.handshake`` with
``H11Handshake._events`` (an open connection lets its handshake go).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, TextMessage
from wsproto.frame_protocol import (
    CloseReason,
    Frame,
    FrameDecoder,
    MessageDecoder,
    Opcode,
    ParseFailed,
    XorMaskerSimple,
)
from wsproto.handshake import H11Handshake

if TYPE_CHECKING:
    from collections.abc import Generator

    from wsproto.connection import Connection

__all__ = [
    "BYTES_PER_FRAME",
    "LONG_PAYLOAD",
    "FastWSConnection",
    "most_frames",
    "pure_unmask",
    "server_frame",
    "unmask",
]

_TEXT_FIN = 0x80 | Opcode.TEXT
_BINARY_FIN = 0x80 | Opcode.BINARY
# No Close has been received yet: frames are still parsed (wsproto parses nothing after a Close).
_RECEIVING = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
_NO_LIMIT = 2**63
# From this many bytes on, a payload is worth a step to avoid copying it: it is unmasked from a
# view of the receive buffer, and sent apart from its frame's header (see the module docstring).
LONG_PAYLOAD = 4096


def pure_unmask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte masking ``key`` repeated (RFC 6455 section 5.3), in Python.

    Two big integers XORed at once: about 25 times faster than wsproto's
    masker, and 100 times slower than C for 64 KiB.
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


class _FastMasker(XorMaskerSimple):
    """wsproto's masker for the pieces of a long or fragmented frame, with ``unmask`` doing the XOR."""

    def process(self, data: bytearray) -> bytearray:
        if not data:
            return bytearray(data)
        key = bytes(self._masking_key)
        rotation = len(data) % 4
        self._masking_key = key[rotation:] + key[:rotation]
        return bytearray(unmask(data, key))


class _FastFrameDecoder(FrameDecoder):
    """wsproto's frame decoder, unmasking with ``unmask`` (the frames ``received()`` leaves to wsproto)."""

    def parse_header(self) -> bool:
        parsed = super().parse_header()
        if parsed and type(self.masker) is XorMaskerSimple:
            self.masker = _FastMasker(self.masker._masking_key)
        return parsed


# A message may come in at most one frame per this many bytes of max_message_size (and
# never fewer than this many frames): every frame costs work even when it is empty.
BYTES_PER_FRAME = 64


def most_frames(max_message_size: int) -> int:
    """How many frames one message may come in, for a given ``max_message_size``."""
    return max(BYTES_PER_FRAME, max_message_size // BYTES_PER_FRAME)


class _FastMessageDecoder(MessageDecoder):
    """wsproto's message decoder, which also puts fragmented messages together, within the limits.

    wsproto hands each fragment on as an event of its own, and trio-websocket
    kept them in a list until the last one: a million one-byte fragments were
    a million objects, and empty ones were not counted at all. Here a message
    in progress is one ``bytearray`` of its payload (UTF-8 for text, which
    wsproto's incremental decoder still checks frame by frame, so invalid
    text fails at once). Each fragment before the last becomes an empty
    event with ``message_finished=False``, and the last one carries the
    whole message. A message larger than ``max_size`` bytes, or in more than
    ``max_frames`` frames, fails the connection with 1009.
    """

    # Set on the instance by _accelerate (the class of a live decoder is swapped, not rebuilt).
    max_size: int | None
    max_frames: int
    parts: bytearray | None
    frames: int

    def process_frame(self, frame: Frame) -> Frame:
        payload = frame.payload
        assert isinstance(payload, bytes | bytearray)
        # A whole message in one frame, with no fragmented message in progress.
        if self.opcode is None and frame.message_finished and frame.frame_finished:
            self._check_size(len(payload))
            if frame.opcode is Opcode.BINARY:
                return frame
            if frame.opcode is Opcode.TEXT:
                try:
                    return Frame(Opcode.TEXT, bytes(payload).decode("utf-8"), True, True)
                except UnicodeDecodeError:
                    pass  # wsproto's decoder raises the error it always raises
        # wsproto checks the opcode sequence and the UTF-8 so far; what it decoded is not kept.
        checked = super().process_frame(frame)
        opcode = checked.opcode
        parts = self.parts
        if parts is None:
            parts = self.parts = bytearray()
        self._check_size(len(parts) + len(payload))
        if frame.frame_finished:
            self.frames += 1
            if self.frames > self.max_frames:
                self._reset()
                too_many = f"message in more than {self.max_frames} frames"
                raise ParseFailed(too_many, CloseReason.MESSAGE_TOO_BIG)
        parts += payload
        if not checked.message_finished:
            return Frame(opcode, "" if opcode is Opcode.TEXT else b"", checked.frame_finished, False)
        self._reset()
        whole = parts.decode("utf-8") if opcode is Opcode.TEXT else bytes(parts)
        return Frame(opcode, whole, True, True)

    def _check_size(self, size: int) -> None:
        if self.max_size is not None and size > self.max_size:
            self._reset()
            raise ParseFailed(f"message larger than {self.max_size} bytes", CloseReason.MESSAGE_TOO_BIG)

    def _reset(self) -> None:
        self.parts = None
        self.frames = 0


class _Events(list[Event]):
    """wsproto's queue of pending events, as a list: an empty ``deque`` costs 600 bytes more per connection.

    wsproto only appends to it, tests it for emptiness and takes from the left.
    """

    def popleft(self) -> Event:
        return self.pop(0)


def _accelerate(connection: Connection, max_message_size: int | None) -> None:
    """Give this one connection the fast decoders, with its message limits.

    The decoder objects keep their state (bytes already buffered) and only
    change class, to subclasses that add methods and a few fields; rebuilding
    them would cost each connection a few hundred bytes of fresh dicts.
    """
    connection._events = _Events(connection._events)  # type: ignore[assignment]
    proto = connection._proto
    proto._frame_decoder.__class__ = _FastFrameDecoder
    decoder = proto._message_decoder
    decoder.__class__ = _FastMessageDecoder
    assert isinstance(decoder, _FastMessageDecoder)
    decoder.max_size = max_message_size
    decoder.max_frames = most_frames(max_message_size) if max_message_size is not None else 2**63
    decoder._reset()


def server_frame(payload: str | bytes | bytearray | memoryview) -> bytes:
    """One unmasked, unfragmented data frame, byte for byte as wsproto's server would build it."""
    return b"".join(_server_frame_pieces(payload))


def _server_frame_pieces(
    payload: str | bytes | bytearray | memoryview,
) -> tuple[bytes, bytes | bytearray | memoryview]:
    """The header and the payload of ``server_frame(payload)``."""
    if isinstance(payload, str):
        first, payload = _TEXT_FIN, payload.encode("utf-8")
    else:
        first = _BINARY_FIN
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 2**16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header, payload


def _starts_with_control_frame(data: bytearray) -> bool:
    """Whether ``data`` starts with a whole control frame (opcode 8 and up), or with the header of
    one that wsproto refuses at once (a control frame's payload is at most 125 bytes)."""
    if len(data) < 2 or not data[0] & 0x08:
        return False
    length = data[1] & 0x7F
    return length > 125 or len(data) >= 2 + (4 if data[1] & 0x80 else 0) + length


# Stands in for each open connection's handshake; nothing reads or changes it
# (see FastWSConnection.send), so one object serves them all.
_FINISHED_HANDSHAKE = H11Handshake(ConnectionType.SERVER)


class FastWSConnection(WSConnection):
    """A ``WSConnection`` that takes the fast path described in the module docstring.

    Received messages larger than ``max_message_size`` bytes (UTF-8 bytes for
    text), or in more frames than ``most_frames(max_message_size)``, fail the
    connection with 1009; ``None`` sets no limit.
    """

    def __init__(self, connection_type: ConnectionType, *, max_message_size: int | None = None) -> None:
        super().__init__(connection_type)
        self._max_message_size = max_message_size

    def send(self, event: Event) -> bytes:
        connection = self.connection
        if connection is None:
            data = super().send(event)
            if self.connection is not None and not self.client:
                _accelerate(self.connection, self._max_message_size)
                # Open now: every method here goes straight to the connection, so
                # the handshake (its own h11 state and event queue, about 2 KiB)
                # is never consulted again and can go.
                if not self.handshake._events:
                    self.handshake = _FINISHED_HANDSHAKE
            return data
        if (
            connection._state is ConnectionState.OPEN
            and type(event) in (TextMessage, BytesMessage)
            and not self.client
        ):
            proto = connection._proto
            assert isinstance(event, TextMessage | BytesMessage)
            if (
                event.message_finished
                and not proto.extensions
                and proto._outbound_opcode is None
                and isinstance(event.data, str | bytes | bytearray | memoryview)
            ):
                return server_frame(event.data)
        return connection.send(event)

    def send_message(self, message: str | bytes) -> bytes | tuple[bytes, bytes]:
        """The frame for a whole message, as ``send(TextMessage(...))`` or ``send(BytesMessage(...))``
        would build it, without making the event when the fast path applies.

        On the fast path, a frame with a payload of ``LONG_PAYLOAD`` bytes or
        more comes as its header and its payload, not joined: written one
        after the other, they are the frame.
        """
        connection = self.connection
        if (
            connection is not None
            and connection._state is ConnectionState.OPEN
            and not connection._proto.extensions
            and connection._proto._outbound_opcode is None
            and not self.client
        ):
            header, payload = _server_frame_pieces(message)
            if len(payload) < LONG_PAYLOAD:
                return header + payload
            assert isinstance(payload, bytes)
            return header, payload
        if isinstance(message, str):
            return self.send(TextMessage(data=message))
        return self.send(BytesMessage(data=message))

    def receive_buffer(self) -> bytearray | None:
        """The buffer that received bytes may be appended to, as ``receive_data`` would, with no
        ``bytes`` made for them; ``None`` when they must go through ``receive_data`` (during the
        handshake and once a Close has been received)."""
        connection = self.connection
        if connection is None or connection._state not in _RECEIVING or self.handshake._events:
            return None
        return connection._proto._frame_decoder.buffer.buffer

    def receive_data(self, data: bytes | None) -> None:
        connection = self.connection
        if connection is None:
            super().receive_data(data)
        else:
            connection.receive_data(data)

    def events(self) -> Generator[Event, None, None]:
        connection = self.connection
        if connection is None or self.handshake._events:
            return super().events()
        return connection.events()

    def control_events(self) -> Generator[Event, None, None]:
        """The events of the control frames (Close, Ping, Pong) at the head of the bytes received.

        It stops before a data frame, or a frame that has not all come: those stay in the buffer
        as bytes, for ``received()``. For a reader that has no room for another message, but
        must still see a Close, or the Pong a keep-alive waits for.
        """
        connection = self.connection
        if connection is None or self.handshake._events:
            return
        frames = connection._proto._frame_decoder
        data = frames.buffer.buffer
        while (
            connection._state in _RECEIVING
            and frames.header is None
            and not frames.buffer.bytes_used
            and _starts_with_control_frame(data)
        ):
            for event in connection.events():  # wsproto parses one frame for each event it gives
                yield event
                break
            else:
                return  # nothing more parsed (after a protocol error, wsproto parses nothing)

    def control_frame_next(self) -> bool:
        """Whether the next bytes to come may complete a control frame at the head of what was
        received: nothing waits there, or a control frame that has not all come. ``False`` while
        a data frame waits there: what follows it must wait too."""
        connection = self.connection
        if connection is None:
            return True
        frames = connection._proto._frame_decoder
        if frames.header is not None:
            return frames.header.opcode.iscontrol()
        data = frames.buffer.buffer
        return not frames.buffer.bytes_used and (not data or bool(data[0] & 0x08))

    def received(self) -> Generator[str | bytes | Event, None, None]:
        """What the bytes received so far make, in order: messages and events.

        A message that came whole in one simple frame (see the module's
        rules) comes out as its ``str`` or ``bytes``, with no frame or event
        object made for it; every other frame goes through wsproto, and its
        events come out as ``events()`` gives them. The generator ends when
        more bytes are needed, and after a ``CloseConnection`` (nothing is
        parsed after a Close, or after a protocol error).
        """
        connection = self.connection
        if connection is None or self.client or self.handshake._events:
            yield from self.events()
            return
        proto = connection._proto
        frames = proto._frame_decoder
        decoder = proto._message_decoder
        data = frames.buffer.buffer
        most = _NO_LIMIT if self._max_message_size is None else self._max_message_size
        while True:
            if (
                connection._state in _RECEIVING
                and not proto.extensions
                and frames.header is None
                and decoder.opcode is None
                and not frames.buffer.bytes_used
            ):
                # Simple frames, straight from the buffer; `break` hands the next frame to wsproto.
                while True:
                    size = len(data)
                    if size < 2:
                        return
                    first = data[0]
                    length = data[1] - 0x80  # negative: the frame is not masked
                    if (first != _TEXT_FIN and first != _BINARY_FIN) or length < 0:
                        break
                    if length < 126:
                        start = 6
                    elif length == 126:
                        if size < 4:
                            return
                        length = (data[2] << 8) | data[3]
                        if length < 126:
                            break  # a non-minimal length: wsproto raises the error
                        start = 8
                    else:
                        if size < 10:
                            return
                        length = int.from_bytes(data[2:10], "big")
                        if length < 65536 or length >> 63:
                            break  # a non-minimal length or the top bit set: wsproto raises the error
                        start = 14
                    if length > most:
                        break  # wsproto fails the connection with 1009
                    end = start + length
                    if end > size:
                        return  # the rest of this frame has not come yet
                    key = bytes(data[start - 4 : start])
                    if length < LONG_PAYLOAD:
                        payload = unmask(data[start:end], key)
                    else:
                        # A view, not a slice: one copy of a long payload fewer. It is released
                        # before the buffer shrinks (a bytearray can't be resized while viewed).
                        with memoryview(data) as view:
                            payload = unmask(view[start:end], key)
                    message: str | bytes
                    if first == _TEXT_FIN:
                        try:
                            message = payload.decode("utf-8")
                        except UnicodeDecodeError:
                            break  # wsproto fails the connection with 1007
                    else:
                        message = payload
                    del data[:end]
                    yield message
            # wsproto's turn, until the next frame is a simple one again.
            for event in connection.events():
                yield event
                if type(event) is CloseConnection:
                    return
                if (
                    data
                    and (data[0] == _TEXT_FIN or data[0] == _BINARY_FIN)
                    and frames.header is None
                    and decoder.opcode is None
                ):
                    break
            else:
                return
