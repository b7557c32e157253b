"""permessage-deflate (RFC 7692) for a server that faces the internet. No I/O.

``negotiate`` picks the offer to honour and says what to answer; ``Deflate``
compresses what we send and inflates what comes, for ``protocol.py``. Rules:

1. Negotiation follows RFC 7692 section 7.1 to the letter. The first offer
   that can be honoured is taken; an offer with an unknown, repeated or
   out-of-range parameter is skipped. ``server_no_context_takeover`` and
   ``client_no_context_takeover`` are accepted as the client asks. Our
   window is ``window_bits`` or the client's ``server_max_window_bits``,
   whichever is smaller (an offer that leaves 8 is skipped: zlib cannot
   compress with a 256-byte window). The client's window is limited to
   ``window_bits`` when the client says it can be limited; otherwise it may
   use 15 bits and is inflated with 15.
2. A decompression bomb cannot allocate more than ``max_message_size``:
   inflating stops one byte past the room left in the message, and the
   caller fails the connection with 1009.
3. Messages shorter than ``min_size`` bytes are sent uncompressed, since
   deflate's overhead is larger than what it saves on them. The choice is
   made on a message's first frame; its continuation frames follow suit.
4. The compressor uses zlib memory level 5 instead of 8, as the
   ``websockets`` library does: a quarter of the memory for a slightly
   worse ratio, which matters with thousands of connections. Both zlib
   objects are made when first needed, and dropped after each message when
   context takeover is off.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NAME", "Deflate", "MessageTooBig", "Parameters", "negotiate", "offers_deflate"]

NAME = "permessage-deflate"
_MEMORY_LEVEL = 5
# Every compressed message ends with these four bytes, which are left off on the wire (RFC 7692 7.2.1).
_TAIL = b"\x00\x00\xff\xff"

_PARAMETERS_WITH_VALUE = {"server_max_window_bits", "client_max_window_bits"}
_PARAMETERS_WITHOUT_VALUE = {"server_no_context_takeover", "client_no_context_takeover"}


class MessageTooBig(Exception):
    """Inflating the current message went past the room it had."""


@dataclass(frozen=True, slots=True)
class Parameters:
    """What was agreed: each side's window, and whether each side starts every message afresh."""

    server_window_bits: int = 15
    client_window_bits: int = 15
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False


def offers_deflate(offers: Sequence[object]) -> bool:
    """Whether a client's ``Sec-WebSocket-Extensions`` offers include permessage-deflate."""
    return any(isinstance(offer, str) and offer.split(";", 1)[0].strip() == NAME for offer in offers)


def negotiate(offers: Sequence[str], window_bits: int) -> tuple[str, Parameters] | None:
    """The answer for the first permessage-deflate offer that can be honoured (the value of our
    ``Sec-WebSocket-Extensions`` header) and what it agrees; ``None`` if there is none."""
    for offer in offers:
        if offer.split(";", 1)[0].strip() != NAME:
            continue
        accepted = _accept(offer, window_bits)
        if accepted is not None:
            return accepted
    return None


def _accept(offer: str, window_bits: int) -> tuple[str, Parameters] | None:
    params = _parse_offer(offer)
    if params is None:
        return None
    response = [NAME]
    server_no_takeover = "server_no_context_takeover" in params
    client_no_takeover = "client_no_context_takeover" in params
    if server_no_takeover:
        response.append("server_no_context_takeover")
    if client_no_takeover:
        response.append("client_no_context_takeover")
    server_bits = min(int(params.get("server_max_window_bits") or 15), window_bits)
    if server_bits < 9:
        return None
    if server_bits < 15:
        response.append(f"server_max_window_bits={server_bits}")
    client_bits = 15
    if "client_max_window_bits" in params:
        limited = min(int(params["client_max_window_bits"] or 15), window_bits)
        response.append(f"client_max_window_bits={limited}")
        # Inflating with a larger window than the peer's is always safe.
        client_bits = max(limited, 9)
    agreed = Parameters(server_bits, client_bits, server_no_takeover, client_no_takeover)
    return "; ".join(response), agreed


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


class Deflate:
    """One connection's compressor and inflater, by the rules in the module docstring."""

    __slots__ = ("_compress_message", "_compressor", "_inflater", "min_size", "parameters")

    def __init__(self, parameters: Parameters, *, min_size: int) -> None:
        self.parameters = parameters
        self.min_size = min_size
        self._compressor: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None
        self._compress_message = False

    # -- sending -------------------------------------------------------------------

    def compress(self, data: bytes, *, first: bool, last: bool) -> tuple[bool, bytes]:
        """One frame's payload: whether it is compressed (RSV1 on the message's first frame), and
        the bytes to send."""
        if first:
            self._compress_message = not (last and len(data) < self.min_size)
        if not self._compress_message:
            return False, data
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -self.parameters.server_window_bits,
                _MEMORY_LEVEL,
            )
        out = compressor.compress(data)
        if last:
            out += compressor.flush(zlib.Z_SYNC_FLUSH)
            if out.endswith(_TAIL):
                out = out[:-4]
            if self.parameters.server_no_context_takeover:
                self._compressor = None
        return True, out

    # -- receiving -------------------------------------------------------------------

    def inflate(self, data: bytes, room: int, *, last: bool) -> bytes:
        """Inflate one frame of a compressed message, producing at most ``room`` bytes.

        Raises:
            MessageTooBig: more than ``room`` bytes would come out.
            zlib.error: ``data`` is not deflate data.
        """
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(-self.parameters.client_window_bits)
        # Asking for one byte more than the room tells "exactly full" from "too big".
        out = inflater.decompress(data, room + 1)
        if last and len(out) <= room:
            out += inflater.decompress(_TAIL, room + 1 - len(out))
            if self.parameters.client_no_context_takeover:
                self._inflater = None
        if len(out) > room:
            self._inflater = None  # the connection fails; nothing more is inflated
            raise MessageTooBig
        return out
