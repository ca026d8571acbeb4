"""Wire-level pieces shared by the server and the raw floors: frames, masks and the HTTP upgrade.

Nothing here parses server frames: the raw floors only count bytes, and the server only reads the
small masked frames clients send it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

TEXT_PAYLOAD_SIZE = 100
TEXT_FRAME_SIZE = TEXT_PAYLOAD_SIZE + 2  # 2-byte header, unmasked
BINARY_PAYLOAD_SIZE = 64 * 1024
BINARY_FRAME_SIZE = BINARY_PAYLOAD_SIZE + 10  # 10-byte header (64-bit length), unmasked
BLOB_SIZE = 1024 * 1024  # the server writes pre-built blobs of about this size

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CLIENT_MASK = b"\x12\x34\x56\x78"


def json_payload(seq: int) -> bytes:
    """A trade-like JSON object of exactly TEXT_PAYLOAD_SIZE bytes."""
    fields: dict[str, object] = {
        "e": "trade",
        "s": "BTCUSDT",
        "t": seq,
        "p": "43210.12",
        "q": "0.00150000",
        "m": True,
        "pad": "",
    }
    missing = TEXT_PAYLOAD_SIZE - len(_compact(fields))
    if missing < 0:
        raise ValueError(f"sequence number {seq} does not fit in {TEXT_PAYLOAD_SIZE} bytes")
    fields["pad"] = "x" * missing
    payload = _compact(fields)
    assert len(payload) == TEXT_PAYLOAD_SIZE
    return payload


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


#: The 100-byte text message every echo client sends.
ECHO_TEXT = json_payload(0).decode()


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask`` (RFC 6455 5.3); its own inverse."""
    size = len(payload)
    if size == 0:
        return payload
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None, rsv1: bool = False
) -> bytes:
    """One WebSocket frame; masked (as a client must send it) when ``mask`` is given; ``rsv1``:
    a compressed message's first frame (permessage-deflate)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def close_frame(code: int = 1000) -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code))


def text_blob() -> bytes:
    """About BLOB_SIZE bytes of consecutive 100-byte JSON text frames."""
    count = BLOB_SIZE // TEXT_FRAME_SIZE
    return b"".join(frame(OP_TEXT, json_payload(seq)) for seq in range(count))


def deflate_text_blob() -> bytes:
    """The text blob's messages as permessage-deflate frames (RSV1), context takeover on: each
    message sync-flushed (the 00 00 ff ff tail removed, RFC 7692 7.2.1), the last one full-flushed
    so that nothing after it refers back: the blob can be written again and again."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    count = BLOB_SIZE // TEXT_FRAME_SIZE
    frames = []
    for seq in range(count):
        mode = zlib.Z_FULL_FLUSH if seq == count - 1 else zlib.Z_SYNC_FLUSH
        data = compressor.compress(json_payload(seq)) + compressor.flush(mode)
        assert data.endswith(b"\x00\x00\xff\xff")
        frames.append(frame(OP_TEXT, data[:-4], rsv1=True))
    return b"".join(frames)


def binary_blob() -> bytes:
    """About BLOB_SIZE bytes of 64 KiB binary frames (random payloads)."""
    count = BLOB_SIZE // BINARY_PAYLOAD_SIZE
    return b"".join(frame(OP_BINARY, os.urandom(BINARY_PAYLOAD_SIZE)) for _ in range(count))


TRADE_PAYLOAD_SIZE = 200


def trade_payload(seq: int) -> bytes:
    """A Binance-style combined-stream trade of exactly TRADE_PAYLOAD_SIZE bytes: the realistic
    message of the decoded-throughput benchmark."""
    data: dict[str, object] = {
        "e": "trade",
        "E": 1_700_000_000_000 + seq,
        "s": "BTCUSDT",
        "t": 3_000_000_000 + seq,
        "p": "43210.12000000",
        "q": "0.00150000",
        "T": 1_700_000_000_000 + seq,
        "m": seq % 2 == 0,
        "M": True,
        "x": "",
    }
    missing = TRADE_PAYLOAD_SIZE - len(_compact({"stream": "btcusdt@trade", "data": data}))
    data["x"] = "x" * missing
    payload = _compact({"stream": "btcusdt@trade", "data": data})
    assert len(payload) == TRADE_PAYLOAD_SIZE
    return payload


def trades_blob() -> bytes:
    """About BLOB_SIZE bytes of consecutive 200-byte trade messages (text frames)."""
    count = BLOB_SIZE // (TRADE_PAYLOAD_SIZE + 4)  # 4-byte header: 126 + 16-bit length
    return b"".join(frame(OP_TEXT, trade_payload(seq)) for seq in range(count))


def masked_echo_frame() -> bytes:
    """The echo request as a raw client would put it on the wire."""
    return frame(OP_TEXT, ECHO_TEXT.encode(), mask=_CLIENT_MASK)


# The HTTP upgrade (RFC 6455 section 4)


def accept_token(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def upgrade_request(host: str, target: str) -> tuple[bytes, str]:
    """A client's upgrade request and the Sec-WebSocket-Key it used."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    return request.encode(), key


def upgrade_response(key: str, *, deflate: bool = False) -> bytes:
    """101 Switching Protocols, with no subprotocol, and no extension unless ``deflate``:
    then ``permessage-deflate`` with its defaults (context takeover, 15-bit windows)."""
    extension = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_token(key)}\r\n{extension}\r\n"
    ).encode()


@dataclass(frozen=True)
class Request:
    target: str
    key: str


def parse_request(head: bytes) -> Request:
    """The request target and Sec-WebSocket-Key of an upgrade request head (no validation)."""
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    key = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    return Request(target, key)


def split_head(buffer: bytes) -> tuple[bytes, bytes] | None:
    """``(head, rest)`` once ``buffer`` holds a whole HTTP head, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    return buffer[: end + 4], buffer[end + 4 :]


class FrameReader:
    """Parses the frames a client sends (masked, small); yields ``(first_byte, payload)``."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while (parsed := self._next()) is not None:
            frames.append(parsed)
        return frames

    def _next(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        size, pos = buf[1] & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, pos = int.from_bytes(buf[2:4], "big"), 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, pos = int.from_bytes(buf[2:10], "big"), 10
        mask = None
        if buf[1] & 0x80:
            mask, pos = bytes(buf[pos : pos + 4]), pos + 4
        if len(buf) < pos + size:
            return None
        first, payload = buf[0], bytes(buf[pos : pos + size])
        del buf[: pos + size]
        return first, apply_mask(payload, mask) if mask is not None else payload
