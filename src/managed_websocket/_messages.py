"""Application-level message encoding: what ``send()`` puts on the wire, what ``receive()`` returns.

Pure functions, no I/O. Subscription requests are built in ``_subscriptions.py``.
"""

from __future__ import annotations

import json

__all__ = [
    "decode_json_or_raw",
    "encode_outgoing",
]

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
    unchanged. Binary frames are returned as bytes.
    """
    if not isinstance(message, str):
        return message
    # Cheap test first: most feed messages start with "{", and only a message that starts with
    # whitespace is copied (by lstrip) to find its first real character.
    first = message[:1]
    if first in _JSON_WHITESPACE_CHARS:
        first = message.lstrip(_JSON_WHITESPACE)[:1]
    if first not in _CONTAINER_OPENERS:
        return message
    try:
        return json.loads(message)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError; RecursionError is a hostile "[[[[...". Neither may
        # kill the receive loop: the consumer gets the text and can decide.
        return message
