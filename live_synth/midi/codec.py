"""The MT3 event vocabulary the notes encoder reads (spec §2.1), and the Slakh program folding (spec §2.2).

Token ids are codec indices + 3; ids 0, 1 and 2 are PAD, EOS and UNK. Event blocks, in order:
shift 0..1000 (10 ms steps), pitch 0..127, velocity 0..num_velocity_bins (0 = note-off), tie, program 0..127,
drum 0..127. With the published setting (1 velocity bin) this gives ids 3..1390.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
NUM_SPECIAL_TOKENS = 3

MAX_SHIFT_STEPS = 1000  # 10 s at 100 steps per second
MAX_MIDI_VELOCITY = 127
MIDI_VALUES = 128  # pitches and programs are 0..127

EVENT_TYPES = ("shift", "pitch", "velocity", "tie", "program", "drum")
SPECIAL_NAMES = {PAD_ID: "pad", EOS_ID: "eos", UNK_ID: "unk"}

# The program of each Slakh instrument class (HF `SLAKH_CLASS_PROGRAMS`). The published model was trained on these
# classes only, so the reference folds every melodic program down to the nearest class program at or below it.
SLAKH_CLASS_PROGRAMS = (
    0, 4, 8, 16, 24, 26, 29, 32, 33, 40, 41, 42, 43, 46, 47, 48, 50,
    52, 55, 56, 57, 58, 60, 61, 64, 66, 67, 68, 69, 70, 71, 73, 80, 88,
)  # fmt: skip


def program_to_slakh_program(program: int) -> int:
    """Fold a General MIDI program onto its Slakh class program (largest class program <= `program`)."""
    return max(p for p in SLAKH_CLASS_PROGRAMS if p <= program)


def velocity_to_bin(velocity: int, num_velocity_bins: int) -> int:
    """Quantize a MIDI velocity: 0 stays 0 (note-off), otherwise ceil(bins * v / 127), as the reference does."""
    if velocity == 0:
        return 0
    return math.ceil(num_velocity_bins * velocity / MAX_MIDI_VELOCITY)


@dataclass(frozen=True)
class EventCodec:
    """Maps (event type, value) to token ids and back. `num_velocity_bins=1` is the published model's vocabulary."""

    num_velocity_bins: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.num_velocity_bins <= MAX_MIDI_VELOCITY:
            raise ValueError(f"num_velocity_bins must be in 1..127, got {self.num_velocity_bins}")

    @cached_property
    def _sizes(self) -> dict[str, int]:
        return {
            "shift": MAX_SHIFT_STEPS + 1,
            "pitch": MIDI_VALUES,
            "velocity": self.num_velocity_bins + 1,
            "tie": 1,
            "program": MIDI_VALUES,
            "drum": MIDI_VALUES,
        }

    @cached_property
    def _first_ids(self) -> dict[str, int]:
        first, ids = NUM_SPECIAL_TOKENS, {}
        for event_type in EVENT_TYPES:
            ids[event_type] = first
            first += self._sizes[event_type]
        return ids

    @property
    def num_classes(self) -> int:
        """Number of regular events (1388 for the published vocabulary)."""
        return sum(self._sizes.values())

    @property
    def num_token_ids(self) -> int:
        """Ids this codec can produce, specials included (1391 published; the model's table is larger, 1536)."""
        return NUM_SPECIAL_TOKENS + self.num_classes

    def first_id(self, event_type: str) -> int:
        """Token id of value 0 of `event_type`; ids of that type are contiguous from here."""
        return self._first_ids[event_type]

    def id_range(self, event_type: str) -> range:
        """All token ids of one event type."""
        first = self._first_ids[event_type]
        return range(first, first + self._sizes[event_type])

    def encode(self, event_type: str, value: int) -> int:
        """Token id of one event; ValueError if the value is out of the type's range."""
        if event_type not in self._sizes:
            raise ValueError(f"unknown event type {event_type!r}")
        if not 0 <= value < self._sizes[event_type]:
            raise ValueError(f"{event_type} value {value} outside 0..{self._sizes[event_type] - 1}")
        return self._first_ids[event_type] + value

    def decode(self, token_id: int) -> tuple[str, int]:
        """(event type, value) of a token id; PAD, EOS and UNK decode to ("pad"|"eos"|"unk", 0)."""
        if token_id in SPECIAL_NAMES:
            return SPECIAL_NAMES[token_id], 0
        for event_type in EVENT_TYPES:
            first = self._first_ids[event_type]
            if first <= token_id < first + self._sizes[event_type]:
                return event_type, token_id - first
        raise ValueError(f"token id {token_id} outside 0..{self.num_token_ids - 1}")

    def describe(self, token_ids: list[int]) -> str:
        """Readable form of a segment for debugging, e.g. "tie shift:50 program:0 velocity:1 pitch:60 eos"."""
        parts = []
        for token_id in token_ids:
            event_type, value = self.decode(token_id)
            if event_type == "pad":
                break
            parts.append(event_type if event_type in ("tie", "eos", "unk") else f"{event_type}:{value}")
        return " ".join(parts)
