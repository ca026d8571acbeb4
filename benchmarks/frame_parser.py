"""Frame parsing (and writing) cost: our sans-I/O frame code vs wsproto's.

    python benchmarks/frame_parser.py [--messages 100000] [--size 100] [--repeat 5]

Receive: 100 k server-to-client text frames of 100 bytes each, delivered in 256 KiB reads, fed
to ``FrameReader`` and to a wsproto client ``Connection``; prints microseconds per message (best
of ``--repeat`` runs). Also one binary run, and the send side: building one masked 100-byte
client frame with ``encode_frame`` vs wsproto.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from managed_websocket._frames import OP_TEXT, FrameReader, encode_frame

CHUNK = 256 * 1024


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame, as a server sends it."""
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return header + payload


def chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def run_ours(pieces: list[bytes]) -> int:
    reader = FrameReader(16 * 1024 * 1024)
    count = 0
    for piece in pieces:
        reader.receive_data(piece)
        count += len(reader.events())
    return count


def run_wsproto(pieces: list[bytes]) -> int:
    conn = Connection(ConnectionType.CLIENT)
    count = 0
    for piece in pieces:
        conn.receive_data(piece)
        for event in conn.events():
            # A frame cut by a read boundary comes in two events; count whole messages.
            if event.message_finished:  # type: ignore[attr-defined]
                count += 1
    return count


def best_time(func: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def receive_case(label: str, opcode: int, payload: bytes, messages: int, repeat: int) -> None:
    pieces = chunks(server_frame(opcode, payload) * messages)
    assert run_ours(pieces) == messages
    assert run_wsproto(pieces) == messages
    ours = best_time(lambda: run_ours(pieces), repeat) / messages * 1e6
    theirs = best_time(lambda: run_wsproto(pieces), repeat) / messages * 1e6
    print(
        f"receive {label:<28} ours {ours:6.3f} µs/msg   wsproto {theirs:6.3f} µs/msg"
        f"   ({theirs / ours:4.1f}x)"
    )


def send_case(size: int, messages: int, repeat: int) -> None:
    text = "x" * size
    payload = text.encode()
    conn = Connection(ConnectionType.CLIENT)
    event = TextMessage(data=text)

    def ours() -> None:
        for _ in range(messages):
            encode_frame(OP_TEXT, text.encode())

    def theirs() -> None:
        for _ in range(messages):
            conn.send(event)

    assert len(encode_frame(OP_TEXT, payload)) == len(conn.send(event))
    mine = best_time(ours, repeat) / messages * 1e6
    wsp = best_time(theirs, repeat) / messages * 1e6
    print(
        f"send    {f'{size}-byte text frame':<28} ours {mine:6.3f} µs/msg   wsproto {wsp:6.3f} µs/msg"
        f"   ({wsp / mine:4.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, size, repeat = args.messages, args.size, args.repeat
    print(f"{n} messages of {size} bytes in {CHUNK // 1024} KiB reads, best of {repeat}")
    receive_case(f"{size}-byte text frames", 0x1, b"x" * size, n, repeat)
    receive_case(f"{size}-byte binary frames", 0x2, os.urandom(size), n, repeat)
    send_case(size, n // 10, repeat)


if __name__ == "__main__":
    main()
