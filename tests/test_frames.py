"""The sans-I/O frame reader and writer (``_frames.py``), against wsproto and rule by rule.

The property tests feed the same bytes, cut at the same random places, to our FrameReader and to
a wsproto client connection, and compare whole messages, pings, pongs and the close or failure
code. The deliberate differences are few, and each is handled in one place, `_compare`:

- a payload length written in more bytes than needed: RFC 6455 5.2 asks senders for the minimal
  form but gives receivers no rule; we accept it (as the ``websockets`` library does), wsproto
  fails with 1002 (Autobahn has no case for it);
- a continuation frame without a message, or a new message inside a fragmented one: we fail as
  soon as the header is complete, wsproto at the frame's first payload byte. On a stream cut right
  after such a header we have failed and wsproto still waits; one more byte makes it agree.

wsproto has no message size limit, so 1009 is checked against a model of the frames instead.
"""

from __future__ import annotations

import codecs
import itertools
import os
import random
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from managed_websocket import _frames
from managed_websocket._frames import (
    Close,
    FrameReader,
    ProtocolFailure,
    close_payload,
    encode_frame,
)

UNLIMITED = 1 << 62

# Events in a comparable form: ("text", str), ("binary", bytes), ("ping", bytes),
# ("pong", bytes), ("close", code, reason), ("fail", code).
Outcome = tuple[object, ...]


# Building server frames


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length_bytes: int | None = None,
) -> bytes:
    """One frame as a server would send it (unmasked unless ``mask``), in the minimal length form
    unless ``length_bytes`` (0, 2 or 8) forces one."""
    n = len(payload)
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length_bytes == 0:
        header = bytes([first, mask_bit | n])
    elif length_bytes == 2:
        header = bytes([first, mask_bit | 126]) + struct.pack("!H", n)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header += mask
    return header + payload


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    return frame(0x8, b"" if code is None else struct.pack("!H", code) + reason)


# Running both readers


def ours(chunks: list[bytes], max_message_size: int = UNLIMITED) -> list[Outcome]:
    reader = FrameReader(max_message_size)
    outcomes: list[Outcome] = []
    for chunk in chunks:
        reader.receive_data(chunk)
        outcomes.extend(_outcome(event) for event in reader.events())
    return outcomes


def _outcome(event: _frames.Event) -> Outcome:
    if isinstance(event, str):
        return ("text", event)
    if isinstance(event, bytes):
        return ("binary", event)
    if isinstance(event, _frames.Ping):
        return ("ping", event.payload)
    if isinstance(event, _frames.Pong):
        return ("pong", event.payload)
    if isinstance(event, Close):
        return ("close", event.code, event.reason)
    return ("fail", event.code)


@dataclass
class WsprotoRun:
    outcomes: list[Outcome]
    connection: Connection
    failure_reason: str = ""  # wsproto's message for its failure, if it failed


def reference(chunks: list[bytes]) -> WsprotoRun:
    """wsproto's reading of the same bytes: a client connection, which starts OPEN."""
    conn = Connection(ConnectionType.CLIENT)
    run = WsprotoRun([], conn)
    parts: list[str | bytes] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        _collect(conn, run, parts)
    return run


def _collect(conn: Connection, run: WsprotoRun, parts: list[str | bytes]) -> None:
    for event in conn.events():
        if isinstance(event, TextMessage | BytesMessage):
            parts.append(event.data)
            if event.message_finished:
                if isinstance(event, TextMessage):
                    run.outcomes.append(("text", "".join(str(p) for p in parts)))
                else:
                    run.outcomes.append(("binary", b"".join(bytes(p) for p in parts)))
                parts.clear()
        elif isinstance(event, Ping):
            run.outcomes.append(("ping", bytes(event.payload)))
        elif isinstance(event, Pong):
            run.outcomes.append(("pong", bytes(event.payload)))
        elif isinstance(event, CloseConnection):
            # A close frame moves the connection to REMOTE_CLOSING; a parse failure leaves it
            # OPEN and reports the code to fail with as a CloseConnection too.
            if conn.state is ConnectionState.REMOTE_CLOSING:
                run.outcomes.append(("close", int(event.code), event.reason))
            else:
                run.outcomes.append(("fail", int(event.code)))
                run.failure_reason = event.reason or ""


def _compare(chunks: list[bytes]) -> list[Outcome]:
    """Assert that our reader and wsproto agree on ``chunks`` (see the module docstring for the
    two allowed differences); return our outcomes."""
    mine = ours(chunks)
    run = reference(chunks)
    theirs = run.outcomes
    if "would have sufficed" in run.failure_reason:
        # Non-minimal length: wsproto fails, we read on. Up to there we agree.
        assert mine[: len(theirs) - 1] == theirs[:-1]
        return mine
    if mine[-1:] and mine[-1][0] == "fail" and not (theirs[-1:] and theirs[-1][0] == "fail"):
        # We failed on a complete header; wsproto waits for a payload byte. Give it one.
        run.connection.receive_data(b"\x00")
        _collect(run.connection, run, [])
        assert run.outcomes[-1] == mine[-1], (mine, run.outcomes)
        assert mine[:-1] == theirs[:-1]
        return mine
    assert mine == theirs
    return mine


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# Strategies: valid server frame sequences


BOUNDARY_LENGTHS = [0, 1, 2, 3, 124, 125, 126, 127, 65535, 65536]


@st.composite
def payload_bytes(draw: st.DrawFn) -> bytes:
    seed = draw(st.binary(min_size=1, max_size=32))
    length = draw(st.sampled_from(BOUNDARY_LENGTHS) | st.integers(0, 300))
    return (seed * (length // len(seed) + 1))[:length]


@st.composite
def payload_text(draw: st.DrawFn) -> str:
    text = draw(st.text(max_size=40))  # any code point but surrogates: 1- to 4-byte UTF-8
    pad = draw(st.sampled_from(BOUNDARY_LENGTHS) | st.integers(0, 200))
    return text + "a" * max(0, pad - len(text.encode()))


@dataclass(frozen=True)
class Spec:
    """One frame: opcode, payload, FIN."""

    opcode: int
    payload: bytes
    fin: bool = True

    def encode(self) -> bytes:
        return frame(self.opcode, self.payload, fin=self.fin)


control_specs = st.builds(
    Spec,
    st.sampled_from([0x9, 0xA]),
    st.binary(max_size=125) | st.sampled_from([b"", b"x" * 125]),
)


@st.composite
def message_specs(draw: st.DrawFn) -> list[Spec]:
    """One message, maybe fragmented (cut anywhere, also inside a UTF-8 character), with pings
    and pongs between its fragments."""
    if draw(st.booleans()):
        opcode, data = 0x1, draw(payload_text()).encode()
    else:
        opcode, data = 0x2, draw(payload_bytes())
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    specs: list[Spec] = []
    for i, piece in enumerate(pieces):
        if i:
            specs.extend(draw(st.lists(control_specs, max_size=2)))
        specs.append(Spec(opcode if i == 0 else 0x0, piece, fin=i == len(pieces) - 1))
    return specs


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013]


@st.composite
def close_specs(draw: st.DrawFn) -> Spec:
    if draw(st.booleans()):
        return Spec(0x8, b"")
    code = draw(st.sampled_from(VALID_CLOSE_CODES) | st.integers(3000, 4999))
    reason = draw(st.text(max_size=30)).encode()[:123]
    reason = codecs.decode(reason, "utf-8", errors="ignore").encode()
    return Spec(0x8, struct.pack("!H", code) + reason)


@st.composite
def valid_streams(draw: st.DrawFn) -> list[Spec]:
    specs: list[Spec] = []
    for _ in range(draw(st.integers(0, 6))):
        specs.extend(draw(st.lists(control_specs, max_size=1)))
        specs.extend(draw(message_specs()))
    if draw(st.booleans()):
        specs.append(draw(close_specs()))
        # Anything after the close is ignored by both.
        if draw(st.booleans()):
            specs.extend(draw(message_specs()))
    return specs


def expected(specs: list[Spec], max_message_size: int = UNLIMITED) -> list[Outcome]:
    """What a correct reader reports for valid frames: a small model, independent of both."""
    out: list[Outcome] = []
    parts: list[bytes] = []
    opcode = 0
    too_big = False
    for spec in specs:
        if spec.opcode == 0x8:
            out.append(_close_outcome(spec.payload))
            return out
        if spec.opcode in (0x9, 0xA):
            out.append(("ping" if spec.opcode == 0x9 else "pong", spec.payload))
            continue
        if spec.opcode:
            opcode, parts = spec.opcode, []
        parts.append(spec.payload)
        if not too_big and sum(map(len, parts)) > max_message_size:
            too_big = True
            out.append(("fail", 1009))
        if spec.fin and not too_big:
            data = b"".join(parts)
            out.append(("text", data.decode()) if opcode == 0x1 else ("binary", data))
    return out


def _close_outcome(payload: bytes) -> Outcome:
    if not payload:
        return ("close", 1005, "")
    return ("close", struct.unpack("!H", payload[:2])[0], payload[2:].decode())


def stream_of(specs: list[Spec]) -> bytes:
    return b"".join(spec.encode() for spec in specs)


# Property tests: valid streams


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(valid_streams(), st.lists(st.integers(min_value=0), max_size=12))
def test_valid_streams_match_wsproto_and_the_model(specs: list[Spec], points: list[int]) -> None:
    chunks = cut(stream_of(specs), points)
    assert _compare(chunks) == expected(specs)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(valid_streams())
def test_byte_by_byte_equals_all_at_once(specs: list[Spec]) -> None:
    stream = stream_of(specs)
    if len(stream) > 5000:
        stream = stream[:5000]  # keep a byte-wise run quick; a cut stream is fine here
    assert ours([stream[i : i + 1] for i in range(len(stream))]) == ours([stream])


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    valid_streams(),
    st.sampled_from([0, 1, 2, 100, 125, 126, 1000, 65535, 65536]),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_message_size_limit_matches_the_model(
    specs: list[Spec], limit: int, points: list[int]
) -> None:
    chunks = cut(stream_of(specs), points)
    assert ours(chunks, limit) == expected(specs, limit)


# Property tests: broken streams


@st.composite
def broken_frames(draw: st.DrawFn) -> bytes:
    """One frame that breaks a rule, or a valid one in a form wsproto and we treat alike."""
    kind = draw(
        st.sampled_from(
            [
                "masked",
                "rsv",
                "opcode",
                "fragmented-control",
                "long-control",
                "bad-utf8",
                "bad-utf8-fragment",
                "close-code",
                "close-one-byte",
                "close-reason",
                "continuation",
                "msb",
                "non-minimal",
            ]
        )
    )
    data = draw(st.binary(max_size=20))
    if kind == "masked":
        return frame(
            draw(st.sampled_from([0x1, 0x2, 0x9])),
            data,
            mask=draw(st.binary(min_size=4, max_size=4)),
        )
    if kind == "rsv":
        return frame(draw(st.sampled_from([0x2, 0x9])), data, rsv=draw(st.integers(1, 7)))
    if kind == "opcode":
        return frame(draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])), data)
    if kind == "fragmented-control":
        return frame(draw(st.sampled_from([0x8, 0x9, 0xA])), data, fin=False)
    if kind == "long-control":
        return frame(draw(st.sampled_from([0x8, 0x9, 0xA])), b"p" * draw(st.integers(126, 300)))
    if kind in ("bad-utf8", "bad-utf8-fragment"):
        bad = draw(
            st.sampled_from(
                [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]
            )
        )
        text = draw(st.text(max_size=10)).encode() + bad + draw(st.text(max_size=10)).encode()
        if kind == "bad-utf8":
            return frame(0x1, text)
        split = draw(st.integers(0, len(text)))
        return frame(0x1, text[:split], fin=False) + frame(0x0, text[split:])
    if kind == "close-code":
        code = draw(
            st.integers(0, 5100)
            | st.sampled_from([999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 3000, 5000])
        )
        return close_frame(code, b"bye")
    if kind == "close-one-byte":
        return frame(0x8, data[:1] or b"\x03")
    if kind == "close-reason":
        return close_frame(1000, b"ok\xff")
    if kind == "continuation":
        return frame(0x0, data, fin=draw(st.booleans()))
    if kind == "msb":
        return bytes([0x82, 127]) + struct.pack("!Q", (1 << 63) | len(data)) + data
    # non-minimal: a short payload in the 16- or 64-bit form
    return frame(
        draw(st.sampled_from([0x1, 0x2])), data, length_bytes=draw(st.sampled_from([2, 8]))
    )


@st.composite
def broken_streams(draw: st.DrawFn) -> bytes:
    specs = draw(valid_streams())
    frames = [spec.encode() for spec in specs]
    for _ in range(draw(st.integers(1, 3))):
        frames.insert(draw(st.integers(0, len(frames))), draw(broken_frames()))
    stream = b"".join(frames)
    if stream and draw(st.booleans()):
        # Flip a few bits anywhere.
        mutable = bytearray(stream)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(mutable) - 1))
            mutable[i] ^= 1 << draw(st.integers(0, 7))
        stream = bytes(mutable)
    if draw(st.booleans()):
        stream = stream[: draw(st.integers(0, len(stream)))]  # cut short
    return stream


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(broken_streams(), st.lists(st.integers(min_value=0), max_size=12))
def test_broken_streams_match_wsproto(stream: bytes, points: list[int]) -> None:
    _compare(cut(stream, points))


@settings(max_examples=500)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=8))
@example(b"\x01\x01a\x01\x00", [])  # a text fragment, then a second text frame
@example(b"\x00\x00", [])  # continuation with nothing to continue
@example(b"\x00\x05", [])  # the same, its payload not here yet: we fail, wsproto waits
@example(b"\x01\x81", [])  # masked, no key yet
def test_random_bytes_match_wsproto(stream: bytes, points: list[int]) -> None:
    _compare(cut(stream, points))


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_after_a_valid_prefix_match_wsproto(stream: bytes, points: list[int]) -> None:
    prefix = frame(0x1, "héllo".encode()) + frame(0x2, b"\x00" * 200, fin=False)
    _compare(cut(prefix + stream, points))


# Example tests, rule by rule (RFC 6455 5.2-5.7)


def events_of(*chunks: bytes, max_message_size: int = UNLIMITED) -> list[_frames.Event]:
    reader = FrameReader(max_message_size)
    events: list[_frames.Event] = []
    for chunk in chunks:
        reader.receive_data(chunk)
        events.extend(reader.events())
    return events


def test_text_and_binary_messages() -> None:
    assert events_of(frame(0x1, "héllo €𝄞".encode()), frame(0x2, b"\x00\xff")) == [
        "héllo €𝄞",
        b"\x00\xff",
    ]


def test_empty_messages() -> None:
    assert events_of(frame(0x1), frame(0x2)) == ["", b""]
    assert events_of(frame(0x1, fin=False), frame(0x0)) == [""]
    assert events_of(frame(0x2, fin=False), frame(0x0, fin=False), frame(0x0)) == [b""]


def test_a_firehose_of_16_bit_length_frames_in_uneven_reads_matches_wsproto() -> None:
    """Frames of 126 to 65,535 bytes take the short path when whole in a read: 4 MiB of them,
    more than any read holds, cut at uneven points (inside headers and payloads)."""
    rng = random.Random(17)
    messages: list[str | bytes] = []
    stream = bytearray()
    while len(stream) < 4 * 1024 * 1024:
        length = rng.choice([126, 200, 1000, 65_535, rng.randint(126, 5000)])
        if rng.random() < 0.5:
            text = ("trade €" * length)[:length]
            messages.append(text)
            stream += frame(0x1, text.encode())
        else:
            data = rng.randbytes(length)
            messages.append(data)
            stream += frame(0x2, data)
    cuts = sorted(rng.sample(range(1, len(stream)), 3000))
    chunks = cut(bytes(stream), cuts)
    assert events_of(*chunks) == messages
    assert ours(chunks) == reference(chunks).outcomes


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x2, b"x" * 300), 1009),  # whole in the read, over the limit of 200
        (bytes([0x81, 0xFE, 0x01, 0x2C]) + b"\x00" * 304, 1002),  # masked: a server must not
        (bytes([0xC1, 0x7E, 0x01, 0x2C]) + b"x" * 300, 1002),  # RSV1 without deflate
        (frame(0x1, b"a" * 200) + frame(0x1, b"\xff" * 200), 1007),  # the second one
    ],
)
def test_16_bit_length_frames_that_must_fail_leave_the_short_path(data: bytes, code: int) -> None:
    events = events_of(data, max_message_size=200)
    assert isinstance(events[-1], ProtocolFailure)
    assert events[-1].code == code
    assert events[:-1] == (["a" * 200] if code == 1007 else [])


@pytest.mark.parametrize("length", BOUNDARY_LENGTHS + [70_000])
@pytest.mark.parametrize("form", ["minimal", 2, 8])
def test_every_length_form(length: int, form: str | int) -> None:
    payload = os.urandom(length)
    if form == 2 and length > 65535:
        return  # does not fit
    data = frame(0x2, payload, length_bytes=None if form == "minimal" else int(form))
    assert events_of(data) == [payload]
    assert events_of(*(data[i : i + 7] for i in range(0, len(data), 7))) == [payload]


def test_non_minimal_length_is_accepted() -> None:
    # RFC 6455 5.2 tells senders to use the minimal form; wsproto rejects others, we read them.
    assert events_of(frame(0x1, b"hi", length_bytes=2), frame(0x2, b"x", length_bytes=8)) == [
        "hi",
        b"x",
    ]


def test_64_bit_length_with_the_top_bit_set_fails_1002() -> None:
    [failure] = events_of(bytes([0x82, 127]) + struct.pack("!Q", 1 << 63))
    assert isinstance(failure, ProtocolFailure)
    assert failure.code == 1002


def failure_code(*chunks: bytes, max_message_size: int = UNLIMITED) -> int:
    events = events_of(*chunks, max_message_size=max_message_size)
    assert isinstance(events[-1], ProtocolFailure), events
    return events[-1].code


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(frame(0x1, b"a", mask=b"\x01\x02\x03\x04"), 1002, id="masked"),
        pytest.param(frame(0x2, b"a", rsv=4), 1002, id="rsv1"),
        pytest.param(frame(0x2, b"a", rsv=2), 1002, id="rsv2"),
        pytest.param(frame(0x2, b"a", rsv=1), 1002, id="rsv3"),
        pytest.param(frame(0x3), 1002, id="opcode-3"),
        pytest.param(frame(0xB), 1002, id="opcode-b"),
        pytest.param(frame(0x9, b"p", fin=False), 1002, id="fragmented-ping"),
        pytest.param(frame(0x8, fin=False), 1002, id="fragmented-close"),
        pytest.param(frame(0xA, b"p" * 126), 1002, id="pong-126-bytes"),
        pytest.param(frame(0x0, b"x"), 1002, id="continuation-first"),
        pytest.param(frame(0x1, b"a", fin=False) + frame(0x2, b"b"), 1002, id="new-message"),
        pytest.param(frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002, id="new-text"),
        pytest.param(frame(0x1, b"\xff"), 1007, id="bad-utf8"),
        pytest.param(frame(0x1, b"\xed\xa0\x80"), 1007, id="surrogate"),
        pytest.param(frame(0x1, b"\xe2\x82"), 1007, id="truncated-character"),
        pytest.param(frame(0x1, b"\xe2", fin=False) + frame(0x0, b"\x82"), 1007, id="frag-trunc"),
        pytest.param(frame(0x8, b"\x03"), 1002, id="close-1-byte"),
        pytest.param(close_frame(1000, b"\xff"), 1007, id="close-reason-utf8"),
    ],
)
def test_protocol_violations(data: bytes, code: int) -> None:
    assert failure_code(data) == code
    assert failure_code(*(data[i : i + 1] for i in range(len(data)))) == code


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes_fail_1002(code: int) -> None:
    assert failure_code(close_frame(code)) == 1002


@pytest.mark.parametrize("code", [*VALID_CLOSE_CODES, 3000, 3999, 4000, 4999])
def test_valid_close_codes(code: int) -> None:
    assert events_of(close_frame(code, "bye 👋".encode())) == [Close(code, "bye 👋")]


def test_empty_close_is_1005() -> None:
    assert events_of(close_frame()) == [Close(1005, "")]


def test_nothing_after_the_close_frame() -> None:
    reader = FrameReader(UNLIMITED)
    reader.receive_data(frame(0x1, b"a") + close_frame(1000) + frame(0x1, b"b"))
    assert reader.events() == ["a", Close(1000, "")]
    reader.receive_data(frame(0x1, b"c") + b"\xff\xff")
    assert reader.events() == []


def test_nothing_after_a_failure() -> None:
    reader = FrameReader(UNLIMITED)
    reader.receive_data(frame(0x1, b"a") + frame(0x3) + frame(0x1, b"b"))
    events = reader.events()
    assert events[0] == "a"
    assert isinstance(events[1], ProtocolFailure)
    assert len(events) == 2
    reader.receive_data(frame(0x9, b"p"))
    assert reader.events() == []


def test_nothing_after_eof() -> None:
    reader = FrameReader(UNLIMITED)
    reader.receive_data(frame(0x1, b"abc")[:3])
    reader.receive_eof()
    reader.receive_data(b"bc")
    assert reader.events() == []


def test_control_frames_between_fragments() -> None:
    data = (
        frame(0x1, b"fr", fin=False)
        + frame(0x9, b"1")
        + frame(0x0, b"ag", fin=False)
        + frame(0xA, b"2")
        + frame(0x0, b"ment")
    )
    expected_events = [_frames.Ping(b"1"), _frames.Pong(b"2"), "fragment"]
    assert events_of(data) == expected_events
    assert events_of(*(data[i : i + 1] for i in range(len(data)))) == expected_events


def test_control_frame_payload_of_125_bytes() -> None:
    assert events_of(frame(0x9, b"p" * 125)) == [_frames.Ping(b"p" * 125)]


def test_four_byte_character_split_across_fragments_and_reads() -> None:
    data = "a𝄞b".encode()  # 𝄞 is F0 9D 84 9E
    stream = frame(0x1, data[:2], fin=False) + frame(0x0, data[2:4], fin=False)
    stream += frame(0x0, data[4:])
    assert events_of(stream) == ["a𝄞b"]
    assert events_of(*(stream[i : i + 1] for i in range(len(stream)))) == ["a𝄞b"]


def test_invalid_utf8_fails_on_the_fragment_where_it_becomes_invalid() -> None:
    # Autobahn 6.4.x: the bad bytes come in the second of three fragments; fail right there,
    # before the third arrives.
    reader = FrameReader(UNLIMITED)
    reader.receive_data(frame(0x1, "κόσμε".encode(), fin=False))
    assert reader.events() == []
    reader.receive_data(frame(0x0, b"\xf4\x90\x80\x80", fin=False))
    [failure] = reader.events()
    assert isinstance(failure, ProtocolFailure)
    assert failure.code == 1007


def test_invalid_utf8_fails_inside_a_frame_that_has_not_fully_arrived() -> None:
    # Autobahn 6.4.3/6.4.4: one frame, sent in pieces; fail on the piece with the bad bytes.
    reader = FrameReader(UNLIMITED)
    data = frame(0x1, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"edited" * 10)
    reader.receive_data(data[:8])
    assert reader.events() == []
    reader.receive_data(data[8:16])
    [failure] = reader.events()
    assert isinstance(failure, ProtocolFailure)
    assert failure.code == 1007


def test_message_size_limit_counts_bytes_across_fragments() -> None:
    text = "é" * 5  # 10 bytes, 5 characters
    assert events_of(frame(0x1, text.encode()), max_message_size=10) == [text]
    assert failure_code(frame(0x1, text.encode()), max_message_size=9) == 1009
    data = frame(0x2, b"x" * 6, fin=False) + frame(0x0, b"y" * 5)
    assert events_of(data, max_message_size=11) == [b"x" * 6 + b"y" * 5]
    assert failure_code(data, max_message_size=10) == 1009


def test_message_size_limit_fails_on_the_header_before_the_payload() -> None:
    reader = FrameReader(1000)
    reader.receive_data(bytes([0x82, 127]) + struct.pack("!Q", 100_000_000))
    [failure] = reader.events()
    assert isinstance(failure, ProtocolFailure)
    assert failure.code == 1009


def test_after_1009_frames_are_still_read_but_no_messages_delivered() -> None:
    # So a connection that failed with 1009 still sees the peer's answering close frame.
    reader = FrameReader(10)
    reader.receive_data(frame(0x2, b"x" * 11) + frame(0x1, b"ok") + frame(0x9, b"p"))
    reader.receive_data(close_frame(1009))
    events = reader.events()
    assert [type(e) for e in events] == [ProtocolFailure, _frames.Ping, Close]


def test_discard_messages() -> None:
    reader = FrameReader(5)
    reader.receive_data(frame(0x1, b"a"))
    reader.discard_messages()
    reader.receive_data(
        frame(0x1, b"b") + frame(0x2, b"c" * 100) + frame(0x9) + frame(0x1, b"\xff")
    )
    events = reader.events()
    assert events[:2] == ["a", _frames.Ping(b"")]
    assert isinstance(events[2], ProtocolFailure)
    assert events[2].code == 1007  # messages are still checked


def test_bytearray_and_memoryview_input_give_bytes() -> None:
    reader = FrameReader(UNLIMITED)
    reader.receive_data(bytearray(frame(0x2, b"ab")))
    reader.receive_data(memoryview(frame(0x2, b"cd")))
    assert reader.events() == [b"ab", b"cd"]
    assert all(type(e) is bytes for e in events_of(frame(0x2, b"ab")))


def test_negative_limit_fails_every_message() -> None:
    assert failure_code(frame(0x1), max_message_size=-1) == 1009


# The writer


def unmask(data: bytes) -> tuple[int, bytes]:
    """Parse one client frame (masked); return (first byte, payload)."""
    first, second = data[0], data[1]
    assert second & 0x80
    length, pos = second & 0x7F, 2
    if length == 126:
        (length,), pos = struct.unpack("!H", data[2:4]), 4
    elif length == 127:
        (length,), pos = struct.unpack("!Q", data[2:10]), 10
    key, payload = data[pos : pos + 4], data[pos + 4 :]
    assert len(payload) == length
    return first, bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 511, 512, 513, 65535, 65536])
def test_encode_frame_masks_and_frames_like_wsproto(length: int) -> None:
    payload = os.urandom(length)
    data = encode_frame(0x2, payload)
    assert unmask(data) == (0x82, payload)
    theirs = Connection(ConnectionType.CLIENT).send(BytesMessage(data=payload))
    assert len(data) == len(theirs)
    assert data[:2] == theirs[:2]  # same header; the keys differ
    assert unmask(encode_frame(0x0, payload, fin=False)) == (0x00, payload)


def test_encode_frame_uses_a_fresh_key_each_time() -> None:
    keys = {encode_frame(0x1, b"x")[2:6] for _ in range(50)}
    assert len(keys) > 45


def test_masking_keys_come_from_os_urandom_a_block_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One system call per 1,024 frames, each key used once: the frames come out of the block
    in order, four bytes each, across refills."""
    blocks: list[bytes] = []
    real_urandom = os.urandom

    def urandom(size: int) -> bytes:
        blocks.append(real_urandom(size))
        return blocks[-1]

    monkeypatch.setattr(_frames, "_mask_keys", type(_frames._mask_keys)())
    monkeypatch.setattr(_frames.os, "urandom", urandom)
    frames = [encode_frame(0x1, b"payload") for _ in range(2_100)]

    assert [len(block) for block in blocks] == [4096, 4096, 4096]
    drawn = b"".join(blocks)
    assert [frame[2:6] for frame in frames] == [drawn[i : i + 4] for i in range(0, 8400, 4)]
    assert all(unmask(frame) == (0x81, b"payload") for frame in frames)


def test_encode_control_frame_over_125_bytes_is_refused() -> None:
    assert unmask(encode_frame(0x9, b"p" * 125)) == (0x89, b"p" * 125)
    with pytest.raises(ValueError, match="^payload too long for control frame$"):
        encode_frame(0x9, b"p" * 126)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (4100, "shutting down"), (1005, ""), (1006, "x"), (1015, ""), (None, "")],
)
def test_close_payload_like_wsproto(code: int | None, reason: str) -> None:
    # wsproto sends an empty payload only for its own enum member NO_STATUS_RCVD.
    their_code = CloseReason.NO_STATUS_RCVD if code is None else code
    theirs = Connection(ConnectionType.CLIENT).send(CloseConnection(code=their_code, reason=reason))
    assert unmask(encode_frame(0x8, close_payload(code, reason)))[1] == unmask(theirs)[1]


def test_close_reason_is_cut_on_a_character_boundary() -> None:
    payload = close_payload(1000, "€" * 100)
    assert len(payload) <= 125
    assert payload[2:].decode() == "€" * 41
    with pytest.raises(TypeError):
        close_payload(None, "reason without a code")
