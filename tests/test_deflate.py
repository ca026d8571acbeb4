"""permessage-deflate without sockets: the negotiation (``_deflate.negotiate``), the inflater's
budget (the decompression-bomb guard), the deflater, and the frame reader's compressed messages.

The bomb: 1 GiB of zeros deflated is about 1 MiB (deflate cannot do better than ~1032:1, so no
1 KiB frame inflates to 1 GiB; a 1037-byte one inflates to 1 MiB, tested too).
"""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from managed_websocket._deflate import (
    COMPRESS_THRESHOLD,
    OFFER,
    DeflateNegotiationError,
    DeflateParams,
    Deflater,
    InflatedTooBig,
    InflateError,
    Inflater,
    negotiate,
)
from managed_websocket._frames import Close, FrameReader, ProtocolFailure

MiB = 1 << 20
GiB = 1 << 30
DEFAULTS = DeflateParams()

# ---------------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("permessage-deflate", DEFAULTS),
        ("permessage-deflate; server_no_context_takeover", DeflateParams(True, False, 15, 15)),
        ("permessage-deflate; client_no_context_takeover", DeflateParams(False, True, 15, 15)),
        *[
            (
                f"permessage-deflate; server_max_window_bits={bits}",
                DeflateParams(False, False, bits),
            )
            for bits in range(8, 16)
        ],
        *[
            (
                f"permessage-deflate; client_max_window_bits={bits}",
                DeflateParams(False, False, 15, bits),
            )
            for bits in range(8, 16)
        ],
        # Lenient: RFC 7692 wants a value in a response; some servers echo the bare name.
        ("permessage-deflate; client_max_window_bits", DEFAULTS),
        (
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                "server_max_window_bits=10; client_max_window_bits=9"
            ),
            DeflateParams(True, True, 10, 9),
        ),
        # Lenient on form: letter case, a quoted value, spaces around "=".
        ('Permessage-Deflate; Server_Max_Window_Bits = "12"', DeflateParams(False, False, 12)),
    ],
)
def test_every_legal_answer_is_accepted(answer: str, expected: DeflateParams) -> None:
    assert negotiate([answer], offered=True) == expected


def test_no_answer_means_no_compression() -> None:
    assert negotiate([], offered=True) is None
    assert negotiate([], offered=False) is None
    assert negotiate([" , "], offered=True) is None


@pytest.mark.parametrize(
    "answer",
    [
        "permessage-deflate; server_max_window_bits",  # a value is required
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",  # no leading zeros
        "permessage-deflate; server_max_window_bits=ten",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; mystery_parameter",
        "x-webkit-deflate-frame",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; server_max_window_bits=10, x-other",
    ],
)
def test_an_illegal_answer_is_refused(answer: str) -> None:
    with pytest.raises(DeflateNegotiationError):
        negotiate([answer], offered=True)


def test_an_answer_to_no_offer_is_refused() -> None:
    with pytest.raises(DeflateNegotiationError, match="did not offer"):
        negotiate(["permessage-deflate"], offered=False)


def test_two_header_lines_are_two_extensions() -> None:
    with pytest.raises(DeflateNegotiationError, match="more than one"):
        negotiate(["permessage-deflate", "permessage-deflate"], offered=True)


def test_the_offer_lets_the_server_choose_our_window() -> None:
    assert OFFER == "permessage-deflate; client_max_window_bits"


# ---------------------------------------------------------------------------------- inflating


def server_compress(messages: list[bytes], *, takeover: bool = True, bits: int = 15) -> list[bytes]:
    """What a server sends: each message sync-flushed, the 00 00 ff ff tail removed."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = []
    for message in messages:
        if not takeover:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
        data = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


def test_inflates_messages_with_context_takeover() -> None:
    messages = [b"hello " * 100, b"hello " * 101, b"other"]
    inflater = Inflater(DEFAULTS)
    assert [inflater.inflate(m, True, MiB) for m in server_compress(messages)] == messages


def test_server_no_context_takeover_resets_the_inflater() -> None:
    messages = [b"abcdefgh" * 50, b"abcdefgh" * 50]
    independent = server_compress(messages, takeover=False)
    inflater = Inflater(DeflateParams(server_no_context_takeover=True))
    assert [inflater.inflate(m, True, MiB) for m in independent] == messages
    # The reset is real: a second message that refers back to the first cannot be read.
    shared = server_compress(messages)
    inflater = Inflater(DeflateParams(server_no_context_takeover=True))
    assert inflater.inflate(shared[0], True, MiB) == messages[0]
    with pytest.raises(InflateError):
        inflater.inflate(shared[1], True, MiB)


def test_inflates_in_pieces() -> None:
    message = bytes(range(256)) * 40
    [compressed] = server_compress([message])
    inflater = Inflater(DEFAULTS)
    pieces = [
        inflater.inflate(compressed[i : i + 7], False, MiB) for i in range(0, len(compressed), 7)
    ]
    pieces.append(inflater.inflate(b"", True, MiB))
    assert b"".join(pieces) == message


def test_a_small_window_stream_reads_with_any_agreed_window() -> None:
    # zlib deflates "8 bits" with 9: we inflate with 15 whatever was agreed.
    message = bytes(range(256)) * 8
    [compressed] = server_compress([message], bits=9)
    assert Inflater(DeflateParams(server_max_window_bits=8)).inflate(compressed, True, MiB) == (
        message
    )


def test_the_budget_is_exact() -> None:
    [compressed] = server_compress([b"x" * 1000])
    assert len(Inflater(DEFAULTS).inflate(compressed, True, 1000)) == 1000
    with pytest.raises(InflatedTooBig):
        Inflater(DEFAULTS).inflate(compressed, True, 999)
    with pytest.raises(InflatedTooBig):
        Inflater(DEFAULTS).inflate(compressed, True, 0)


def test_a_final_block_starts_a_fresh_stream() -> None:
    # Lenient: a server that ends a message with BFINAL=1 instead of a sync flush.
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    finished = compressor.compress(b"first" * 40) + compressor.flush(zlib.Z_FINISH)
    inflater = Inflater(DEFAULTS)
    assert inflater.inflate(finished, True, MiB) == b"first" * 40
    [second] = server_compress([b"second" * 40])
    assert inflater.inflate(second, True, MiB) == b"second" * 40


def test_invalid_data_is_an_inflate_error() -> None:
    with pytest.raises(InflateError):
        Inflater(DEFAULTS).inflate(b"\xff\xff\xff\xff", True, MiB)


def zero_bomb(inflated: int) -> bytes:
    """A compressed payload (no tail) that inflates to ``inflated`` zero bytes, built cheaply:
    1 MiB deflated and full-flushed is a byte-aligned piece that depends on nothing before it,
    so the pieces can be repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return piece * (inflated // MiB)


def test_the_bomb_is_what_it_claims() -> None:
    bomb = zero_bomb(GiB)
    assert len(bomb) < 1.1 * MiB
    # Every 1 MiB piece is the same independent stream; two of them inflate to 2 MiB of zeros.
    piece = bomb[: len(bomb) // 1024]
    assert bomb == piece * 1024
    assert Inflater(DEFAULTS).inflate(piece * 2, True, 4 * MiB) == bytes(2 * MiB)


def test_a_1_gib_bomb_stops_at_the_budget_without_inflating() -> None:
    bomb = zero_bomb(GiB)
    tracemalloc.start()
    try:
        with pytest.raises(InflatedTooBig):
            Inflater(DEFAULTS).inflate(bomb, True, 16 * MiB)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * MiB  # the 16 MiB budget (+1 byte) and zlib's buffers, never 1 GiB


def test_a_1_kib_frame_that_inflates_to_1_mib() -> None:
    [frame] = server_compress([bytes(MiB)])
    assert len(frame) < 1100
    with pytest.raises(InflatedTooBig):
        Inflater(DEFAULTS).inflate(frame, True, 64 * 1024)


# ---------------------------------------------------------------------------------- deflating


def client_inflate(payloads: list[bytes], *, takeover: bool = True) -> list[bytes]:
    decompressor = zlib.decompressobj(-15)
    out = []
    for payload in payloads:
        if not takeover:
            decompressor = zlib.decompressobj(-15)
        out.append(decompressor.decompress(payload + b"\x00\x00\xff\xff"))
    return out


def test_small_messages_go_uncompressed() -> None:
    deflater = Deflater(DEFAULTS)
    assert deflater.compress(b"x" * (COMPRESS_THRESHOLD - 1)) is None
    assert deflater.compress(b"x" * COMPRESS_THRESHOLD) is not None


def test_deflates_with_context_takeover() -> None:
    deflater = Deflater(DEFAULTS)
    messages = [b'{"type": "subscribe", "channel": "trades"}' * 4] * 3
    payloads = [deflater.compress(m) for m in messages]
    assert all(p is not None and not p.endswith(b"\x00\x00\xff\xff") for p in payloads)
    assert client_inflate([p for p in payloads if p is not None]) == messages
    # Takeover pays: the repeats are much smaller than the first.
    assert payloads[2] is not None
    assert payloads[0] is not None
    assert len(payloads[2]) < len(payloads[0]) / 2


def test_client_no_context_takeover_compresses_each_message_alone() -> None:
    deflater = Deflater(DeflateParams(client_no_context_takeover=True))
    messages = [b"abcdefgh" * 50] * 2
    payloads = [deflater.compress(m) for m in messages]
    assert payloads[0] == payloads[1]
    assert client_inflate([p for p in payloads if p is not None], takeover=False) == messages


def test_an_8_bit_client_window_sends_uncompressed() -> None:
    assert Deflater(DeflateParams(client_max_window_bits=8)).compress(b"x" * 1000) is None
    payload = Deflater(DeflateParams(client_max_window_bits=9)).compress(b"x" * 1000)
    assert payload is not None


# ---------------------------------------------------------------------------------- the reader


def frame(first: int, payload: bytes) -> bytes:
    """An unmasked server frame with the given first byte (FIN, RSV, opcode)."""
    length = len(payload)
    if length < 126:
        return bytes([first, length]) + payload
    if length < 65536:
        return bytes([first, 126]) + length.to_bytes(2, "big") + payload
    return bytes([first, 127]) + length.to_bytes(8, "big") + payload


CLOSE_1000 = frame(0x88, b"\x03\xe8")


def deflating_reader(max_size: int = MiB, params: DeflateParams = DEFAULTS) -> FrameReader:
    return FrameReader(max_size, Inflater(params))


def feed(reader: FrameReader, data: bytes, step: int | None = None) -> list[object]:
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        reader.receive_data(data[i : i + step])
    return list(reader.events())


@pytest.mark.parametrize("step", [None, 1, 3, 64])
def test_reader_inflates_compressed_messages(step: int | None) -> None:
    text = "héllo wörld " * 50
    blob = bytes(range(256)) * 20
    t, b = server_compress([text.encode(), blob])
    stream = frame(0xC1, t) + frame(0x82, b"plain") + frame(0xC2, b) + CLOSE_1000
    assert feed(deflating_reader(), stream, step) == [text, b"plain", blob, Close(1000, "")]


@pytest.mark.parametrize("step", [None, 1, 5])
def test_reader_inflates_a_fragmented_message(step: int | None) -> None:
    text = "fragmented " * 100
    [compressed] = server_compress([text.encode()])
    third = len(compressed) // 3
    stream = (
        frame(0x41, compressed[:third])  # RSV1 on the first frame only
        + frame(0x89, b"ping")
        + frame(0x00, compressed[third : 2 * third])
        + frame(0x80, compressed[2 * third :])
    )
    events = feed(deflating_reader(), stream, step)
    assert events[-1] == text
    assert len(events) == 2


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (frame(0x41, b"\x00") + frame(0xC0, b"\x00"), 1002),  # RSV1 on a continuation
        (frame(0xC9, b""), 1002),  # RSV1 on a ping
        (frame(0xA1, b"x"), 1002),  # RSV2
        (frame(0xE1, b"x"), 1002),  # RSV1 and RSV3
        (frame(0xC1, b"\xff\xff\xff\xff"), 1007),  # not deflate data
        (frame(0xC1, server_compress([b"\xff\xfe" * 100])[0]), 1007),  # not UTF-8
    ],
)
def test_reader_fails_what_deflate_forbids(stream: bytes, code: int) -> None:
    events = feed(deflating_reader(), stream)
    assert isinstance(events[-1], ProtocolFailure)
    assert events[-1].code == code


def test_reader_without_deflate_fails_rsv1() -> None:
    [compressed] = server_compress([b"x" * 200])
    [failure] = feed(FrameReader(MiB), frame(0xC1, compressed))
    assert failure == ProtocolFailure(1002, "reserved bit set without a negotiated extension")


def test_the_limit_counts_inflated_bytes() -> None:
    [compressed] = server_compress([b"x" * 1000])
    assert feed(deflating_reader(1000), frame(0xC2, compressed)) == [b"x" * 1000]
    events = feed(deflating_reader(999), frame(0xC2, compressed) + CLOSE_1000)
    assert events == [ProtocolFailure(1009, "message over 999 bytes"), Close(1000, "")]


@pytest.mark.parametrize("step", [None, 65536])
def test_reader_stops_a_1_gib_bomb_and_still_sees_the_close(step: int | None) -> None:
    bomb = frame(0xC2, zero_bomb(GiB))
    tracemalloc.start()
    try:
        events = feed(deflating_reader(16 * MiB), bomb + frame(0xC1, b"\x00") + CLOSE_1000, step)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Nothing delivered after the failure; the peer's close frame is still read.
    assert events == [ProtocolFailure(1009, f"message over {16 * MiB} bytes"), Close(1000, "")]
    assert peak < 48 * MiB


def test_reader_stops_a_fragmented_bomb() -> None:
    pieces = zero_bomb(64 * MiB)
    stream = frame(0x42, pieces[: len(pieces) // 2]) + frame(0x80, pieces[len(pieces) // 2 :])
    events = feed(deflating_reader(MiB), stream + CLOSE_1000, 4096)
    assert events == [ProtocolFailure(1009, f"message over {MiB} bytes"), Close(1000, "")]
