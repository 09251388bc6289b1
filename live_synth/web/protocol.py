"""The page's WebSocket protocol, version 1: small JSON messages up, binary frame batches and JSON status down.

Up (page -> server), one JSON object per text message, at most `MAX_MESSAGE_BYTES`:
    {"v": 1, "type": "midi", "data": [status, data1, data2]}   a channel voice message (note on/off, controller,
                                                              program change, channel pressure, pitch bend)
    {"v": 1, "type": "ping", "id": n}                         answered by {"v": 1, "type": "pong", "id": n}
Anything else (binary, not JSON, too long, another version, an unknown type, a system message, a byte out of range,
the wrong length for its status) is refused by `parse` with a `ProtocolError` whose `reason` is one of `REASONS`: the
server counts it by reason and drops it, so it never reaches the model.

Down (server -> page):
    {"v": 1, "type": "hello", ...}      once, on connecting: frame rate, mel bins, the frame layout below
    {"v": 1, "type": "stats", ...}      a few times a second: latency parts, tick p50/p99, ring fill, counters
    binary: a batch of heard frames (`pack_frames`): a 8-byte header (b"F", version, count: uint16, first frame:
            uint32, little-endian), then per frame FRAME_BYTES: 128 mel bins as uint8 (0 = silence, 255 = the
            model's maximum), a 128-bit mask of the pitches sounding (16 bytes, pitch p in byte p // 8, bit p % 8),
            and one flag byte (`ROLLED_BACK`, `UNDERRUN`, `MISSING`).

Thread: any (pure functions).
"""

from __future__ import annotations

import json
import struct

import numpy as np

VERSION = 1
MAX_MESSAGE_BYTES = 256
N_MELS = 128
MASK_BYTES = 16
FRAME_BYTES = N_MELS + MASK_BYTES + 1
HEADER = struct.Struct("<cBHI")

ROLLED_BACK, UNDERRUN, MISSING = 1, 2, 4  # frame flags

REASONS = ("binary", "too_long", "not_json", "not_object", "version", "type", "status", "length", "range")

# bytes in a channel voice message, by its status's high nibble
_LENGTH = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}


class ProtocolError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse(text) -> tuple[str, object]:
    """One message from the page -> ("midi", [status, d1(, d2)]) or ("ping", id). Raises ProtocolError."""
    if not isinstance(text, str):
        raise ProtocolError("binary")
    if len(text) > MAX_MESSAGE_BYTES:  # characters: at most 4 bytes each, checked before decoding anything
        raise ProtocolError("too_long", f"{len(text)} characters")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("not_json") from None
    if not isinstance(message, dict):
        raise ProtocolError("not_object")
    if message.get("v") != VERSION or type(message.get("v")) is not int:
        raise ProtocolError("version", f"{message.get('v')!r} (this server speaks {VERSION})")
    kind = message.get("type")
    if kind == "midi":
        return "midi", midi_message(message.get("data"))
    if kind == "ping":
        ident = message.get("id")
        if type(ident) is not int or not 0 <= ident < 2**31:
            raise ProtocolError("range", "ping id")
        return "ping", ident
    raise ProtocolError("type", repr(kind)[:40])


def midi_message(data) -> list[int]:
    """A validated channel voice message as a list of ints. Raises ProtocolError."""
    if not isinstance(data, list) or not data:
        raise ProtocolError("length", "data must be a non-empty list")
    if any(type(b) is not int for b in data):  # bool is an int subclass: refused too
        raise ProtocolError("range", "data must be integers")
    status = data[0]
    if not 0x80 <= status <= 0xEF:
        raise ProtocolError("status", f"{status!r} is not a channel voice status")
    if len(data) != _LENGTH[status & 0xF0]:
        raise ProtocolError("length", f"status {status:#x} takes {_LENGTH[status & 0xF0]} bytes, got {len(data)}")
    if any(not 0 <= b <= 127 for b in data[1:]):
        raise ProtocolError("range", "data bytes are 0..127")
    return list(data)


def dumps(kind: str, **fields) -> str:
    return json.dumps({"v": VERSION, "type": kind, **fields}, separators=(",", ":"))


def pack_frames(first: int, mel: np.ndarray, masks: np.ndarray, flags: np.ndarray) -> bytes:
    """Frames [first, first + n): mel uint8 [n, 128], masks uint8 [n, 16], flags uint8 [n] -> one binary message."""
    n = len(mel)
    body = np.concatenate([mel, masks, flags[:, None]], axis=1).astype(np.uint8)
    return HEADER.pack(b"F", VERSION, n, first & 0xFFFFFFFF) + body.tobytes()


def unpack_frames(payload: bytes) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of `pack_frames` (tests, tools)."""
    magic, version, n, first = HEADER.unpack_from(payload)
    if magic != b"F" or version != VERSION or len(payload) != HEADER.size + n * FRAME_BYTES:
        raise ProtocolError("version", "not a frame batch")
    body = np.frombuffer(payload, np.uint8, offset=HEADER.size).reshape(n, FRAME_BYTES)
    return first, body[:, :N_MELS], body[:, N_MELS:N_MELS + MASK_BYTES], body[:, -1]
