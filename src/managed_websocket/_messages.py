"""Application-level message encoding: what ``send()`` puts on the wire, what ``receive()`` returns.

Pure functions, no I/O. Subscription requests are built in ``_subscriptions.py``.

The default ``decode`` parses with the C scanner that :func:`json.loads` itself runs, called
directly: ``json.loads`` spends more on its Python layers (three calls, two regex matches for
whitespace) than the scanner spends on a 200-byte message. With the ``[fast]`` extra installed
(msgspec), msgspec parses first, and anything it refuses goes to that scanner, so the result is
the one ``json.loads`` gives: msgspec refuses exactly what it would read differently (NaN and
Infinity, numbers out of float range, lone surrogates); big integers and duplicate keys
(the last wins) it reads as ``json.loads`` does (tests/test_messages.py checks these cases).
"""

from __future__ import annotations

import json
import json.decoder
from collections.abc import Callable
from typing import Any

__all__ = [
    "FAST_JSON",
    "decode_json_or_raw",
    "encode_outgoing",
]

# The scanner json.loads uses (the C one where CPython has it): (value, end) for the JSON value
# that starts at an index; StopIteration if none does there.
_decoder: Any = json.decoder.JSONDecoder()
_scan_once: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once


def _load_fast() -> Callable[[str], Any] | None:
    try:
        import msgspec.json
    except ImportError:
        return None
    return msgspec.json.Decoder().decode


_fast_loads = _load_fast()

#: Whether the default ``decode`` parses with msgspec (the ``[fast]`` extra is installed); the
#: benchmarks report it.
FAST_JSON = _fast_loads is not None

# JSON's own whitespace (RFC 8259 section 2); str.lstrip() with no argument would strip more.
_JSON_WHITESPACE = " \t\n\r"
_JSON_WHITESPACE_CHARS = frozenset(_JSON_WHITESPACE)
_CONTAINER_OPENERS = ("{", "[")


def encode_outgoing(data: object) -> str | bytes:
    """Turn what the caller passed to ``send()`` into a text (``str``) or binary (``bytes``) frame.

    dict and list become compact JSON text; str is sent as text; bytes, bytearray and memoryview
    are sent as binary. Anything else raises :class:`TypeError` naming its type. Values inside a
    dict or list that JSON cannot encode raise :class:`TypeError` from :func:`json.dumps`.
    """
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        # bytes(), never str(): the replaced system sent the text "b'..'" (SPEC section 6).
        return bytes(data)
    if isinstance(data, (dict, list)):
        return json.dumps(data, separators=(",", ":"))
    raise TypeError(
        f"cannot send {type(data).__name__}: expected dict, list, str, bytes, bytearray or memoryview"
    )


def decode_json_or_raw(message: str | bytes) -> object:
    """The default ``decode``: a JSON object or array becomes a dict or list; the rest stays raw.

    Only text whose first non-whitespace character is ``{`` or ``[`` is parsed, so a text frame
    such as ``"42"``, ``"true"`` or ``"null"`` is returned as that str, not as a Python scalar:
    feeds send objects, and a ticker id that happens to look like a number should not change type.
    Text that starts like JSON but does not parse (or nests too deeply to parse) is returned
    unchanged. Binary frames are returned as bytes. The result is what :func:`json.loads` gives;
    with the ``[fast]`` extra installed (``pip install managed-websocket[fast]``: msgspec) it
    comes faster.
    """
    if not isinstance(message, str):
        return message
    # Cheap test first: most feed messages start with "{", and only a message that starts with
    # whitespace is copied (by lstrip) to find its first real character.
    first = message[:1]
    start = 0
    if first in _JSON_WHITESPACE_CHARS:
        start = len(message) - len(message.lstrip(_JSON_WHITESPACE))
        first = message[start : start + 1]
    if first not in _CONTAINER_OPENERS:
        return message
    if _fast_loads is not None:
        try:
            return _fast_loads(message)
        except (ValueError, RecursionError):
            # msgspec.DecodeError (a ValueError): not JSON, or a number or string msgspec will
            # not read as json.loads does; RecursionError: nested deeper than the stack allows.
            return _scan(message, start)  # json.loads's rules decide
    return _scan(message, start)


def _scan(message: str, start: int) -> object:
    """``json.loads(message)``, or ``message`` itself where that raises; ``start``: the index of
    its first character that is not JSON whitespace (a "{" or "[")."""
    try:
        value, end = _scan_once(message, start)
    except (ValueError, StopIteration, RecursionError):
        # ValueError covers JSONDecodeError; StopIteration is the scanner's "no value at this
        # index" (e.g. "[1,]"), which json.loads turns into a JSONDecodeError; RecursionError is
        # a hostile "[[[[...". None may kill the receive loop: the consumer gets the text.
        return message
    # json.loads allows JSON whitespace after the value, nothing else.
    if end != len(message) and message[end:].strip(_JSON_WHITESPACE):
        return message
    return value
