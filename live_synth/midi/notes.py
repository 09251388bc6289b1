"""Notes read from a MIDI file, and the sustain pedal applied to them.

This is a port of the two note_seq functions the published model's tokenizer relies on
(`note_seq.midi_to_note_sequence` and `note_seq.apply_sustain_control_changes`), without note_seq's protobuf and
TensorFlow-era dependencies. Parsing goes through pretty_midi exactly as note_seq does, so the notes, instruments and
times are the same by construction; the parity tests check the rest.
"""

from __future__ import annotations

import copy
import io
import os
from dataclasses import dataclass, field
from typing import Iterable

import pretty_midi

from live_synth.errors import MidiError

SUSTAIN_CONTROL = 64  # CC64, the damper pedal


@dataclass
class Note:
    """One note. Times are in seconds; `instrument` is the index of the pretty_midi instrument it came from.

    Mutable and compared by value (eq=True) on purpose: note_seq's sustain code edits notes in place and finds them
    in lists with `==`, which on protobuf messages is value equality. Keeping the same semantics keeps the port exact.
    """

    pitch: int
    velocity: int
    start: float
    end: float
    program: int = 0
    is_drum: bool = False
    instrument: int = 0


@dataclass(frozen=True)
class ControlChange:
    """One MIDI control change (e.g. CC64 sustain), attributed to a pretty_midi instrument like the notes."""

    time: float
    number: int
    value: int
    instrument: int = 0
    program: int = 0
    is_drum: bool = False


@dataclass(frozen=True)
class PitchBend:
    """One pitch-wheel event: `value` in -8192..8191 (0 = centre), attributed to a pretty_midi instrument."""

    time: float
    value: int
    instrument: int = 0


@dataclass
class NoteSequence:
    """Notes and control changes of a song, in pretty_midi's instrument order.

    `total_time` follows note_seq: the latest note end (control changes do not count), or what sustain made of it.
    """

    notes: list[Note] = field(default_factory=list)
    control_changes: list[ControlChange] = field(default_factory=list)
    total_time: float = 0.0
    pitch_bends: list[PitchBend] = field(default_factory=list)  # not used by the tokens; the causal family's features

    @classmethod
    def from_notes(cls, notes: Iterable[Note], control_changes: Iterable[ControlChange] = (),
                   pitch_bends: Iterable[PitchBend] = ()) -> NoteSequence:
        """Build a sequence whose total_time is the latest note end, as `read_midi` would."""
        notes = list(notes)
        total_time = max((note.end for note in notes), default=0.0)
        return cls(notes=notes, control_changes=list(control_changes), total_time=total_time,
                   pitch_bends=list(pitch_bends))

    @property
    def is_empty(self) -> bool:
        """True when there is no note to play (callers decide whether that is an error)."""
        return not self.notes


def read_midi(source: str | os.PathLike | bytes, name: str | None = None) -> NoteSequence:
    """Read a MIDI file (path or bytes) into a NoteSequence, like `note_seq.midi_to_note_sequence`.

    Notes keep their velocity and their instrument's program; channel 10 instruments are drums. A file without notes
    gives an empty sequence. Sustain is not applied here: see `apply_sustain`.

    Raises MidiError (one line naming the file) when the file cannot be opened or is not a MIDI file pretty_midi
    can read. That includes files whose largest tick exceeds pretty_midi's MAX_TICK (1e7, "likely corrupt"): note_seq
    raises that limit to 1e10 when imported, so the reference accepts such files at the cost of a tick table that can
    take gigabytes; we keep pretty_midi's limit and do not change its global.
    """
    label = name or ("<MIDI bytes>" if isinstance(source, bytes) else os.fspath(source))
    data = source if isinstance(source, bytes) else _read_bytes(source, label)
    midi = _parse(data, label)
    return _to_note_sequence(midi)


def _read_bytes(path: str | os.PathLike, label: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise MidiError(f"{label}: cannot open MIDI file ({e.strerror or e})") from e


def _parse(data: bytes, label: str) -> pretty_midi.PrettyMIDI:
    # mido and pretty_midi raise whatever the broken byte hits first (EOFError, OSError, ValueError, KeyError,
    # IndexError, ZeroDivisionError on a zero tempo, ...); note_seq catches everything here for the same reason.
    # Any failure to parse untrusted input is the user's file, not our bug, so it becomes one MidiError line.
    try:
        return pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - see above
        raise MidiError(f"{label}: not a readable MIDI file ({_reason(e)})") from e


def _reason(error: Exception) -> str:
    if isinstance(error, EOFError):
        return "unexpected end of data; the file may be truncated"
    return " ".join(str(error).split()) or type(error).__name__  # one line, whatever the library wrote


def _to_note_sequence(midi: pretty_midi.PrettyMIDI) -> NoteSequence:
    # Same order as note_seq: all notes instrument by instrument, then all control changes. numpy scalars from
    # pretty_midi are turned into plain Python numbers (exact: float64 -> float).
    notes: list[Note] = []
    control_changes: list[ControlChange] = []
    bends: list[PitchBend] = []
    for index, instrument in enumerate(midi.instruments):
        program, is_drum = int(instrument.program), bool(instrument.is_drum)
        for n in instrument.notes:
            notes.append(Note(int(n.pitch), int(n.velocity), float(n.start), float(n.end), program, is_drum, index))
        for cc in instrument.control_changes:
            control_changes.append(
                ControlChange(float(cc.time), int(cc.number), int(cc.value), index, program, is_drum)
            )
        bends += [PitchBend(float(b.time), int(b.pitch), index) for b in instrument.pitch_bends]
    return NoteSequence.from_notes(notes, control_changes, bends)


# Event kinds of the sustain sweep. The order matters: at equal times, pedal events come before note events and
# "on" before "off" (note_seq's constants).
_SUSTAIN_ON, _SUSTAIN_OFF, _NOTE_ON, _NOTE_OFF = 0, 1, 2, 3


def apply_sustain(ns: NoteSequence, control_number: int = SUSTAIN_CONTROL) -> NoteSequence:
    """Return a copy of `ns` with the sustain pedal applied (exact port of `note_seq.apply_sustain_control_changes`).

    Per instrument, a note released while the pedal is down lasts until the pedal goes up or the same pitch is
    struck again, whichever comes first. Drum notes are left alone. A note cut to zero length by a re-strike at the
    same instant is removed. Notes still held at the end are ended at the last event's time, which also becomes
    total_time (even if a drum note ends later; note_seq does the same).
    """
    # A deep copy: notes are edited in place below. (Control changes are frozen and can be shared.)
    seq = NoteSequence([copy.copy(note) for note in ns.notes], list(ns.control_changes), ns.total_time,
                       list(ns.pitch_bends))
    events = _sustain_events(seq, control_number)
    active: dict[int, list[Note]] = {}
    pedal_down: dict[int, bool] = {}
    time = 0.0
    for time, kind, event in events:
        held = active.setdefault(event.instrument, [])
        if kind == _SUSTAIN_ON:
            pedal_down[event.instrument] = True
        elif kind == _SUSTAIN_OFF:
            pedal_down[event.instrument] = False
            active[event.instrument] = _release_sustained(seq, held, time)
        elif kind == _NOTE_ON:
            if pedal_down.get(event.instrument, False):
                active[event.instrument] = _cut_same_pitch(seq, held, event, time)
            active[event.instrument].append(event)
        elif not pedal_down.get(event.instrument, False) and event in held:
            # A note released with the pedal up stops being tracked. It may already be gone (cut by a re-strike).
            # `in` and `remove` use value equality, like note_seq on protobuf messages.
            held.remove(event)
    for held in active.values():
        for note in held:
            note.end = time
            seq.total_time = time
    return seq


def _sustain_events(seq: NoteSequence, control_number: int) -> list[tuple[float, int, Note | ControlChange]]:
    melodic = [note for note in seq.notes if not note.is_drum]
    events: list[tuple[float, int, Note | ControlChange]] = [(n.start, _NOTE_ON, n) for n in melodic]
    events += [(n.end, _NOTE_OFF, n) for n in melodic]
    for cc in seq.control_changes:
        if cc.number == control_number:
            events.append((cc.time, _SUSTAIN_ON if cc.value >= 64 else _SUSTAIN_OFF, cc))
    events.sort(key=lambda e: (e[0], e[1]))  # stable: equal keys keep the order above, as in note_seq
    return events


def _release_sustained(seq: NoteSequence, held: list[Note], time: float) -> list[Note]:
    """Pedal up: end the notes that were only ringing because of the pedal; keep those still held down."""
    still_held = []
    for note in held:
        if note.end < time:
            note.end = time
            seq.total_time = max(seq.total_time, time)
        else:
            still_held.append(note)
    return still_held


def _cut_same_pitch(seq: NoteSequence, held: list[Note], onset: Note, time: float) -> list[Note]:
    """Pedal down and a pitch is struck again: the ringing notes of that pitch end now."""
    kept = []
    for note in held:
        if note.pitch != onset.pitch:
            kept.append(note)
            continue
        note.end = time
        if note.start == note.end:
            seq.notes.remove(note)  # value equality: removes the first equal note, as note_seq does
    return kept
