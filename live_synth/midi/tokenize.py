"""NoteSequence -> notes-encoder token segments, token-identical to diffusers' `MidiProcessor` (spec §2.2).

The reference builds one long stream of single-step shift events, indexes it per audio frame, then cuts, prefixes
and run-length encodes it per 256-frame segment. Working that indexing through gives a direct rule, used here:

* frame f starts at step 2f (50 frames/s, 100 steps/s), so segment k covers the events with step in
  [512k, 512k + 512); the last segment also takes every later event (they lie past the last frame);
* the tie section of segment k lists the notes sounding after all events with step < min(512k, last event step)
  (the `min` is the reference's stale-tie quirk, see `_tie_state_step`);
* run-length encoding then writes, before the first kept token of a later step, the step count since the segment
  start (in chunks of at most 1000), and drops program/velocity tokens equal to the current ones.

This avoids materialising the shift stream and costs O(events), so a long song tokenizes in milliseconds.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from functools import cached_property

from live_synth.constants import FRAME_RATE, HOP, MAX_TOKENS, SAMPLE_RATE, SEGMENT_FRAMES, STEPS_PER_SECOND
from live_synth.midi.codec import (
    EOS_ID,
    MAX_SHIFT_STEPS,
    PAD_ID,
    EventCodec,
    program_to_slakh_program,
    velocity_to_bin,
)
from live_synth.midi.notes import Note, NoteSequence, apply_sustain, read_midi

STEPS_PER_FRAME = STEPS_PER_SECOND // FRAME_RATE  # 2
STEPS_PER_SEGMENT = SEGMENT_FRAMES * STEPS_PER_FRAME  # 512 steps = 5.12 s
assert STEPS_PER_FRAME * FRAME_RATE == STEPS_PER_SECOND, "the frame grid must fall on the step grid"


@dataclass(frozen=True)
class TokenizerConfig:
    """How notes become tokens. The defaults are the published model's settings.

    num_velocity_bins: velocity resolution (1 = on/off only, as published; our own models may use 16 or 32).
    slakh_programs: fold melodic programs onto the Slakh classes the published model knows (spec §2.2).
    max_tokens: length of every segment, EOS and padding included.
    """

    num_velocity_bins: int = 1
    slakh_programs: bool = True
    max_tokens: int = MAX_TOKENS

    def __post_init__(self) -> None:
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must leave room for a tie and EOS, got {self.max_tokens}")

    @cached_property
    def codec(self) -> EventCodec:
        return EventCodec(self.num_velocity_bins)


@dataclass(frozen=True)
class TokenizedSong:
    """Token segments of a song, one per 256 mel frames (5.12 s).

    segments: each exactly `max_tokens` ids: events, EOS, then PAD.
    num_frames: mel frames of the whole song on the reference's frame grid (the last segment may be partial).
    overflow: per segment, how many tokens were dropped to fit `max_tokens` (0 almost always; see `tokenize`).
    """

    segments: list[list[int]]
    num_frames: int
    overflow: list[int] = field(default_factory=list)

    @property
    def dropped_tokens(self) -> int:
        """Tokens dropped over the whole song."""
        return sum(self.overflow)

    @property
    def overflowed_segments(self) -> int:
        """Number of segments that had to be truncated."""
        return sum(1 for dropped in self.overflow if dropped)


@dataclass(frozen=True)
class _Event:
    """One note onset/offset as the reference encodes it: its step and its (not yet de-duplicated) tokens."""

    step: int
    tokens: tuple[int, ...]
    key: tuple[int, int] | None  # (pitch, program) of a melodic note; None for drums, which have no state
    velocity_bin: int


def tokenize(ns: NoteSequence, config: TokenizerConfig = TokenizerConfig()) -> TokenizedSong:
    """Tokenize a NoteSequence the way the published model expects (apply sustain first; `tokenize_midi` does).

    Matches diffusers' `MidiProcessor` token for token, with two deliberate differences where it fails:
    * a sequence without notes gives `[tie, EOS, PAD...]` segments (silence) instead of an IndexError;
    * a segment with more than `max_tokens - 1` tokens (very dense music) is cut at the last event boundary that fits
      (after a pitch, drum or tie token, so no program/velocity/shift token dangles), then EOS is appended. The
      number of dropped tokens is recorded in `overflow`, for callers to report. The reference would return an
      over-long list that overflows the model's 2048-row position table; the original asserts.

    Raises ValueError for notes no MIDI file can hold (pitch/program outside 0..127, velocity > 127, negative time).
    """
    codec = config.codec
    events = _note_events(ns, config)
    steps = [event.step for event in events]
    num_frames = _num_frames(ns.total_time)
    num_segments = -(-num_frames // SEGMENT_FRAMES)
    state: dict[tuple[int, int], int] = {}
    applied = 0
    segments, overflow = [], []
    for k in range(num_segments):
        start = k * STEPS_PER_SEGMENT
        applied = _advance_state(state, events, applied, _tie_state_step(start, steps))
        first = bisect.bisect_left(steps, start)
        last = k == num_segments - 1
        stop = len(events) if last else bisect.bisect_left(steps, start + STEPS_PER_SEGMENT)
        timed = _tie_section(state, codec) + [(e.step - start, t) for e in events[first:stop] for t in e.tokens]
        tokens, dropped = _fit(_run_length_encode(timed, codec), config.max_tokens, codec)
        segments.append(tokens + [EOS_ID] + [PAD_ID] * (config.max_tokens - len(tokens) - 1))
        overflow.append(dropped)
    return TokenizedSong(segments=segments, num_frames=num_frames, overflow=overflow)


def tokenize_midi(source: str | os.PathLike | bytes, config: TokenizerConfig = TokenizerConfig()) -> TokenizedSong:
    """Read a MIDI file, apply the sustain pedal and tokenize it (the reference's whole `MidiProcessor.__call__`).

    Raises MidiError for unreadable files. A file without notes tokenizes to silence; callers that need notes should
    check `read_midi(...).is_empty` themselves.
    """
    return tokenize(apply_sustain(read_midi(source)), config)


def _num_frames(total_time: float) -> int:
    # The reference makes int(total_time * 16 kHz) zero samples and always pads 1..HOP samples (even when the length
    # is already a multiple of HOP), so there is always one frame more than whole hops.
    return int(total_time * SAMPLE_RATE) // HOP + 1


def _note_events(ns: NoteSequence, config: TokenizerConfig) -> list[_Event]:
    """Offsets of melodic notes and onsets of all notes, in the reference's order."""
    codec = config.codec
    notes = [(_program(note, config), note) for note in ns.notes]
    for program, note in notes:
        _check_note(note, program)
    # Sorting by (drum, program, pitch) first, then stably by time, puts offsets before onsets at equal times and
    # fixes the order of simultaneous events exactly as the reference does.
    notes.sort(key=lambda pn: (pn[1].is_drum, pn[0], pn[1].pitch))
    timed = [(note.end, program, note, 0) for program, note in notes if not note.is_drum]
    timed += [(note.start, program, note, note.velocity) for program, note in notes]
    timed.sort(key=lambda t: t[0])
    return [_encode(round(time * STEPS_PER_SECOND), program, note, velocity, codec)
            for time, program, note, velocity in timed]  # fmt: skip


def _program(note: Note, config: TokenizerConfig) -> int:
    if config.slakh_programs and not note.is_drum:
        return program_to_slakh_program(note.program)
    return note.program


def _check_note(note: Note, program: int) -> None:
    if not (0 <= note.pitch <= 127 and 0 <= program <= 127 and 0 <= note.velocity <= 127):
        raise ValueError(f"note out of MIDI range: {note}")
    if note.start < 0 or note.end < 0:
        raise ValueError(f"note with negative time: {note}")


def _encode(step: int, program: int, note: Note, velocity: int, codec: EventCodec) -> _Event:
    velocity_bin = velocity_to_bin(velocity, codec.num_velocity_bins)
    velocity_token = codec.encode("velocity", velocity_bin)
    if note.is_drum:  # drums: onsets only, in their own pitch block, no program
        return _Event(step, (velocity_token, codec.encode("drum", note.pitch)), None, velocity_bin)
    tokens = (codec.encode("program", program), velocity_token, codec.encode("pitch", note.pitch))
    return _Event(step, tokens, (note.pitch, program), velocity_bin)


def _tie_state_step(segment_start: int, steps: list[int]) -> int:
    """The tie section of a segment shows the notes sounding after every event before this step.

    Stale-tie quirk (spec §2.3), kept for parity: the reference stops updating its state index after the last event,
    so a segment that starts after the last event's step shows the state from *before* that step's events (e.g. a
    note whose note-off was the last event still appears as tied). The correct step would be `segment_start`.
    """
    if not steps:
        return segment_start
    return min(segment_start, steps[-1])


def _advance_state(state: dict[tuple[int, int], int], events: list[_Event], applied: int, before_step: int) -> int:
    """Fold events with step < before_step into `state` ((pitch, program) -> velocity bin); return the new count."""
    while applied < len(events) and events[applied].step < before_step:
        event = events[applied]
        if event.key is not None:
            if event.velocity_bin:
                state[event.key] = event.velocity_bin
            else:
                state.pop(event.key, None)  # the reference keeps a 0 entry, which it never prints
        applied += 1
    return applied


def _tie_section(state: dict[tuple[int, int], int], codec: EventCodec) -> list[tuple[int, int]]:
    """Sounding notes as (program, pitch) pairs sorted by program then pitch, then a tie; all at step 0."""
    tokens = []
    for pitch, program in sorted(state, key=lambda key: (key[1], key[0])):
        tokens += [codec.encode("program", program), codec.encode("pitch", pitch)]
    tokens.append(codec.encode("tie", 0))
    return [(0, token) for token in tokens]


def _run_length_encode(timed: list[tuple[int, int]], codec: EventCodec) -> list[int]:
    """(step since segment start, token) pairs -> tokens with absolute shifts and no redundant program/velocity."""
    program_ids, velocity_ids = codec.id_range("program"), codec.id_range("velocity")
    out: list[int] = []
    program = velocity = None
    written_step = 0
    for step, token in timed:
        if token in program_ids:
            if token == program:
                continue
            program = token
        elif token in velocity_ids:
            if token == velocity:
                continue
            velocity = token
        if step > written_step:
            out += _shift_tokens(step, codec)
            written_step = step
        out.append(token)
    return out  # trailing shifts are never written: a shift is only written before a token


def _shift_tokens(steps: int, codec: EventCodec) -> list[int]:
    # A shift carries the absolute step count since the segment start; more than 1000 steps needs several that add up.
    tokens = []
    while steps > 0:
        chunk = min(MAX_SHIFT_STEPS, steps)
        tokens.append(codec.encode("shift", chunk))
        steps -= chunk
    return tokens


def _fit(tokens: list[int], max_tokens: int, codec: EventCodec) -> tuple[list[int], int]:
    """Cut `tokens` to leave room for EOS, at an event boundary; return (kept tokens, number dropped)."""
    limit = max_tokens - 1
    if len(tokens) <= limit:
        return tokens, 0
    tie = codec.encode("tie", 0)
    closers = {tie, *codec.id_range("pitch"), *codec.id_range("drum")}
    if tokens.index(tie) >= limit:
        # Even the tie section does not fit (absurdly many sounding notes): keep the pairs that fit, then the tie.
        kept = tokens[: _last_boundary(tokens, limit - 1, closers)] + [tie]
    else:
        kept = tokens[: _last_boundary(tokens, limit, closers)]
    return kept, len(tokens) - len(kept)


def _last_boundary(tokens: list[int], limit: int, closers: set[int]) -> int:
    """Largest cut <= limit that ends right after a closing token (or is 0)."""
    cut = limit
    while cut > 0 and tokens[cut - 1] not in closers:
        cut -= 1
    return cut


class EventIndex:
    """A song's note events, indexed to tokenize any window of frames (training crops, live rolling windows).

    Unlike `tokenize`, which reproduces the reference's fixed 5.12 s segments quirks included, a window's tie
    section is always the true set of notes sounding at the window start (no stale-tie quirk), and events past the
    window end are never pulled in. Our own models are trained and run on these windows.
    """

    def __init__(self, ns: NoteSequence, config: TokenizerConfig = TokenizerConfig()):
        self.config = config
        self.events = _note_events(ns, config)
        self.steps = [event.step for event in self.events]

    def window(self, start_frame: int, num_frames: int) -> tuple[list[int], int]:
        """(tokens ending with EOS, unpadded; tokens dropped to fit max_tokens) for frames [start, start + n)."""
        codec = self.config.codec
        start = start_frame * STEPS_PER_FRAME
        stop = start + num_frames * STEPS_PER_FRAME
        state: dict[tuple[int, int], int] = {}
        _advance_state(state, self.events, 0, start)
        first, last = bisect.bisect_left(self.steps, start), bisect.bisect_left(self.steps, stop)
        timed = _tie_section(state, codec) + [(e.step - start, t) for e in self.events[first:last] for t in e.tokens]
        tokens, dropped = _fit(_run_length_encode(timed, codec), self.config.max_tokens, codec)
        return tokens + [EOS_ID], dropped
