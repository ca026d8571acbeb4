"""permessage-deflate (RFC 7692) for a client: the offer, the server's answer, and the per-message
inflate and deflate. Sans-I/O: no sockets, only zlib.

The offer is ``permessage-deflate; client_max_window_bits``: we compress with whatever window the
server allows, and let the server use its own (up to 15 bits, the default). :func:`negotiate`
checks the server's answer against RFC 7692 section 7 and returns the :class:`DeflateParams` both
sides then use, or raises :class:`DeflateNegotiationError` on an illegal answer.

Where real servers are known to deviate, we are lenient (and only there):

- ``client_max_window_bits`` without a value in the *response* (RFC 7692 7.1.2.2 requires one):
  read as 15, the default, which constrains nothing.
- Parameter names in any letter case, values quoted (``"10"``; 7.1 allows quoted-string) and
  spaces around ``=`` are accepted.
- ``server_max_window_bits=8``: zlib cannot deflate with a 256-byte window (it silently uses 512),
  so a zlib-based server that agreed to 8 really sends 9-bit streams. We always inflate with the
  largest window (15 bits), which reads every smaller one.
- A server that ends a message's deflate stream with a final block (BFINAL=1) instead of a sync
  flush: the inflater starts afresh for the next message.

Outgoing messages shorter than :data:`COMPRESS_THRESHOLD` bytes go uncompressed (RFC 7692 allows
either for each message), and so does everything when the server limits our window to 8 bits
(zlib cannot honour that, see above).

The decompression-bomb guard: :meth:`Inflater.inflate` takes an output budget (what is left of
``max_message_size``) and never produces more than one byte over it; a message that would exceed
it raises :class:`InflatedTooBig` without ever being inflated whole.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final

__all__ = [
    "COMPRESS_THRESHOLD",
    "EXTENSION_NAME",
    "OFFER",
    "DeflateNegotiationError",
    "DeflateParams",
    "Deflater",
    "InflateError",
    "InflatedTooBig",
    "Inflater",
    "negotiate",
]

EXTENSION_NAME: Final = "permessage-deflate"
#: The ``Sec-WebSocket-Extensions`` value we offer.
OFFER: Final = "permessage-deflate; client_max_window_bits"
#: Outgoing messages shorter than this are sent uncompressed: deflate would not pay for itself.
COMPRESS_THRESHOLD: Final = 128
#: The end of a sync flush, removed by the sender and put back by the receiver (RFC 7692 7.2.1).
TAIL: Final = b"\x00\x00\xff\xff"
_MAX_WBITS: Final = 15
_COMPRESS_LEVEL: Final = 6


class DeflateNegotiationError(ValueError):
    """The server's ``Sec-WebSocket-Extensions`` answer is not a legal one for our offer."""


class InflateError(Exception):
    """The compressed payload is not valid deflate data."""


class InflatedTooBig(Exception):
    """The message inflates to more than its budget."""


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What was agreed: RFC 7692 section 7.1's four parameters, with their defaults."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = _MAX_WBITS
    client_max_window_bits: int = _MAX_WBITS


_BITS = re.compile(r"[89]|1[0-5]")  # 8..15, decimal, no leading zero (7.1.2.1)


def negotiate(values: list[str], *, offered: bool) -> DeflateParams | None:
    """Read the server's ``Sec-WebSocket-Extensions`` values (each header line one item).

    Return the agreed parameters, or None when the server did not accept permessage-deflate.
    ``offered``: whether we offered it (an answer to no offer is illegal, RFC 6455 4.1)."""
    accepted: list[str] = []
    for value in values:
        accepted.extend(item.strip() for item in value.split(",") if item.strip())
    if not accepted:
        return None
    if len(accepted) > 1:
        raise DeflateNegotiationError(f"server accepted more than one extension: {accepted!r}")
    name, *params = (part.strip() for part in accepted[0].split(";"))
    if name.lower() != EXTENSION_NAME or not offered:
        raise DeflateNegotiationError(f"server accepted an extension we did not offer: {name!r}")
    seen: dict[str, str | None] = {}
    for param in params:
        key, sep, raw = param.partition("=")
        key = key.strip().lower()
        if key in seen:
            raise DeflateNegotiationError(f"{key} given twice")
        seen[key] = raw.strip().strip('"') if sep else None
    return _params(seen)


def _params(seen: dict[str, str | None]) -> DeflateParams:
    flags = []
    for key in ("server_no_context_takeover", "client_no_context_takeover"):
        present = key in seen
        if present and seen.pop(key) is not None:
            raise DeflateNegotiationError(f"{key} takes no value")
        flags.append(present)
    server_bits = client_bits = _MAX_WBITS
    if "server_max_window_bits" in seen:
        server_bits = _window_bits("server_max_window_bits", seen.pop("server_max_window_bits"))
    if "client_max_window_bits" in seen:
        value = seen.pop("client_max_window_bits")
        # Lenient: a value is required in a response, but some servers echo the bare name.
        if value is not None:
            client_bits = _window_bits("client_max_window_bits", value)
    if seen:
        raise DeflateNegotiationError(f"unknown parameter {next(iter(seen))!r}")
    return DeflateParams(flags[0], flags[1], server_bits, client_bits)


def _window_bits(key: str, value: str | None) -> int:
    if value is None or not _BITS.fullmatch(value):
        raise DeflateNegotiationError(f"{key} must be 8 to 15, got {value!r}")
    return int(value)


class Inflater:
    """Inflates the server's compressed messages, one payload piece at a time."""

    __slots__ = ("_decompressor", "_reset")

    def __init__(self, params: DeflateParams) -> None:
        self._reset = params.server_no_context_takeover
        # Always the largest window: it reads streams made with any smaller one (see above).
        self._decompressor = zlib.decompressobj(-_MAX_WBITS)

    def inflate(self, data: bytes, last: bool, budget: int) -> bytes:
        """Inflate the next piece of a message's payload; ``last``: it ends the message.

        Produces at most ``budget`` bytes: one more would raise :class:`InflatedTooBig`, having
        inflated no further than that. Raises :class:`InflateError` for invalid data."""
        decompressor = self._decompressor
        limit = budget + 1 if budget >= 0 else 1  # max_length=0 would mean "no limit"
        try:
            # One call with the tail appended: a second call costs more than the copy.
            out = decompressor.decompress(data + TAIL if last else data, limit)
        except zlib.error as exc:
            raise InflateError(str(exc)) from None
        if len(out) > budget or decompressor.unconsumed_tail:
            raise InflatedTooBig
        if last and (self._reset or decompressor.eof):
            self._decompressor = zlib.decompressobj(-_MAX_WBITS)
        return out


class Deflater:
    """Compresses our outgoing messages; :meth:`compress` returns None to send one uncompressed."""

    __slots__ = ("_bits", "_compressor", "_reset")

    def __init__(self, params: DeflateParams) -> None:
        self._reset = params.client_no_context_takeover
        # zlib turns a raw 8-bit window into 9 bits: then we compress nothing (see above).
        self._bits = params.client_max_window_bits if params.client_max_window_bits > 8 else 0
        self._compressor: zlib._Compress | None = None

    def compress(self, data: bytes) -> bytes | None:
        """The message's compressed payload (sync-flushed, tail removed), or None: send as is."""
        if len(data) < COMPRESS_THRESHOLD or not self._bits:
            return None
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(_COMPRESS_LEVEL, zlib.DEFLATED, -self._bits)
            if not self._reset:
                self._compressor = compressor
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(TAIL) else out
