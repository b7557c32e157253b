"""permessage-deflate (RFC 7692): negotiation, framing, context takeover and the size limit.

Negotiation and framing are checked byte by byte: a client made of a memory
stream, zlib and hand-built frames, so nothing on the client side can hide a
server mistake. Round trips over real sockets use the ``websockets`` client.
"""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest
import trio
from websockets.trio.client import connect

import trio_ws

from ..helpers import IO_DEADLINE, MemoryListener, start_memory_server
from ..raw import BINARY, CLOSE, CONTINUATION, PING, PONG, RSV1, TEXT, Peer, client_frame


def deflate(data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """``data`` as one permessage-deflate message body: a sync flush without its 4-byte tail."""
    compressor = compressor or zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def inflate(body: bytes, window_bits: int = 15) -> bytes:
    return zlib.decompressobj(-window_bits).decompress(body + b"\x00\x00\xff\xff")


async def deflate_client(
    nursery: trio.Nursery, listener: MemoryListener, offer: str | None, **options: object
) -> Peer[trio.abc.Stream]:
    """A raw client on ``listener`` whose handshake offered ``offer`` (or no extension)."""
    await start_memory_server(nursery, trio_ws.echo_app(), listener, **options)
    client = Peer(await listener.connect())
    await client.upgrade(extra=[f"Sec-WebSocket-Extensions: {offer}"] if offer is not None else [])
    return client


# -- negotiation -----------------------------------------------------------------

NEGOTIATION = {
    "plain offer: our window is announced": (
        "permessage-deflate",
        "permessage-deflate; server_max_window_bits=12",
    ),
    "client window may be limited: it is": (
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    ),
    "smaller windows asked for are kept": (
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
    ),
    "larger windows asked for are capped": (
        "permessage-deflate; server_max_window_bits=15; client_max_window_bits=15",
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
    ),
    "both no_context_takeover flags are honoured": (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=12",
    ),
    "a window of 8 is declined (zlib cannot deflate with it)": (
        "permessage-deflate; server_max_window_bits=8",
        None,
    ),
    "the first acceptable offer is taken": (
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover, "
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
    ),
    "unknown parameter": ("permessage-deflate; max_window=10", None),
    "repeated parameter": (
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        None,
    ),
    "window out of range": ("permessage-deflate; server_max_window_bits=16", None),
    "server window without a value": ("permessage-deflate; server_max_window_bits", None),
    "value on a flag": ("permessage-deflate; client_no_context_takeover=1", None),
    "another extension": ("x-webkit-deflate-frame", None),
    "no offer": (None, None),
}


@pytest.mark.parametrize(("offer", "answer"), NEGOTIATION.values(), ids=NEGOTIATION.keys())
async def test_negotiation_follows_rfc_7692(
    nursery: trio.Nursery, memory_listener: MemoryListener, offer: str | None, answer: str | None
) -> None:
    """The server answers each offer as RFC 7692 section 7.1 says, and declines what it cannot honour."""
    client = await deflate_client(nursery, memory_listener, offer)
    assert client.headers.get("sec-websocket-extensions") == answer


async def test_full_window_is_not_announced(nursery: trio.Nursery, memory_listener: MemoryListener) -> None:
    """With compression_window_bits=15 (the protocol's default) there is nothing to announce."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate", compression_window_bits=15)
    assert client.headers.get("sec-websocket-extensions") == "permessage-deflate"


async def test_compression_can_be_turned_off(nursery: trio.Nursery, memory_listener: MemoryListener) -> None:
    """With compression=False the offer is ignored and the connection works uncompressed."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate", compression=False)
    assert client.headers.get("sec-websocket-extensions") is None
    await client.send(client_frame(TEXT, b"plain" * 20))
    assert await client.message() == (0, TEXT, b"plain" * 20)
    # Without the extension, RSV1 is a protocol error.
    await client.send(client_frame(TEXT, deflate(b"x" * 100), rsv=RSV1))
    _, opcode, payload = await client.message()
    assert (opcode, payload[:2]) == (CLOSE, (1002).to_bytes(2, "big"))


# -- framing -------------------------------------------------------------------------


async def test_large_messages_are_compressed_small_ones_are_not(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Replies of compression_min_size bytes or more carry RSV1 and deflate; shorter ones go as they are."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate", compression_min_size=64)
    await client.send(client_frame(TEXT, b"a" * 63))
    assert await client.message() == (0, TEXT, b"a" * 63)

    message = b"trio_ws " * 500
    await client.send(client_frame(BINARY, deflate(message), rsv=RSV1))
    rsv, opcode, payload = await client.message()
    assert (rsv, opcode) == (RSV1, BINARY)
    assert len(payload) < len(message) // 10
    assert inflate(payload, window_bits=12) == message


async def test_fragmented_message_with_a_ping_between_fragments(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """A Ping between two fragments of a compressed message is answered, and the message is intact."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate")
    message = b"fragments and pings " * 50
    body = deflate(message)
    await client.send(
        client_frame(TEXT, body[:10], fin=False, rsv=RSV1),
        client_frame(PING, b"are you there"),
        client_frame(CONTINUATION, body[10:]),
    )
    assert await client.message() == (0, PONG, b"are you there")
    rsv, opcode, payload = await client.message()
    assert (rsv, opcode) == (RSV1, TEXT)
    assert inflate(payload, window_bits=12) == message


@pytest.mark.parametrize("takeover", [True, False])
async def test_server_context_takeover_as_the_client_asks(
    nursery: trio.Nursery, memory_listener: MemoryListener, takeover: bool
) -> None:
    """Without server_no_context_takeover a repeated message compresses to almost nothing; with it,
    every message is compressed afresh, so the client may inflate each one on its own."""
    offer = "permessage-deflate" if takeover else "permessage-deflate; server_no_context_takeover"
    client = await deflate_client(nursery, memory_listener, offer)
    message = bytes(range(256)) * 4
    replies = []
    for _ in range(2):
        await client.send(client_frame(BINARY, deflate(message), rsv=RSV1))
        rsv, _, payload = await client.message()
        assert rsv == RSV1
        replies.append(payload)
    if takeover:
        assert len(replies[1]) < len(replies[0]) // 4
        inflater = zlib.decompressobj(-12)
        assert [inflater.decompress(r + b"\x00\x00\xff\xff") for r in replies] == [message, message]
    else:
        assert replies[0] == replies[1]
        assert inflate(replies[1], window_bits=12) == message


async def test_client_no_context_takeover_resets_the_inflater(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """Once client_no_context_takeover is agreed, the server inflates each message afresh: a client
    that still refers back to its previous message has broken the agreement and gets 1007."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate; client_no_context_takeover")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    message = bytes(range(256)) * 4
    await client.send(client_frame(BINARY, deflate(message, compressor), rsv=RSV1))
    assert inflate((await client.message())[2], window_bits=12) == message
    await client.send(client_frame(BINARY, deflate(message, compressor), rsv=RSV1))
    _, opcode, payload = await client.message()
    assert (opcode, payload[:2]) == (CLOSE, (1007).to_bytes(2, "big"))


# -- the size limit applies after inflating -----------------------------------------


async def test_a_message_at_the_limit_inflates(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """A compressed message that inflates to exactly max_message_size is accepted and echoed."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate", max_message_size=100_000)
    message = b"\x00" * 100_000
    await client.send(client_frame(BINARY, deflate(message), rsv=RSV1))
    _, opcode, payload = await client.message()
    assert opcode == BINARY and inflate(payload, window_bits=12) == message


async def test_decompression_bomb_gets_1009_without_inflating_it(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """64 MiB of zeros deflates to about 64 kB. The server stops inflating just past max_message_size
    (1 MiB), answers Close 1009, and never holds anything near 64 MiB."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate", max_message_size=1 << 20)
    bomb = deflate(b"\x00" * (64 << 20))
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        await client.send(client_frame(BINARY, bomb, rsv=RSV1))
        _, opcode, payload = await client.message()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opcode == CLOSE
    assert payload == (1009).to_bytes(2, "big") + b"decompressed message larger than 1048576 bytes"
    assert peak < 8 << 20


# -- an independent client over real sockets -----------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_websockets_client_round_trip(echo_server: trio_ws.Server, compression: str | None) -> None:
    """The websockets client, with compression on and off: text and binary, small and large, come back."""
    with trio.fail_after(IO_DEADLINE):
        async with connect(echo_server.ws_url(), compression=compression) as ws:
            names = [extension.name for extension in ws.protocol.extensions]
            assert names == (["permessage-deflate"] if compression else [])
            messages: list[str | bytes] = ["hi", "trio " * 10_000, b"\x00\x01", bytes(range(256)) * 1000]
            for message in messages:
                await ws.send(message)
                assert await ws.recv() == message


async def test_client_window_is_15_bits_unless_the_client_agreed_to_less(
    nursery: trio.Nursery, memory_listener: MemoryListener
) -> None:
    """A client that did not offer client_max_window_bits may refer 8 kB back (past our 12-bit window):
    the server inflates its messages with the full 15-bit window."""
    client = await deflate_client(nursery, memory_listener, "permessage-deflate")
    block = random.Random(0).randbytes(8192)
    message = block + block  # the second copy is one back-reference 8192 bytes away
    body = deflate(message)
    # In two frames, so the reference reaches into the inflater's window, not into one output buffer.
    await client.send(
        client_frame(BINARY, body[:8192], fin=False, rsv=RSV1), client_frame(CONTINUATION, body[8192:])
    )
    _, opcode, payload = await client.message()
    assert opcode == BINARY and inflate(payload, window_bits=12) == message
