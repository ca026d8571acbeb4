from __future__ import annotations

import pytest

from managed_websocket._messages import decode_json_or_raw, encode_outgoing


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "subscribe", "channel": "a b"}, '{"type":"subscribe","channel":"a b"}'),
        ([1, "x", None, True], '[1,"x",null,true]'),
        ({}, "{}"),
        ([], "[]"),
        ({"nested": {"k": [1, 2]}}, '{"nested":{"k":[1,2]}}'),
        ("hello", "hello"),
        ("", ""),
        (b"\x00\x01", b"\x00\x01"),
        (b"", b""),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"cd"), b"cd"),
    ],
)
def test_encode_outgoing(data: object, expected: str | bytes) -> None:
    result = encode_outgoing(data)
    assert result == expected
    assert type(result) is type(expected)


def test_encode_outgoing_bytes_never_become_repr_text() -> None:
    # The replaced system sent the text "b'..'" (SPEC section 6).
    assert encode_outgoing(b"ping") == b"ping"


@pytest.mark.parametrize(
    ("data", "type_name"),
    [(42, "int"), (1.5, "float"), (None, "NoneType"), ((1, 2), "tuple"), ({1}, "set")],
)
def test_encode_outgoing_rejects_other_types(data: object, type_name: str) -> None:
    with pytest.raises(TypeError, match=rf"^cannot send {type_name}: "):
        encode_outgoing(data)


def test_encode_outgoing_unserialisable_value_inside_dict() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_outgoing({"x": object()})


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"a":1}', {"a": 1}),
        ("[1,2]", [1, 2]),
        (' \t\r\n{"a":[]}', {"a": []}),
        ("\n[]", []),
        ("42", "42"),
        ("true", "true"),
        ("null", "null"),
        ('"quoted"', '"quoted"'),
        ("", ""),
        ("   ", "   "),
        ("hello", "hello"),
        ("{not json", "{not json"),
        ("[1,2", "[1,2"),
        ('{"a":1} trailing', '{"a":1} trailing'),
        ("\u00a0{}", "\u00a0{}"),  # not JSON whitespace: stays text
        (b'{"a":1}', b'{"a":1}'),
        (b"", b""),
    ],
)
def test_decode_json_or_raw(message: str | bytes, expected: object) -> None:
    result = decode_json_or_raw(message)
    assert result == expected
    assert type(result) is type(expected)


def test_decode_json_or_raw_returns_the_same_str_object_when_not_json() -> None:
    message = "plain text"
    assert decode_json_or_raw(message) is message


def test_decode_json_or_raw_survives_hostile_nesting() -> None:
    message = "[" * 100_000 + "]" * 100_000
    assert decode_json_or_raw(message) is message
