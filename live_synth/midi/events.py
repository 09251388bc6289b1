"""Notes and controllers on one timeline: what the causal family's frame features are computed from.

`NoteEvents` holds, in seconds on one clock (a song's, or a live session's):
- `notes` float64 [K, 7]: onset, release (inf while a key or the pedal still holds the note), pitch, velocity,
  program, is_drum (0/1), lane. A lane is where the note's controllers come from: the pretty_midi instrument of a
  MIDI file, the MIDI channel live. Sustain is already applied (a released key held by the pedal is not released);
- `controls`: per lane, float64 [E, 3] rows (time, kind, value) sorted by time, kinds `BEND` (semitones, the wheel
  already scaled by the lane's RPN 0 bend range at that time), `MOD` (CC1 / 127), `VOLUME` (CC7 / 127) and
  `EXPRESSION` (CC11 / 127). Before a lane's first event of a kind, the General MIDI power-on value holds
  (`DEFAULTS`: bend 0, mod 0, volume 100/127, expression 1).

Two builders share one controller interpretation (`ControlTracker`): `from_sequence` for a MIDI file (through
`read_midi` + `apply_sustain`) and the live note state (`live.notes.NoteState.events`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from live_synth.midi.notes import NoteSequence

BEND, MOD, VOLUME, EXPRESSION = range(4)
KINDS = 4
DEFAULTS = (0.0, 0.0, 100.0 / 127.0, 1.0)
DEFAULT_BEND_RANGE = 2.0  # semitones, General MIDI
NOTE_COLUMNS = ("onset", "release", "pitch", "velocity", "program", "is_drum", "lane")
_RPN_MSB, _RPN_LSB, _DATA_MSB, _DATA_LSB = 101, 100, 6, 38


@dataclass
class ControlTracker:
    """One lane's controller state, fed message by message in time order; emits (time, kind, value) rows.

    Pitch-bend range follows RPN 0 (CC101 = 0, CC100 = 0, then data entry CC6 semitones + CC38 cents); a bend
    already applied keeps its value until the wheel moves again, as synthesizers do.
    """

    rows: list[tuple[float, int, float]] = field(default_factory=list)
    bend_range: float = DEFAULT_BEND_RANGE
    rpn: tuple[int, int] = (127, 127)

    def control(self, t: float, number: int, value: int) -> None:
        if number == 1:
            self.rows.append((t, MOD, value / 127.0))
        elif number == 7:
            self.rows.append((t, VOLUME, value / 127.0))
        elif number == 11:
            self.rows.append((t, EXPRESSION, value / 127.0))
        elif number == _RPN_MSB:
            self.rpn = (value, self.rpn[1])
        elif number == _RPN_LSB:
            self.rpn = (self.rpn[0], value)
        elif number == _DATA_MSB and self.rpn == (0, 0):
            self.bend_range = float(value) + (self.bend_range % 1.0)
        elif number == _DATA_LSB and self.rpn == (0, 0):
            self.bend_range = float(int(self.bend_range)) + value / 100.0
        elif number in (121,):  # reset all controllers
            self.rows += [(t, MOD, 0.0), (t, EXPRESSION, 1.0), (t, BEND, 0.0)]

    def bend(self, t: float, value: int) -> None:
        """`value` in -8192..8191."""
        self.rows.append((t, BEND, value / 8192.0 * self.bend_range))

    def array(self) -> np.ndarray:
        return np.array(self.rows, np.float64).reshape(-1, 3)


@dataclass
class NoteEvents:
    notes: np.ndarray  # float64 [K, 7], see NOTE_COLUMNS
    controls: dict[int, np.ndarray] = field(default_factory=dict)  # lane -> float64 [E, 3]

    @classmethod
    def empty(cls) -> NoteEvents:
        return cls(np.zeros((0, len(NOTE_COLUMNS))))

    @classmethod
    def from_sequence(cls, ns: NoteSequence) -> NoteEvents:
        """Notes (sustain already applied by the caller) and controllers of a sequence read from a MIDI file."""
        notes = np.array([(n.start, n.end, n.pitch, n.velocity, n.program, float(n.is_drum), n.instrument)
                          for n in ns.notes], np.float64).reshape(-1, len(NOTE_COLUMNS))
        # Stable by time, controllers before bends at one instant: the file's order of an RPN's messages matters.
        messages = sorted([(cc.time, 0, cc.instrument, cc.number, cc.value) for cc in ns.control_changes] +
                          [(b.time, 1, b.instrument, b.value, 0) for b in ns.pitch_bends], key=lambda m: m[:2])
        trackers: dict[int, ControlTracker] = {}
        for t, is_bend, lane, a, b in messages:
            tracker = trackers.setdefault(lane, ControlTracker())
            tracker.bend(t, a) if is_bend else tracker.control(t, a, b)
        return cls(notes, {lane: tr.array() for lane, tr in trackers.items() if tr.rows})

    def values_at(self, lane: int, times: np.ndarray) -> np.ndarray:
        """Controller values [len(times), KINDS] of `lane` at `times` (the last event at or before each time)."""
        out = np.tile(np.asarray(DEFAULTS, np.float64), (len(times), 1))
        rows = self.controls.get(int(lane))
        if rows is None or not len(rows):
            return out
        for kind in range(KINDS):
            sel = rows[rows[:, 1] == kind]
            if not len(sel):
                continue
            index = np.searchsorted(sel[:, 0], times, side="right") - 1
            have = index >= 0
            out[have, kind] = sel[index[have], 2]
        return out

    @property
    def end_time(self) -> float:
        """The latest onset or release (inf releases ignored)."""
        if not len(self.notes):
            return 0.0
        finite = self.notes[:, 1][np.isfinite(self.notes[:, 1])]
        return float(max(self.notes[:, 0].max(), finite.max() if len(finite) else 0.0))
