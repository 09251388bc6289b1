"""Live note state: timestamped MIDI messages in; a NoteSequence snapshot (window family) or NoteEvents (causal
family) out.

Owned by the generation worker (one thread; not thread-safe). The MIDI thread only timestamps and enqueues raw
messages; the worker applies them here in arrival order and asks for `snapshot()` when it builds a window.

Semantics (what a musician expects of a General MIDI synth):
- note-on (velocity > 0) starts a note; note-off, or note-on with velocity 0, releases it;
- sustain pedal (CC64 ≥ 64 down, < 64 up) per channel: released keys keep sounding until the pedal goes up; striking
  the same key again ends the sustained copy (as note_seq's `apply_sustain_control_changes` does offline);
- CC123 all-notes-off releases every held key of the channel (the pedal still holds them); CC120 all-sound-off ends
  everything on the channel at once, pedal or not;
- program change per channel; channel 10 (index 9) is drums, whose notes are onsets only;
- latch: every note lasts at least `latch_s` (one 20 ms frame), so a key tapped faster than a frame is still heard;
- controllers for the causal family's features, per channel (`midi.events.ControlTracker`, the same interpretation a
  MIDI file gets): pitch bend with its RPN 0 range, CC1 modulation, CC7 volume, CC11 expression, CC121 reset.
Notes still sounding appear in a snapshot as lasting to the snapshot's horizon (the end of the window being built),
and in `events()` with an infinite release (the features only see what has happened).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from live_synth.midi import Note, NoteSequence
from live_synth.midi.events import KINDS, NOTE_COLUMNS, ControlTracker, NoteEvents

DRUM_CHANNEL = 9
SUSTAIN, ALL_SOUND_OFF, ALL_NOTES_OFF = 64, 120, 123
CONTROLS = (1, 6, 7, 11, 38, 100, 101, 121)  # what the controller trackers use (modulation, RPN, volume, ...)


@dataclass
class LiveNote:
    pitch: int
    velocity: int
    start: float
    program: int
    channel: int
    end: float | None = None  # None while sounding

    @property
    def is_drum(self) -> bool:
        return self.channel == DRUM_CHANNEL


@dataclass
class NoteStateStats:
    messages: int = 0
    ignored: int = 0  # messages this state does not use (clock, aftertouch, SysEx, stray note-offs, ...)


class NoteState:
    def __init__(self, latch_s: float = 0.02, keep_s: float = 8.0):
        """`keep_s`: how long a finished note is kept (more than a 5.12 s window, or the causal features' 3 s
        release tail, can look back)."""
        self.latch_s, self.keep_s = latch_s, keep_s
        self.programs = [0] * 16
        self.pedal = [False] * 16
        self.held: dict[tuple[int, int], LiveNote] = {}  # keys down
        self.sustained: list[LiveNote] = []  # keys up, held by the pedal
        self.finished: list[LiveNote] = []
        self._rows = np.zeros((1024, len(NOTE_COLUMNS)))  # `finished` as an array too, appended as notes end
        self._count = 0
        self._last_prune = -np.inf
        self.controls = [ControlTracker() for _ in range(16)]
        self._events: NoteEvents | None = None  # `events()` until the next message or prune (read-only to callers)
        self.stats = NoteStateStats()

    # -- worker thread ----------------------------------------------------------------------------------------------
    def apply(self, t: float, message) -> None:
        """Apply one raw MIDI message (a sequence of ints) that arrived at time `t` (seconds, session clock)."""
        self._events = None
        self.stats.messages += 1
        if not message:
            self.stats.ignored += 1
            return
        status = message[0] & 0xF0
        channel = message[0] & 0x0F
        data = list(message[1:3]) + [0, 0]
        if status == 0x90 and data[1] > 0:
            self._note_on(t, channel, data[0], data[1])
        elif status == 0x80 or status == 0x90:
            self._note_off(t, channel, data[0])
        elif status == 0xB0:
            self._control(t, channel, data[0], data[1])
        elif status == 0xC0:
            self.programs[channel] = data[0] & 0x7F
        elif status == 0xE0:
            self.controls[channel].bend(t, ((data[1] & 0x7F) << 7 | (data[0] & 0x7F)) - 8192)
        else:
            self.stats.ignored += 1

    def sounding(self) -> list[LiveNote]:
        """Notes sounding now (keys down and pedal-held)."""
        return list(self.held.values()) + self.sustained

    def events(self) -> NoteEvents:
        """Every kept note (sounding ones with an infinite release) and the controllers, lane = channel. Cheap with
        many notes (a flood): the finished ones are kept as an array as they end. Built once per change: the model's
        features and the excited vocoder both ask for it every tick. Callers must not modify what it returns."""
        if self._events is not None:
            return self._events
        sounding = [(n.start, np.inf, n.pitch, n.velocity, n.program, 0.0, n.channel) for n in self.sounding()]
        array = self._rows[: self._count]
        if sounding:
            array = np.concatenate([array, np.array(sounding, np.float64)])
        self._events = NoteEvents(array, {c: tr.array() for c, tr in enumerate(self.controls) if tr.rows})
        return self._events

    def snapshot(self, now: float, horizon: float) -> NoteSequence:
        """Every note that may matter from `now - keep_s` on, sounding notes ending at `horizon`."""
        self._prune(now)
        notes = [self._as_note(n, n.end) for n in self.finished]
        notes += [self._as_note(n, max(horizon, n.start + self.latch_s)) for n in self.sounding()]
        return NoteSequence.from_notes(notes)

    # -- internals --------------------------------------------------------------------------------------------------
    def _as_note(self, n: LiveNote, end: float) -> Note:
        return Note(pitch=n.pitch, velocity=n.velocity, start=n.start, end=end, program=n.program,
                    is_drum=n.is_drum, instrument=n.channel)

    def _end(self, note: LiveNote, t: float) -> None:
        note.end = max(t, note.start + self.latch_s)
        self.finished.append(note)
        if self._count == len(self._rows):
            self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)])
        self._rows[self._count] = (note.start, note.end, note.pitch, note.velocity, note.program,
                                   float(note.is_drum), note.channel)
        self._count += 1

    def _note_on(self, t: float, channel: int, pitch: int, velocity: int) -> None:
        key = (channel, pitch)
        if key in self.held:  # a second note-on without a note-off: the first one ends here
            self._end(self.held.pop(key), t)
        for note in [n for n in self.sustained if n.channel == channel and n.pitch == pitch]:
            self.sustained.remove(note)
            self._end(note, t)
        note = LiveNote(pitch, velocity, t, self.programs[channel], channel)
        if note.is_drum:  # drums are onsets: they need no note-off
            self._end(note, t)
            return
        self.held[key] = note

    def _note_off(self, t: float, channel: int, pitch: int) -> None:
        note = self.held.pop((channel, pitch), None)
        if note is None:
            if channel != DRUM_CHANNEL:
                self.stats.ignored += 1
            return
        if self.pedal[channel]:
            self.sustained.append(note)
        else:
            self._end(note, t)

    def _control(self, t: float, channel: int, number: int, value: int) -> None:
        if number == SUSTAIN:
            down = value >= 64
            if self.pedal[channel] and not down:
                for note in [n for n in self.sustained if n.channel == channel]:
                    self.sustained.remove(note)
                    self._end(note, t)
            self.pedal[channel] = down
        elif number == ALL_NOTES_OFF:
            for key in [k for k in self.held if k[0] == channel]:
                self._note_off(t, *key)
        elif number == ALL_SOUND_OFF:
            for key in [k for k in self.held if k[0] == channel]:
                self._end(self.held.pop(key), t)
            for note in [n for n in self.sustained if n.channel == channel]:
                self.sustained.remove(note)
                self._end(note, t)
        elif number in CONTROLS:
            self.controls[channel].control(t, number, value)
        else:
            self.stats.ignored += 1

    def _prune(self, now: float) -> None:
        # At most once a second (a note kept a little longer changes nothing; a filter per tick over a flood's
        # tens of thousands of notes would cost more than the tick).
        if now - self._last_prune < 1.0:
            return
        self._last_prune = now
        self._events = None
        cutoff = now - self.keep_s
        if self.finished and self.finished[0].end is not None and self.finished[0].end < cutoff:
            self.finished = [n for n in self.finished if n.end is not None and n.end >= cutoff]
            keep = self._rows[: self._count, 1] >= cutoff
            kept = self._rows[: self._count][keep]
            self._rows[: len(kept)] = kept
            self._count = len(kept)
        for tracker in self.controls:  # keep each kind's last value before the cutoff, and everything after it
            if len(tracker.rows) > 64 and tracker.rows[0][0] < cutoff:
                last = {}
                for row in tracker.rows:
                    if row[0] < cutoff:
                        last[row[1]] = row
                tracker.rows = sorted(last.values()) + [r for r in tracker.rows if r[0] >= cutoff]

    def prune(self, now: float) -> None:
        """Forget what ended more than `keep_s` before `now` (the causal family calls this; `snapshot` does)."""
        self._prune(now)
