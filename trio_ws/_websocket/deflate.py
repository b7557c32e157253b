"""permessage-deflate (RFC 7692) for a server that faces the internet.

wsproto's ``PerMessageDeflate`` does the compressing and the framing. This
subclass changes four things a public server needs:

1. Negotiation follows RFC 7692 section 7.1 to the letter. The first offer
   that can be honoured is taken; an offer with an unknown, repeated or
   out-of-range parameter is skipped. ``server_no_context_takeover`` and
   ``client_no_context_takeover`` are accepted as the client asks. Our
   window is ``window_bits`` or the client's ``server_max_window_bits``,
   whichever is smaller (an offer of 8 is skipped: zlib cannot compress with
   a 256-byte window). The client's window is limited to ``window_bits``
   when the client says it can be limited; otherwise it may use 15 bits
   and is inflated with 15.
2. A decompression bomb cannot allocate more than ``max_message_size``:
   inflating stops one byte past the limit, and the connection fails with
   1009. wsproto itself inflates without a bound.
3. Messages shorter than ``min_size`` bytes are sent uncompressed, since
   deflate's overhead is larger than what it saves on them.
4. The compressor uses zlib memory level 5 instead of 8, as the
   ``websockets`` library does: a quarter of the memory for a slightly
   worse ratio, which matters with thousands of connections.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

__all__ = ["Deflate", "offers_deflate"]

_MEMORY_LEVEL = 5


def offers_deflate(offers: Sequence[object]) -> bool:
    """Whether a client's ``Sec-WebSocket-Extensions`` offers include permessage-deflate."""
    return any(
        isinstance(offer, str) and offer.split(";", 1)[0].strip() == PerMessageDeflate.name
        for offer in offers
    )


class _MessageTooBig(Exception):
    """Inflating the current message went past the size limit."""


class _BoundedInflater:
    """A zlib inflater that refuses to produce more than ``limit`` bytes per message."""

    def __init__(self, window_bits: int, limit: int) -> None:
        self._inflater = zlib.decompressobj(-window_bits)
        self._limit = limit
        self.room = limit

    def decompress(self, data: bytes) -> bytes:
        # Asking for one byte more than the room tells "exactly full" from "too big".
        out = self._inflater.decompress(data, self.room + 1)
        self.room -= len(out)
        if self.room < 0:
            raise _MessageTooBig
        return out

    def flush(self) -> bytes:
        # Everything was inflated within the bound above, so nothing is left over.
        return self._inflater.flush()


class Deflate(PerMessageDeflate):
    """wsproto's permessage-deflate with the server-side rules in the module docstring."""

    def __init__(self, *, window_bits: int, min_size: int, max_message_size: int) -> None:
        super().__init__()
        self._window_bits = window_bits
        self._min_size = min_size
        self._max_message_size = max_message_size
        self._compress_this_message = True
        self._in_control_frame = False

    # -- 1. negotiation ---------------------------------------------------------

    def accept(self, offer: str) -> bool | str | None:
        if self._enabled:
            return None  # an earlier offer was taken
        params = _parse_offer(offer)
        if params is None:
            return None
        response = []
        if "server_no_context_takeover" in params:
            self.server_no_context_takeover = True
            response.append("server_no_context_takeover")
        if "client_no_context_takeover" in params:
            self.client_no_context_takeover = True
            response.append("client_no_context_takeover")

        server_bits = min(int(params.get("server_max_window_bits") or 15), self._window_bits)
        if server_bits < 9:
            return None
        self.server_max_window_bits = server_bits
        if server_bits < 15:
            response.append(f"server_max_window_bits={server_bits}")

        if "client_max_window_bits" in params:
            client_bits = min(int(params["client_max_window_bits"] or 15), self._window_bits)
            response.append(f"client_max_window_bits={client_bits}")
            # Inflating with a larger window than the peer's is always safe.
            self.client_max_window_bits = max(client_bits, 9)
        else:
            self.client_max_window_bits = 15

        self._enabled = True
        return "; ".join(response)

    # -- 2. bounded inflating, and control frames inside a message ---------------

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        # A ping between two fragments of a compressed message must not touch
        # the message's state; wsproto's own code would reset it.
        self._in_control_frame = opcode.iscontrol()
        if self._in_control_frame:
            return CloseReason.PROTOCOL_ERROR if rsv.rsv1 else RsvBits(False, False, False)
        starts_message = self._inbound_compressed is None
        if starts_message and rsv.rsv1 and self._decompressor is None:
            inflater = _BoundedInflater(self.client_max_window_bits, self._max_message_size)
            self._decompressor = inflater  # type: ignore[assignment]
        if starts_message and isinstance(self._decompressor, _BoundedInflater):
            self._decompressor.room = self._max_message_size
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if self._in_control_frame:
            return data
        try:
            return super().frame_inbound_payload_data(proto, data)
        except _MessageTooBig:
            return CloseReason.MESSAGE_TOO_BIG

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if self._in_control_frame:
            return None
        try:
            return super().frame_inbound_complete(proto, fin)
        except _MessageTooBig:
            return CloseReason.MESSAGE_TOO_BIG

    # -- 3 and 4. what is compressed, and with how much memory -------------------

    def frame_outbound(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes, fin: bool
    ) -> tuple[RsvBits, bytes]:
        if opcode.iscontrol():
            return rsv, data
        if opcode is not Opcode.CONTINUATION:
            # Decided on a message's first frame; its continuation frames follow suit.
            self._compress_this_message = not (fin and len(data) < self._min_size)
        if not self._compress_this_message:
            return rsv, data
        if self._compressor is None:
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.server_max_window_bits, _MEMORY_LEVEL
            )
        return super().frame_outbound(proto, opcode, rsv, data, fin)


_PARAMETERS_WITH_VALUE = {"server_max_window_bits", "client_max_window_bits"}
_PARAMETERS_WITHOUT_VALUE = {"server_no_context_takeover", "client_no_context_takeover"}


def _parse_offer(offer: str) -> dict[str, str] | None:
    """An offer's parameters (``""`` for no value), or ``None`` if the offer is malformed.

    RFC 7692 section 7.1: a server declines an offer with an unknown parameter,
    a repeated one or a value out of range.
    """
    params: dict[str, str] = {}
    for part in offer.split(";")[1:]:
        name, _, value = (p.strip() for p in part.partition("="))
        value = value.strip('"')
        if name in params or name not in _PARAMETERS_WITH_VALUE | _PARAMETERS_WITHOUT_VALUE:
            return None
        if name in _PARAMETERS_WITHOUT_VALUE and value:
            return None
        if name == "server_max_window_bits" and not _is_window_bits(value):
            return None
        if name == "client_max_window_bits" and value and not _is_window_bits(value):
            return None
        params[name] = value
    return params


def _is_window_bits(value: str) -> bool:
    return value.isdigit() and 8 <= int(value) <= 15 and not value.startswith("0")
