from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from managed_websocket import _messages
from managed_websocket._messages import decode_json_or_raw, encode_outgoing


@pytest.fixture(autouse=True, params=["stdlib", "msgspec"])
def json_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both paths of the default decode: json's own C scanner, and msgspec
    (the ``[fast]`` extra, installed with the test dependencies) in front of it."""
    if request.param == "msgspec":
        msgspec_json = pytest.importorskip("msgspec.json")
        monkeypatch.setattr(_messages, "_fast_loads", msgspec_json.Decoder().decode)
    else:
        monkeypatch.setattr(_messages, "_fast_loads", None)
    return str(request.param)


def reference(message: str | bytes) -> object:
    """The rule with json.loads, as the default decode was written before it got faster."""
    if not isinstance(message, str):
        return message
    if message.lstrip(" \t\n\r")[:1] not in ("{", "["):
        return message
    try:
        return json.loads(message)
    except (ValueError, RecursionError):
        return message


def same(a: object, b: object) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0, NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


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


EDGE_CASES = [
    # non-JSON text that starts like JSON
    "{hello}",
    "{not json",
    "[1,2",
    '{"a":1} trailing',
    '{"a":1}\n \t',  # JSON whitespace after the value is allowed
    '{"a":1}\u00a0',  # other whitespace is not
    "[01]",
    "[1,]",
    "{\f}",
    '["a\x01b"]',  # a raw control character in a string
    "{'a': 1}",
    # numbers: big ints, out of range floats, precision, NaN and Infinity literals
    "[123456789012345678901234567890, -99999999999999999999]",
    "[18446744073709551615, 18446744073709551616, -9223372036854775809]",
    "[" + "9" * 4300 + "]",  # the longest int str() allows
    "[" + "9" * 4301 + "]",  # one digit more: json.loads refuses
    "[1e400, -1e400, 1e-400, 0e999]",
    "[0.1, 1.0, -0.0, 1E5, 2.5e-3, 12345678901234567890.0, 5e-324, 1.7976931348623157e308]",
    "[-0, 0, 1]",
    "[NaN, Infinity, -Infinity]",
    '{"a": NaN}',
    # duplicate keys: the last value wins, at the first key's place
    '{"a":1,"b":2,"a":3}',
    # strings: escapes, surrogates (paired, lone, escaped and raw), NUL, non-ASCII
    '["\\ud83d\\ude00", "\\u00e9", "\\n\\t\\"\\\\\\/"]',
    '["\\ud800"]',
    '["\ud800"]',
    '["a\\u0000b"]',
    '{"\u00e9":"\u65e5\u672c"}',
    # nesting that parses everywhere
    "[" * 200 + "]" * 200,
    '{"a":' * 200 + "1" + "}" * 200,
    # a byte-order mark is not JSON whitespace
    "\ufeff{}",
]


@pytest.mark.parametrize("message", EDGE_CASES)
def test_decode_gives_what_json_loads_gives(message: str) -> None:
    assert same(decode_json_or_raw(message), reference(message))


def test_decode_leaves_nesting_too_deep_for_the_stack_raw() -> None:
    # Deeper than any recursion limit allows: both paths give the text back. (Near the limit,
    # json.loads itself parses or refuses depending on how deep the caller's stack is; and
    # Python 3.13's C scanner is bounded by the C stack, not getrecursionlimit(): 4 x 1,000
    # levels parse there, so the depth is 100,000 as in the hostile-nesting test above.)
    depth = max(sys.getrecursionlimit() * 4, 100_000)
    for message in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        assert decode_json_or_raw(message) is message


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=st.lists(JSON_VALUES, max_size=4) | st.dictionaries(st.text(), JSON_VALUES))
def test_decode_of_any_json_container_is_json_loads(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert same(decode_json_or_raw(text), reference(text))


@settings(max_examples=300, deadline=None)
@given(
    text=st.tuples(
        st.sampled_from(["{", "[", " [", "\n{"]),
        st.text(alphabet='{}[]",:0123456789.eE+-truefalsn INaIfiy\\u\n\t ', max_size=40),
    ).map("".join)
)
def test_decode_of_json_like_text_is_json_loads(text: str) -> None:
    assert same(decode_json_or_raw(text), reference(text))
